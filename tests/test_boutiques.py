"""The checked-in Boutiques descriptor is exactly what the parser generates, and it is valid.

If ``test_descriptor_is_up_to_date`` fails, the CLI changed: regenerate the descriptor with

    python -m bids_regionx.cli.boutiques -o descriptor.json

and commit it. The validation and round-trip tests need the ``boutiques`` package (``bosh``) and
are skipped without it; the drift test never is.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import pytest

from bids_regionx.cli.boutiques import _input_id, build_descriptor, descriptor_text
from bids_regionx.cli.parser import build_parser

DESCRIPTOR = Path(__file__).resolve().parents[1] / "descriptor.json"
REGENERATE = "python -m bids_regionx.cli.boutiques -o descriptor.json"


def _run_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in parser._actions
        if not isinstance(a, (argparse._HelpAction, argparse._VersionAction))
    ]


def test_descriptor_is_up_to_date():
    assert DESCRIPTOR.is_file(), f"{DESCRIPTOR.name} is missing: run {REGENERATE}"
    checked_in = DESCRIPTOR.read_text(encoding="utf-8")
    assert checked_in == descriptor_text(), (
        f"{DESCRIPTOR.name} no longer matches the command-line parser: run {REGENERATE}"
    )


def test_every_option_is_described():
    descriptor = build_descriptor()
    inputs = {item["id"]: item for item in descriptor["inputs"]}
    flags = {item.get("command-line-flag") for item in inputs.values()}
    choices = {c for item in inputs.values() for c in item.get("value-choices", ())}
    for action in _run_actions(build_parser()):
        if not action.option_strings:
            assert action.dest in inputs
            continue
        longs = [s for s in action.option_strings if s.startswith("--")]
        if isinstance(action, argparse._CountAction):
            assert "-v" in choices
        else:
            assert longs[0] in flags, f"{longs[0]} missing from the descriptor"
        if isinstance(action, argparse.BooleanOptionalAction):
            assert longs[-1].startswith("--no-") and longs[-1] in flags
    # BIDS-Apps layout: the three positionals first, each in the command line once
    command_line = descriptor["command-line"].split()
    assert command_line[:4] == ["bids_regionx", "[BIDS_DIR]", "[OUTPUT_DIR]", "[ANALYSIS_LEVEL]"]
    assert len(command_line) == len(set(command_line)) == len(inputs) + 1
    assert descriptor["custom"]["BIDSApplicationVersion"] == "2.0"
    assert all(group["members"] for group in descriptor["groups"])


def test_bosh_validate(tmp_path):
    boutiques = pytest.importorskip("boutiques")
    boutiques.bosh(["validate", str(DESCRIPTOR)])  # raises DescriptorValidationError


def _example_value(item: dict):
    """A value of the right shape for ``item`` and what argparse should turn it into."""
    if "value-choices" in item:
        value = item["value-choices"][-1]
        parsed = value
    elif item["type"] == "Number":
        value = 3 if item.get("integer") else 0.25
        parsed = value
    elif item["type"] == "File":
        value = f"/data/{item['id']}"
        parsed = value
    else:
        value = f"{item['id']}=x"  # satisfies NAME=PATH style options at the argparse level
        parsed = value
    if item.get("list"):
        return [value, value], [parsed, parsed]
    return value, parsed


def test_bosh_command_line_parses(tmp_path):
    """Every input, as bosh puts it on the command line, is accepted by the real parser."""
    pytest.importorskip("boutiques")
    from boutiques import bosh

    descriptor = build_descriptor()
    invocation, expected = {}, {}
    for item in descriptor["inputs"]:
        if item["type"] == "Flag":
            if not item["id"].startswith("no_"):  # --x is set, so --no-x is disabled
                invocation[item["id"]] = True
                expected[item["id"]] = True
            continue
        invocation[item["id"]], expected[item["id"]] = _example_value(item)
    invocation["analysis_level"] = expected["analysis_level"] = "participant"
    inv_path, desc_path = tmp_path / "invocation.json", tmp_path / "descriptor.json"
    inv_path.write_text(json.dumps(invocation), encoding="utf-8")
    desc_path.write_text(descriptor_text(descriptor), encoding="utf-8")

    command = bosh(["exec", "simulate", str(desc_path), "-i", str(inv_path)]).shell_command
    argv = shlex.split(command)
    assert argv[0] == "bids_regionx"
    parser = build_parser()
    namespace = vars(parser.parse_args(argv[1:]))

    dest_of = {_input_id(action): action.dest for action in _run_actions(parser)}
    for identifier, value in expected.items():
        got = namespace[dest_of[identifier]]
        if isinstance(parser_action(parser, dest_of[identifier]), argparse._CountAction):
            assert got == len(value) - 1, identifier  # "-vvv" -> 3
        else:
            assert got == value, identifier


def parser_action(parser: argparse.ArgumentParser, dest: str) -> argparse.Action:
    return next(a for a in parser._actions if a.dest == dest)
