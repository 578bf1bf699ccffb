"""Tests of bids_regionx.io.queries: run selection, pairing, problems, index location."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bids_regionx.config import (
    DenoiseSettings,
    ExecutionSettings,
    MapsSettings,
    SelectionSettings,
    Settings,
)
from bids_regionx.errors import (
    DataError,
    NoInputError,
    NoMatchingRunsError,
    UsageError,
)
from bids_regionx.io import queries
from bids_regionx.io.queries import RunInputs, collect_runs, database_dir
from bids_regionx.synthetic.dataset import VARIANTS, inject_fault, make_variant

REALDATA = Path("/work/shared/realdata/bids")
DS000001 = REALDATA / "ds000001-fmriprep"
EXAMPLES = REALDATA / "synthetic"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Lazily written variants of the tiny dataset: name -> (folder, DatasetInfo)."""
    cache = {}

    def get(name: str):
        if name not in cache:
            folder = tmp_path_factory.mktemp(name)
            cache[name] = (folder, make_variant(folder, name))
        return cache[name]

    return get


@pytest.fixture
def variants(written):
    """A shared variant; tests must not change it (use ``fresh`` for that)."""
    return lambda name: written(name)[1]


@pytest.fixture
def fresh(written, tmp_path):
    """A private copy of a variant, for tests that break or re-mode it (copying is faster
    than generating)."""

    def make(name: str = "single_run"):
        folder, info = written(name)
        shutil.copytree(folder, tmp_path / "data")
        return _rebase(info, folder, tmp_path / "data")

    return make


