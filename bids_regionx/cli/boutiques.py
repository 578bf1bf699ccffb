"""Boutiques descriptor (schema 0.5, draft BIDS-Apps 2.0 style) generated from the CLI parser.

``python -m bids_regionx.cli.boutiques [-o descriptor.json] [--check]``

The checked-in ``descriptor.json`` at the repository root is this module's output;
``tests/test_boutiques.py`` regenerates it and fails on any difference, so the descriptor cannot
drift from :func:`bids_regionx.cli.parser.build_parser`. Regenerate after changing an option::

    python -m bids_regionx.cli.boutiques -o descriptor.json

Mapping from argparse:

* the three BIDS-Apps positionals come first in ``command-line`` (``[BIDS_DIR] [OUTPUT_DIR]
  [ANALYSIS_LEVEL]``), then one value-key per option, in the parser's order;
* one input per option; ``id`` is the first long flag (``--participant-label`` ->
  ``participant_label``), ``command-line-flag`` that flag (argparse accepts the aliases too);
* ``type``: ``Number`` (``integer`` for ``int``) for numeric options, ``File`` for paths (metavar
  ``FILE``, ``PATH``, ``DIR``, ``TOML``; the two dataset positionals), ``String``
  otherwise, with ``value-choices`` from ``choices``; ``nargs="+"`` -> ``list`` with at least one
  entry;
* ``--x/--no-x`` switches (``BooleanOptionalAction``) -> two ``Flag`` inputs that disable each
  other; ``-v`` (a count) -> a ``String`` whose choices are ``-v``, ``-vv``, ``-vvv``;
* ``description`` is the option's ``--help`` text, including its ``(default: ...)``;
* argparse groups -> Boutiques ``groups`` (ids suffixed ``_options``, as ``groups`` and
  ``inputs`` share one id namespace); exit codes from :mod:`bids_regionx.errors` ->
  ``error-codes``.

Defaults are deliberately *not* written as ``default-value``: Boutiques puts a default on the
command line whenever the input is not given, and a value on the command line beats the same
option in ``--config-file``, so ``default-value`` would make every config file value ineffective.
They are in each description and, machine-readable, under ``custom["bids_regionx:defaults"]``.

Standard library only (like the parser), so it runs wherever the package imports.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bids_regionx import __version__
from bids_regionx import errors as _errors
from bids_regionx.cli.parser import build_parser

__all__ = ["build_descriptor", "descriptor_text", "main"]

SCHEMA_VERSION = "0.5"
BIDS_APP_VERSION = "2.0"
REPOSITORY = "https://github.com/bids-regionx/bids_regionx"
DESCRIPTOR_NAME = "descriptor.json"
#: metavars whose values are paths on the host (a container runner must mount them)
_PATH_METAVARS = {"FILE", "PATH", "DIR", "TOML"}
_POSITIONAL_TYPES = {"bids_dir": "File", "output_dir": "File", "analysis_level": "String"}
_POSITIONAL_NAMES = {
    "bids_dir": "Input dataset",
    "output_dir": "Output dataset",
    "analysis_level": "Analysis level",
}
_MAX_VERBOSITY = 3


def _identifier(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_").lower()


def _long_flag(action: argparse.Action) -> str:
    return next((s for s in action.option_strings if s.startswith("--")), action.option_strings[0])


def _input_id(action: argparse.Action) -> str:
    if not action.option_strings:
        return _identifier(action.dest)
    return _identifier(_long_flag(action))


def _name(identifier: str) -> str:
    return identifier.replace("_", " ").capitalize()


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help text exactly as ``--help`` shows it (defaults expanded), on one line."""
    if not action.help:
        return ""
    text = parser._get_formatter()._expand_help(action)  # argparse has no public API for this
    return " ".join(text.split())


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return _jsonable(value.value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _is_boolean_optional(action: argparse.Action) -> bool:
    return isinstance(action, argparse.BooleanOptionalAction)


def _value_input(parser: argparse.ArgumentParser, action: argparse.Action) -> dict[str, Any]:
    """One input for an option or positional that takes a value."""
    identifier = _input_id(action)
    item: dict[str, Any] = {
        "id": identifier,
        "name": _POSITIONAL_NAMES.get(identifier, _name(identifier)),
        "description": _help(parser, action),
        "value-key": f"[{identifier.upper()}]",
        "optional": bool(action.option_strings) and not action.required,
    }
    if action.option_strings:
        item["command-line-flag"] = _long_flag(action)
    metavar = action.metavar if isinstance(action.metavar, str) else None
    if not action.option_strings:
        item["type"] = _POSITIONAL_TYPES.get(identifier, "String")
    elif action.type in (int, float):
        item["type"] = "Number"
        if action.type is int:
            item["integer"] = True
    elif metavar in _PATH_METAVARS:
        item["type"] = "File"
    else:
        item["type"] = "String"
    if action.choices is not None:
        item["value-choices"] = [_jsonable(c) for c in action.choices]
    if action.nargs in ("+", "*") or isinstance(action.nargs, int):
        item["list"] = True
        if action.nargs == "+":
            item["min-list-entries"] = 1
        elif isinstance(action.nargs, int):
            item["min-list-entries"] = item["max-list-entries"] = action.nargs
    return _ordered(item)


def _flag_inputs(parser: argparse.ArgumentParser, action: argparse.Action) -> list[dict]:
    """``--x`` / ``--no-x``: two Flag inputs that disable each other."""
    positive = _long_flag(action)
    negative = next(s for s in action.option_strings if s.startswith("--no-"))
    pos_id, neg_id = _identifier(positive), _identifier(negative)
    return [
        _ordered({
            "id": pos_id,
            "name": _name(pos_id),
            "description": _help(parser, action),
            "type": "Flag",
            "value-key": f"[{pos_id.upper()}]",
            "command-line-flag": positive,
            "optional": True,
            "disables-inputs": [neg_id],
        }),
        _ordered({
            "id": neg_id,
            "name": _name(neg_id),
            "description": f"Turn {positive} off.",
            "type": "Flag",
            "value-key": f"[{neg_id.upper()}]",
            "command-line-flag": negative,
            "optional": True,
            "disables-inputs": [pos_id],
        }),
    ]


def _count_input(parser: argparse.ArgumentParser, action: argparse.Action) -> dict[str, Any]:
    """``-v`` (repeatable) as a choice of ``-v``, ``-vv``, ``-vvv``."""
    identifier = _input_id(action)
    short = next((s for s in action.option_strings if not s.startswith("--")), None)
    if short is None:
        raise ValueError(f"{_long_flag(action)}: a count option needs a short flag")
    return _ordered({
        "id": identifier,
        "name": _name(identifier),
        "description": _help(parser, action),
        "type": "String",
        "value-key": f"[{identifier.upper()}]",
        "optional": True,
        "value-choices": ["-" + short[1:] * n for n in range(1, _MAX_VERBOSITY + 1)],
    })


_KEY_ORDER = (
    "id", "name", "description", "type", "value-key", "command-line-flag", "optional", "list",
    "min-list-entries", "max-list-entries", "integer", "value-choices", "disables-inputs",
)


def _ordered(item: dict[str, Any]) -> dict[str, Any]:
    extra = sorted(set(item) - set(_KEY_ORDER))
    if extra:
        raise ValueError(f"unexpected descriptor keys {extra}")
    return {key: item[key] for key in _KEY_ORDER if key in item}


def _inputs_for(parser: argparse.ArgumentParser, action: argparse.Action) -> list[dict]:
    if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
        return []  # not part of a run
    if _is_boolean_optional(action):
        return _flag_inputs(parser, action)
    if isinstance(action, argparse._CountAction):
        return [_count_input(parser, action)]
    if action.nargs == 0:
        raise ValueError(f"{action.option_strings}: unsupported argparse action {type(action)}")
    return [_value_input(parser, action)]


def _defaults(parser: argparse.ArgumentParser) -> dict[str, Any]:
    out = {}
    for action in parser._actions:
        if not action.option_strings or action.default in (None, argparse.SUPPRESS):
            continue
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        out[_input_id(action)] = _jsonable(action.default)
    return out


def _error_codes() -> list[dict[str, Any]]:
    classes = [
        obj
        for obj in vars(_errors).values()
        if isinstance(obj, type) and issubclass(obj, _errors.BidsRegionxError)
    ]
    codes: dict[int, str] = {}
    for cls in sorted(classes, key=lambda c: (c.exit_code, c.__mro__.__len__(), c.__name__)):
        summary = " ".join((cls.__doc__ or cls.__name__).split("\n\n")[0].split())
        codes.setdefault(int(cls.exit_code), summary)
    return [{"code": code, "description": text} for code, text in sorted(codes.items())]


def build_descriptor(
    parser: argparse.ArgumentParser | None = None, *, version: str | None = None
) -> dict[str, Any]:
    """The Boutiques descriptor of ``parser`` (default: the bids_regionx CLI).

    Parameters
    ----------
    parser : argparse.ArgumentParser, optional
    version : str, optional
        ``tool-version``; default the installed package version.

    Returns
    -------
    dict
        JSON-serialisable, key order fixed (the output is byte-for-byte reproducible).
    """
    parser = parser or build_parser()
    version = version or __version__
    positionals: list[dict] = []
    options: list[dict] = []
    groups: list[dict] = []
    for group in parser._action_groups:  # argparse has no public API for the groups
        members: list[str] = []
        for action in group._group_actions:
            new = _inputs_for(parser, action)
            (options if action.option_strings else positionals).extend(new)
            members.extend(item["id"] for item in new)
        if not members:
            continue
        positional = all(not a.option_strings for a in group._group_actions)
        if positional:  # the title ("positional arguments") is argparse's, not ours
            gid, gname = "bids_app_arguments", "BIDS-App arguments"
        else:  # suffixed: group and input ids share one namespace (--maps, "maps")
            gid, gname = _identifier(group.title or "") + "_options", group.title or "options"
        name = gname[:1].upper() + gname[1:]
        entry: dict[str, Any] = {"id": gid, "name": name, "members": members}
        if group.description:
            entry["description"] = " ".join(group.description.split())
        groups.append(entry)
    # positionals first, then options in the parser's order (as in argparse's usage line)
    inputs = positionals + options
    ids = [item["id"] for item in inputs] + [group["id"] for group in groups] + ["derivatives"]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"duplicate input ids {duplicates}")
    command_line = " ".join([parser.prog, *(item["value-key"] for item in inputs)])
    return {
        "name": parser.prog,
        "tool-version": version,
        "schema-version": SCHEMA_VERSION,
        "description": " ".join((parser.description or parser.prog).split()),
        "author": "bids_regionx developers",
        "url": REPOSITORY,
        "descriptor-url": f"{REPOSITORY}/blob/main/{DESCRIPTOR_NAME}",
        "command-line": command_line,
        "container-image": {"type": "docker", "image": f"bids_regionx:{version}"},
        "inputs": inputs,
        "groups": groups,
        "output-files": [
            {
                "id": "derivatives",
                "name": "Derivatives dataset",
                "description": "The BIDS derivatives dataset written by the participant level "
                "(and read and completed by the group level).",
                "path-template": "[OUTPUT_DIR]",
                "optional": False,
            }
        ],
        "error-codes": _error_codes(),
        "tags": {"domain": ["neuroinformatics", "fmri", "bids-app", "connectivity"]},
        "custom": {
            "BIDSApplicationVersion": BIDS_APP_VERSION,
            "bids_regionx:defaults": _defaults(parser),
        },
    }


def descriptor_text(descriptor: dict[str, Any] | None = None) -> str:
    """The descriptor as written to disk (2-space JSON, UTF-8, trailing newline)."""
    return json.dumps(descriptor or build_descriptor(), indent=2, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or ``--check``) the descriptor; return the exit code."""
    cli = argparse.ArgumentParser(
        prog="python -m bids_regionx.cli.boutiques",
        description="Write the Boutiques descriptor of the bids_regionx command line.",
    )
    cli.add_argument(
        "-o", "--output", metavar="FILE", help="where to write it (default: standard output)"
    )
    cli.add_argument(
        "--check",
        action="store_true",
        help="do not write; exit 1 if --output differs from the generated descriptor",
    )
    args = cli.parse_args(argv)
    text = descriptor_text()
    if args.check:
        if not args.output:
            cli.error("--check needs --output")
        path = Path(args.output)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            print(
                f"{path} is out of date: run python -m bids_regionx.cli.boutiques -o {path}",
                file=sys.stderr,
            )
            return 1
        return 0
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
