"""Crash files back to one-line errors, their owners, and the exit code of a participant run."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from bids_regionx.cli import failures
from bids_regionx.cli.parser import parse_args
from bids_regionx.io.maps import collect_maps
from bids_regionx.io.queries import collect_runs
from bids_regionx.synthetic.dataset import make_preset

CRASH = """Node: {node}
Working directory: /work/bids_regionx_wf/x

Node inputs:

bold_file = /data/sub-01_bold.nii.gz

Traceback (most recent call last):
  File "nipype/pipeline/plugins/linear.py", line 45, in run
    node.run(updatehash=updatehash)
nipype.pipeline.engine.nodes.NodeExecutionError: Exception raised while executing Node x.

Traceback:
\tTraceback (most recent call last):
\t  File "bids_regionx/core/denoise.py", line 992, in _check_rows
\t    raise DataError(
\t{error}

"""


def crash_file(tmp_path: Path, node: str, error: str, name: str = "crash-1.txt") -> Path:
    path = tmp_path / name
    path.write_text(CRASH.format(node=node, error=error))
    return path


@pytest.mark.parametrize(
    ("error", "error_type", "message"),
    [
        ("bids_regionx.errors.DataError: /d/c.tsv: has 57 rows", "DataError",
         "/d/c.tsv: has 57 rows"),
        ("ValueError: /d/b.nii.gz: cannot read volumes 0-59", "ValueError",
         "/d/b.nii.gz: cannot read volumes 0-59"),
        ("KeyError: 'csf'", "KeyError", "KeyError: 'csf'"),
        ("numpy.linalg.LinAlgError: Singular matrix", "LinAlgError",
         "LinAlgError: Singular matrix"),
        ("OSError: [Errno 28] No space left on device", "OSError",
         "OSError: [Errno 28] No space left on device"),
    ],
)
def test_read_crash_gives_the_original_error(tmp_path, error, error_type, message):
    node = "bids_regionx_wf.sub_01_wf.extract_signals"
    assert failures.read_crash(crash_file(tmp_path, node, error)) == (node, error_type, message)


def test_cant_create_errors():
    def crash(error_type, message):
        return failures.Crash("n", error_type, message, "runs")

    assert crash("CantCreateError", "/o/x.tsv: cannot write it (Permission denied)").cant_create
    assert crash("OSError", "OSError: [Errno 28] No space left on device").cant_create
    assert crash("OSError", "OSError: [Errno 30] Read-only file system: '/w'").cant_create
    assert not crash("FileNotFoundError", "FileNotFoundError: [Errno 2] No such file").cant_create
    assert not crash("ValueError", "/d/b.nii.gz: cannot read volumes").cant_create


@pytest.fixture(scope="module")
def tiny_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    info = make_preset(root / "data", "tiny")

    def inputs(*extra):
        settings = parse_args([str(info.root), str(root / "out"), "participant", "--maps",
                               str(info.maps), "-w", str(root / "work"), *extra])
        specs = collect_maps(settings)
        return settings, collect_runs(settings, maps_space=specs[0].space), specs

    return inputs


@pytest.mark.parametrize("extra", [(), ("--combine-runs",)])
def test_every_workflow_node_has_an_owner(tiny_inputs, extra):
    """The owners mirror the node names of init_bids_regionx_wf (guards against drift)."""
    from bids_regionx.workflows.base import init_bids_regionx_wf

    settings, runs, specs = tiny_inputs(*extra)
    workflow = init_bids_regionx_wf(settings, runs, specs)
    owners = failures.node_owners(runs, specs, combine_runs=bool(extra))
    keys = {run.key for run in runs}
    for node in workflow._create_flat_graph().nodes():
        kind, what = failures._owner(node.fullname, owners)
        assert kind in ("maps", "runs"), node.fullname
        if kind == "maps":
            assert what == str(specs[0].path)
        else:
            assert set(what) <= keys and what
            if node._hierarchy != "bids_regionx_wf":  # inside a run's own workflow
                assert len(what) == 1, node.fullname


def test_outcome_exit_codes(tiny_inputs, tmp_path):
    settings, runs, specs = tiny_inputs()
    key = runs[0].key
    run_crash = failures.Crash("bids_regionx_wf.x_wf.extract_signals", "ValueError",
                               "/d/b.nii.gz: cannot read volumes 0-59", "runs", (key,))
    maps_crash = failures.Crash("bids_regionx_wf.regions_Synthetic_wf.split_regions",
                                "ValueError", "no region survived", "maps",
                                maps=str(specs[0].path))
    full = failures.Crash("bids_regionx_wf.x_wf.write_outputs", "CantCreateError",
                          f"{settings.output_dir}/x.tsv: cannot write it (No space left)",
                          "runs", (key,))

    result = failures.outcome(settings, runs, [], [run_crash], ran=True)
    assert result.exit_code == 1 and result.error is None
    assert result.lines[0] == (f"bids_regionx: run failed: {key}: "
                               "/d/b.nii.gz: cannot read volumes 0-59")

    result = failures.outcome(settings, runs, [], [maps_crash, run_crash], ran=True)
    assert result.exit_code == 65
    assert str(result.error) == f"{specs[0].path}: no region survived"

    result = failures.outcome(settings, runs, [], [maps_crash, full], ran=True)
    assert result.exit_code == 73 and "No space left" in str(result.error)

    result = failures.outcome(settings, runs, [(key, "no confounds table")], [], ran=True)
    assert result.exit_code == 1


def test_every_run_dropped_is_bad_data(tiny_inputs, monkeypatch):
    settings, runs, _ = tiny_inputs()
    reasons = [(run.key, "only 145 s of data left") for run in runs]
    monkeypatch.setattr(failures, "dropped_runs", lambda out, given: reasons[: len(given)])
    result = failures.outcome(settings, runs, [], [], ran=True)
    assert result.exit_code == 65
    assert str(result.error).startswith(f"no run has enough clean data: {len(runs)} of "
                                        f"{len(runs)} run(s) dropped")
    assert len([ln for ln in result.lines if "run dropped" in ln]) == len(runs)
    monkeypatch.setattr(failures, "dropped_runs", lambda out, given: reasons[:1])
    result = failures.outcome(settings, runs, [], [], ran=True)
    assert result.exit_code == 0 and result.lines == [
        f"bids_regionx: run dropped: {runs[0].key}: only 145 s of data left"]


def test_dropped_runs_are_read_from_the_outliers_sidecars(tmp_path):
    from bids_regionx.io.derivatives import output_path

    run = SimpleNamespace(key="sub-01_task-rest_run-1", source_entities=lambda: {
        "subject": "01", "task": "rest", "run": "1"})
    path = output_path(tmp_path, "outliers", suffix="outliers", extension=".json",
                       **run.source_entities())
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"RunStatus": "dropped", "DropReason": "too short"}))
    assert failures.dropped_runs(tmp_path, [run]) == [(run.key, "too short")]
    assert failures.processed_runs(tmp_path, [run]) == {run.key}