def _rebase(obj, old: Path, new: Path):
    """``obj`` (DatasetInfo/RunInfo) with every path under ``old`` moved under ``new``."""

    def move(value):
        if isinstance(value, Path) and old in value.parents:
            return new / value.relative_to(old)
        if isinstance(value, tuple) and value and dataclasses.is_dataclass(value[0]):
            return tuple(_rebase(item, old, new) for item in value)
        return value

    changes = {f.name: move(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    return dataclasses.replace(obj, **changes)


def settings_for(info, tmp_path: Path, **selection) -> Settings:
    """Settings on a synthetic dataset (raw bids_dir + -d fmriprep for the raw variant)."""
    datasets = dict(selection.pop("datasets", {}))
    bids_dir = info.root
    if info.raw_root is not None:
        bids_dir = info.raw_root
        datasets["fmriprep"] = info.root
    t_r = selection.pop("t_r", None)
    return Settings(
        bids_dir=bids_dir,
        output_dir=tmp_path / "out",
        analysis_level="participant",
        selection=SelectionSettings(datasets=datasets, **selection),
        maps=MapsSettings(files=(info.maps,)),
        denoise=DenoiseSettings(t_r=t_r),
        execution=ExecutionSettings(work_dir=tmp_path / "work"),
    )


def real_settings(root: Path, tmp_path: Path, *, raw: Path | None = None, **selection):
    datasets = {"fmriprep": root} if raw is not None else {}
    return Settings(
        bids_dir=raw or root,
        output_dir=tmp_path / "out",
        analysis_level="participant",
        selection=SelectionSettings(datasets=datasets, **selection),
        maps=MapsSettings(files=(tmp_path / "maps.nii.gz",)),
        execution=ExecutionSettings(work_dir=tmp_path / "work"),
    )


def listing(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


# --------------------------------------------------------------------------------------------
# Every variant of the synthetic dataset
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_pairs_each_run_with_its_files(variants, tmp_path, name):
    info = variants(name)
    runs = collect_runs(settings_for(info, tmp_path), maps_space=info.space)
    assert len(runs) == len(info.runs)
    by_bold = {run.bold: run for run in runs}
    for truth in info.runs:
        run = by_bold[truth.bold]
        assert run.problem is None
        assert run.mask == truth.mask
        assert run.confounds == truth.confounds
        assert run.confounds_json == truth.confounds_json
        assert run.bold_json == truth.bold_json
        assert run.t_r == info.t_r
        assert run.n_volumes == truth.n_volumes
        assert run.shape == (*info.shape, truth.n_volumes)
        assert run.affine == tuple(tuple(float(v) for v in row) for row in info.affine)
        expected = {"subject": truth.subject, "task": truth.task, "run": str(truth.run)}
        if truth.session is not None:
            expected["session"] = truth.session
        assert run.source_entities() == expected
        assert run.entities["space"] == info.space
        assert run.entities.get("res") == info.res


def test_legacy_confounds_are_found_under_their_old_name(variants, tmp_path):
    runs = collect_runs(settings_for(variants("legacy_confounds"), tmp_path))
    assert all(run.confounds.name.endswith("_desc-confounds_regressors.tsv") for run in runs)


def test_res_entity_enters_the_key_and_entities(variants, tmp_path):
    run = collect_runs(settings_for(variants("res"), tmp_path))[0]
    assert run.key == "sub-01_task-rest_run-1_space-MNI152NLin2009cAsym_res-2"
    assert run.entities["res"] == "2"
    assert "res" not in run.source_entities()


def test_runs_are_sorted_hashable_and_deterministic(variants, tmp_path):
    settings = settings_for(variants("multitask"), tmp_path)
    first, second = collect_runs(settings), collect_runs(settings)
    assert first == second
    assert [r.bold for r in first] == sorted(r.bold for r in first)
    assert len({hash(run) for run in first}) == len(first)
    assert len({run.key for run in first}) == len(first)


def test_run_labels_keep_their_zero_padding(fresh, tmp_path):
    info = fresh()
    for path in info.root.rglob("*run-1_*"):
        path.rename(path.with_name(path.name.replace("run-1_", "run-01_")))
    run = collect_runs(settings_for(info, tmp_path))[0]
    assert run.entities["run"] == "01"
    assert "_run-01_" in run.key + "_"


# --------------------------------------------------------------------------------------------
# Selection options
# --------------------------------------------------------------------------------------------
def test_participant_label_selects_and_restricts_the_index(variants, tmp_path):
    settings = settings_for(variants("multitask"), tmp_path, participant_labels=("sub-02",))
    runs = collect_runs(settings)
    assert {run.subject for run in runs} == {"02"}
    assert len(runs) == 4


def test_unknown_participant_labels_are_all_listed(variants, tmp_path):
    settings = settings_for(variants("single_run"), tmp_path, participant_labels=("07", "01", "9"))
    with pytest.raises(UsageError, match=r"for 07, 9$") as caught:
        collect_runs(settings)
    assert caught.value.exit_code == 64


def test_session_label_selects_sessions(variants, tmp_path):
    runs = collect_runs(settings_for(variants("sessions"), tmp_path, session_labels=("2",)))
    assert {run.entities["session"] for run in runs} == {"2"}
    assert len(runs) == 2


def test_task_id_selects_tasks(variants, tmp_path):
    runs = collect_runs(settings_for(variants("multitask"), tmp_path, task_ids=("nback",)))
    assert {run.entities["task"] for run in runs} == {"nback"}


@pytest.mark.parametrize(
    ("space", "maps_space", "found"),
    [
        (None, None, True),  # default: MNI152NLin2009cAsym
        (None, "MNI152NLin2009cAsym", True),
        (None, "MNI152NLin6Asym", False),  # the maps' space when --space is absent
        ("MNI152NLin6Asym", "MNI152NLin2009cAsym", False),  # --space wins over the maps
        ("MNI152NLin2009cAsym", "MNI152NLin6Asym", True),
    ],
)
def test_space_comes_from_option_then_maps_then_default(
    variants, tmp_path, space, maps_space, found
):
    settings = settings_for(variants("single_run"), tmp_path, space=space)
    if found:
        assert len(collect_runs(settings, maps_space=maps_space)) == 1
    else:
        with pytest.raises(NoMatchingRunsError, match="space MNI152NLin6Asym") as caught:
            collect_runs(settings, maps_space=maps_space)
        assert "the dataset has: space MNI152NLin2009cAsym" in str(caught.value)
        assert caught.value.exit_code == 18


# --------------------------------------------------------------------------------------------
# --bids-filter-file
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("filters", "expected_runs"),
    [
        ({"bold": {"run": 2}}, {"2"}),
        ({"bold": {"run": "2"}}, {"2"}),
        ({"bold": {"run": [1, 2]}}, {"1", "2"}),
        ({"bold": {"run": "*"}}, {"1", "2"}),
        ({"bold": {"session": None}}, {"1", "2"}),  # no session entity: every run
        ({"bold": {"acquisition": None}}, {"1", "2"}),
    ],
)
def test_bold_filters(variants, tmp_path, filters, expected_runs):
    settings = settings_for(variants("multitask"), tmp_path, bids_filters=filters)
    assert {run.entities["run"] for run in collect_runs(settings)} == expected_runs


def test_bold_filter_matching_nothing_names_the_filter(variants, tmp_path):
    filters = {"bold": {"session": None}}
    settings = settings_for(variants("sessions"), tmp_path, bids_filters=filters)
    with pytest.raises(NoMatchingRunsError) as caught:
        collect_runs(settings)
    message = str(caught.value)
    assert '--bids-filter-file bold {"session": "none"}' in message
    assert "session 1, 2" in message


def test_space_in_bold_filter_wins_over_the_maps_space(variants, tmp_path):
    filters = {"bold": {"space": "MNI152NLin2009cAsym"}}
    settings = settings_for(variants("single_run"), tmp_path, bids_filters=filters)
    assert len(collect_runs(settings, maps_space="MNI152NLin6Asym")) == 1


def test_confounds_filter_is_merged_into_the_confounds_query(variants, tmp_path):
    filters = {"confounds": {"desc": "customconfounds"}}
    settings = settings_for(variants("single_run"), tmp_path, bids_filters=filters)
    (run,) = collect_runs(settings)
    assert run.confounds is None
    assert "no confounds table" in run.problem


def test_mask_filter_can_exclude_masks(variants, tmp_path):
    settings = settings_for(variants("single_run"), tmp_path, bids_filters={"mask": {"res": "9"}})
    (run,) = collect_runs(settings)
    assert run.mask is None and run.problem is None


def test_two_bold_files_for_one_run_are_refused(fresh, tmp_path):
    info = fresh()
    bold = info.runs[0].bold
    shutil.copy(bold, bold.with_name(bold.name.replace("desc-preproc", "desc-smooth")))
    settings = settings_for(info, tmp_path, bids_filters={"bold": {"desc": "*"}})
    with pytest.raises(UsageError, match="several BOLD files for one run"):
        collect_runs(settings)


def test_nii_gz_is_preferred_over_nii(fresh, tmp_path):
    info = fresh()
    bold = info.runs[0].bold
    shutil.copy(bold, bold.with_name(bold.name.replace(".nii.gz", ".nii")))
    (run,) = collect_runs(settings_for(info, tmp_path), read_headers=False)
    assert run.bold == bold


# --------------------------------------------------------------------------------------------
# Problems: one broken run never hides the others
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fault", "kind", "message", "error"),
    [
        ("missing_confounds", "missing", "no confounds table", NoInputError),
        ("missing_tr", "invalid", "_desc-preproc_bold.json: no RepetitionTime", DataError),
        ("bad_json", "invalid", "_desc-preproc_bold.json: invalid JSON", DataError),
        ("empty_bold", "invalid", "the file is empty", DataError),
        ("bold_3d", "invalid", "a 3D image, expected a 4D BOLD series", DataError),
    ],
)
def test_a_broken_run_is_returned_with_its_problem(fresh, tmp_path, fault, kind, message, error):
    info = fresh("multitask")
    inject_fault(info, fault, run=1)
    settings = settings_for(info, tmp_path)
    runs = collect_runs(settings)
    broken = [run for run in runs if run.problem]
    assert [run.bold for run in broken] == [info.runs[1].bold]
    assert broken[0].problem_kind == kind
    assert message in broken[0].problem
    assert "sub-01_task-rest_run-2_space-MNI152NLin2009cAsym_desc-preproc" in broken[0].problem
    with pytest.raises(error, match="sub-01"):
        collect_runs(settings, strict=True)


def test_missing_mask_and_confounds_sidecar_are_allowed(fresh, tmp_path):
    info = fresh()
    inject_fault(info, "missing_mask")
    inject_fault(info, "missing_confounds_json")
    (run,) = collect_runs(settings_for(info, tmp_path), strict=True)
    assert run.mask is None and run.confounds_json is None


@pytest.mark.parametrize("fault", ["missing_tr", "bad_json"])
def test_t_r_option_overrides_the_sidecar(fresh, tmp_path, fault):
    info = fresh()
    inject_fault(info, fault)
    (run,) = collect_runs(settings_for(info, tmp_path, t_r=1.5), strict=True)
    assert run.t_r == 1.5


def test_repetition_time_is_inherited_from_a_higher_sidecar(fresh, tmp_path):
    info = fresh()
    bold_json = info.runs[0].bold_json
    bold_json.unlink()
    top = info.root / "task-rest_bold.json"
    top.write_text(json.dumps({"RepetitionTime": 3.0}))
    (run,) = collect_runs(settings_for(info, tmp_path), strict=True)
    assert (run.t_r, run.bold_json) == (3.0, top)


@pytest.mark.parametrize(
    ("change", "kind", "message"),
    [
        (lambda p: p.write_text('{"RepetitionTime": "2s"}'), "invalid", "positive number of s"),
        (lambda p: p.write_text('{"RepetitionTime": 0}'), "invalid", "got 0"),
        (lambda p: p.unlink(), "missing", "no JSON sidecar, so no RepetitionTime"),
    ],
)
def test_bad_or_absent_repetition_time(fresh, tmp_path, change, kind, message):
    info = fresh()
    change(info.runs[0].bold_json)
    (run,) = collect_runs(settings_for(info, tmp_path))
    assert run.problem_kind == kind and message in run.problem and run.t_r is None


def test_raise_for_problem_maps_kinds_to_exit_codes():
    base = dict(
        entities={}, bold=Path("b"), mask=None, confounds=None, confounds_json=None,
        bold_json=None, t_r=None, n_volumes=None, shape=None, affine=None, key="k",
    )  # fmt: skip
    RunInputs(**base).raise_for_problem()
    with pytest.raises(NoInputError) as missing:
        RunInputs(**base, problem="x", problem_kind="missing").raise_for_problem()
    with pytest.raises(DataError) as invalid:
        RunInputs(**base, problem="x", problem_kind="invalid").raise_for_problem()
    assert (missing.value.exit_code, invalid.value.exit_code) == (66, 65)


# --------------------------------------------------------------------------------------------
# The index: never inside an input, works on read-only data
# --------------------------------------------------------------------------------------------
def test_read_only_bids_dir_is_never_written(fresh, tmp_path):
    info = fresh("raw")
    before = {root: listing(root) for root in (info.raw_root, info.maps_dir)}
    for path in [info.raw_root, *info.raw_root.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        runs = collect_runs(settings_for(info, tmp_path))
        assert len(runs) == len(info.runs) and not any(run.problem for run in runs)
        assert {root: listing(root) for root in before} == before
    finally:
        for path in [info.raw_root, *info.raw_root.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def test_default_index_is_under_the_work_dir_and_rebuilt(variants, tmp_path):
    info = variants("single_run")
    settings = settings_for(info, tmp_path)
    collect_runs(settings)
    db = database_dir(settings)
    assert db.parent == tmp_path / "work" / "bids_db"
    assert (db / "layout_index.sqlite").is_file()
    assert not list(info.root.rglob("*.sqlite"))
    # A run added later is seen: the private index is rebuilt on every call.
    extra = info.runs[0]
    copies = []
    for path in (extra.bold, extra.bold_json, extra.confounds, extra.mask):
        copies.append(path.with_name(path.name.replace("run-1", "run-7")))
        shutil.copy(path, copies[-1])
    try:
        assert len(collect_runs(settings)) == 2
    finally:
        for path in copies:
            path.unlink()


def test_index_depends_on_the_participants(variants, tmp_path):
    info = variants("multitask")
    one = settings_for(info, tmp_path, participant_labels=("01",))
    two = settings_for(info, tmp_path, participant_labels=("01", "02"))
    assert database_dir(one) != database_dir(two)


def test_explicit_database_dir_is_built_once_and_shared(variants, tmp_path, monkeypatch):
    info = variants("multitask")
    db = tmp_path / "db"
    everyone = settings_for(info, tmp_path, bids_database_dir=db)
    assert len(collect_runs(everyone)) == len(info.runs)
    assert (db / "layout_index.sqlite").is_file()

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the shared index must be reused")

    monkeypatch.setattr(queries, "_index", no_rebuild)
    one = settings_for(info, tmp_path, bids_database_dir=db, participant_labels=("02",))
    assert {run.subject for run in collect_runs(one)} == {"02"}


def test_explicit_database_dir_of_another_dataset_is_refused(variants, tmp_path):
    db = tmp_path / "db"
    collect_runs(settings_for(variants("single_run"), tmp_path, bids_database_dir=db))
    other = settings_for(variants("multitask"), tmp_path, bids_database_dir=db)
    with pytest.raises(UsageError, match="holds the index of"):
        collect_runs(other)


def test_importing_io_does_not_import_pybids():
    code = (
        "import sys, bids_regionx.io.queries, bids_regionx.io.maps, bids_regionx.io.derivatives;"
        "assert 'bids' not in sys.modules, 'pybids imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ})


# --------------------------------------------------------------------------------------------
# Real trees (placeholder images: headers are not read there)
# --------------------------------------------------------------------------------------------
needs_ds000001 = pytest.mark.skipif(not DS000001.is_dir(), reason="real data not available")
needs_examples = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="real data not available")


@needs_ds000001
def test_fmriprep_20_tree(tmp_path):
    runs = collect_runs(real_settings(DS000001, tmp_path), read_headers=False)
    assert len(runs) == 12
    assert {run.subject for run in runs} == {"10", "11", "13", "16"}
    for run in runs:
        assert run.problem is None and run.t_r == 2.0
        assert run.key.endswith("_space-MNI152NLin2009cAsym_res-2")
        assert run.mask.name.endswith("_res-2_desc-brain_mask.nii.gz")
        assert run.confounds.name.endswith("_desc-confounds_timeseries.tsv")
        assert run.confounds_json.is_file()
        assert run.n_volumes is None


@needs_ds000001
def test_fmriprep_20_tree_selection_and_placeholders(tmp_path):
    settings = real_settings(
        DS000001, tmp_path, participant_labels=("16",), task_ids=("balloonanalogrisktask",)
    )
    runs = collect_runs(settings)
    assert [run.entities["run"] for run in runs] == ["1", "2", "3"]
    # The images are 0-byte placeholders: reading headers turns each run into a problem.
    assert all("the file is empty" in run.problem for run in runs)
    # The ICA-AROMA output is desc-smoothAROMAnonaggr, not a preprocessed BOLD.
    with pytest.raises(NoMatchingRunsError, match="space MNI152NLin2009cAsym"):
        collect_runs(real_settings(DS000001, tmp_path, space="MNI152NLin6Asym"))


@needs_examples
def test_hand_converted_fmriprep_1_tree_with_raw_bids_dir(tmp_path):
    settings = real_settings(EXAMPLES / "derivatives" / "fmriprep", tmp_path, raw=EXAMPLES)
    runs = collect_runs(settings)
    assert len(runs) == 30  # 5 subjects x 2 sessions x (nback run-01, run-02, rest)
    for run in runs:
        assert run.problem is None
        assert run.mask.name.endswith("_label-brain_mask.nii")  # legacy name (io_spec)
        assert run.confounds.name.endswith("_timeseries.tsv")  # no desc-confounds
        assert run.n_volumes == 64 and run.t_r == 2.5
    assert {run.entities["run"] for run in runs if run.entities["task"] == "nback"} == {"01", "02"}
