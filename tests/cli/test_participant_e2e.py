"""End-to-end participant runs on tiny generated fMRIPrep-shaped datasets.

One module-scoped run of the ``tiny`` preset (every connectivity measure, ``--fisher-z``) is
checked for its file list (against ``tests/data/expected_outputs_tiny.txt``), TSV shapes and
headers, JSON keys, bids-validator, a rerun with the same work dir, and a run on a read-only
copy of ``bids_dir``. Each selection and denoising option then gets its own small run.

Runs go through :func:`bids_regionx.cli.run.main` in this process (0.3-0.5 s each); the
read-only run goes through the console entry point in a subprocess.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bids_regionx.cli.run import main
from bids_regionx.synthetic.dataset import make_preset, make_variant

DATA = Path(__file__).resolve().parents[1] / "data"
EXPECTED_TINY = DATA / "expected_outputs_tiny.txt"
SPACE = "MNI152NLin2009cAsym"
#: Options every run shares: fast extraction on the 8 mm tiny grid, no multiprocessing.
TINY = ("--extractor", "connected_components", "--min-region-size", "500", "--plugin", "Linear")
MEASURES = ("correlation", "partial correlation", "covariance", "precision")
STATS = ("pearsoncorrelation", "partialcorrelation", "covariance", "precision")

#: Outputs left out of the file-list comparison: hidden state and locks, per-invocation logs
#: (their folder is named by date and a random id), and the report and boilerplate files,
#: which belong to the reports layer (``sub-*/figures/``, ``*.html``, ``logs/``).
_NOT_COMPARED = re.compile(r"^(\.bids_regionx/|sub-[^/]+/log/|sub-[^/]+/figures/|logs/)|\.html$")

# Sidecar keys of each output kind (docs/outputs.md, "Files").
TIMESERIES_KEYS = {
    "Description", "SamplingFrequency", "RepetitionTime", "NumberOfVolumes", "Sources",
    "NodeFiles", "DenoisingStrategy", "ConfoundRegressors",
    "NumberOfVolumesDiscardedByNonsteadyStatesDetector",
    "NumberOfVolumesDiscardedByMotionScrubbing", "NumberOfVolumesDiscardedAsShortSegments",
    "MeanFramewiseDisplacement", "RegionsSetToNA", "MinimumCoverage", "SmoothingFWHM",
    "Standardize", "StandardizeConfounds", "Detrend", "LowPass", "HighPass", "CleanArguments",
}
COVERAGE_KEYS = {"Description", "MinimumCoverage", "Sources"}
RELMAT_KEYS = {
    "Description", "RelationshipMeasure", "FisherZ", "Weighted", "Directed", "ValidDiagonal",
    "StorageFormat", "NumberOfVolumes", "Sources", "NodeFiles",
}
DESIGN_KEYS = {
    "Description", "DenoisingStrategy", "StrategyDescription", "ConfoundRegressors", "Sources",
}
OUTLIERS_KEYS = {
    "Description", "RunStatus", "DropReason", "NumberOfVolumes", "NumberOfVolumesKept",
    "NumberOfVolumesDiscardedByNonsteadyStatesDetector",
    "NumberOfVolumesDiscardedByMotionScrubbing", "NumberOfVolumesCensoredForFD",
    "NumberOfVolumesCensoredForDVARS", "NumberOfVolumesDiscardedAsShortSegments",
    "MeanFramewiseDisplacement", "MaxFramewiseDisplacement", "FramewiseDisplacementThreshold",
    "DVARSThreshold", "MinimumSegmentLength", "KeptTime", "RegionsSetToNA", "Sources",
}
ATLAS_KEYS = {"Description", "LabelMap", "Sources", "SpatialReference"}
DESCRIPTION_KEYS = {
    "Name", "BIDSVersion", "DatasetType", "GeneratedBy", "SourceDatasets", "DatasetLinks",
    "HowToAcknowledge",
}
REGION_COLUMNS = [
    "index", "name", "map_index", "map_name", "n_voxels", "volume_mm3", "peak_x", "peak_y",
    "peak_z", "peak_value", "centre_x", "centre_y", "centre_z",
]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def _isolated_env(app_env):
    """Caches in a temporary folder and one BLAS thread (``app_env`` in conftest)."""
    yield


def run_app(*args) -> tuple[int, str]:
    """``bids_regionx ARGS`` in this process: ``(exit code, what it printed on stderr)``."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main([str(arg) for arg in args])
    return code, err.getvalue()


def run_tiny(info, out: Path, *extra, bids_dir=None, work: Path | None = None, ok: bool = True,
             reports: bool = False):
    """The participant level on a generated dataset (its maps, the tiny options).

    Reports are left out (``--no-reports``) unless asked for: the option runs check the
    derivatives; the shared base run makes everything, reports included.
    """
    work = work or out.parent / f"{out.name}_work"
    code, err = run_app(bids_dir or info.root, out, "participant", "--maps", info.maps,
                        *TINY, "-w", work, *([] if reports else ["--no-reports"]), *extra)
    if ok:
        assert code == 0, err
    return code, err


def listing(root: Path) -> list[str]:
    """Relative paths of the files compared with the expected list."""
    return sorted(
        rel for rel in (p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        if not _NOT_COMPARED.search(rel)
    )


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """``{relative path: (sha256, mtime_ns)}`` of every output (not the per-invocation logs)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not re.match(r"sub-[^/]+/log/", rel):
            out[rel] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    return out


def read_tsv(path: Path, **kwargs) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False, **kwargs)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def sidecar(path: Path) -> dict:
    return read_json(path.with_name(path.name.split(".")[0] + ".json"))


def func_files(out: Path, pattern: str) -> list[Path]:
    return sorted(out.glob(f"sub-*/**/func/{pattern}"))


def validator() -> str | None:
    found = Path(sys.executable).with_name("bids-validator-deno")
    return str(found) if found.exists() else shutil.which("bids-validator-deno")


def validate(dataset: Path) -> list[dict]:
    """bids-validator-deno issues of severity ``error`` (it runs offline)."""
    exe = validator()
    if exe is None:
        pytest.skip("bids-validator-deno is not installed (pip install bids-validator-deno)")
    proc = subprocess.run([exe, str(dataset), "--format", "json", "--no-color"],
                          capture_output=True, text=True, timeout=120)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"bids-validator-deno gave no JSON (exit {proc.returncode}): "
                    f"{proc.stderr[-2000:]}")
    return [issue for issue in report["issues"]["issues"] if issue.get("severity") == "error"]


# --------------------------------------------------------------------------------------------
# The shared tiny run
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The ``tiny`` preset: 2 subjects x 2 runs of 60 volumes, 3 maps of 2 blobs."""
    return make_preset(tmp_path_factory.mktemp("data") / "tiny", "tiny")


@pytest.fixture(scope="module")
def base(tiny, tmp_path_factory):
    """Output and work dirs of one run with every participant-level measure and Fisher z."""
    root = tmp_path_factory.mktemp("base")
    out, work = root / "out", root / "work"
    run_tiny(tiny, out, "--connectivity", *MEASURES, "--fisher-z", work=work, reports=True)
    return out, work


def test_file_list_is_the_expected_one(base):
    out, _ = base
    expected = [line for line in EXPECTED_TINY.read_text().splitlines()
                if line and not line.startswith("#")]
    assert listing(out) == expected


def test_hidden_state_and_logs(base, tiny):
    out, _ = base
    options = read_json(out / ".bids_regionx" / "options.json")
    assert options["OutputOptions"]["connectivity.fisher_z"] is True
    for subject in tiny.subjects:
        assert list((out / f"sub-{subject}" / "log").glob("*/config.toml"))
    assert not list(out.rglob(".*.tmp")), "temporary files left behind"


def test_region_table_and_atlas(base, tiny):
    out, _ = base
    atlas = out / "atlases" / f"tpl-{SPACE}"
    table = read_tsv(atlas / f"tpl-{SPACE}_atlas-{tiny.atlas}_seg-regions_probseg.tsv")
    assert list(table.columns) == REGION_COLUMNS
    # 3 maps of 2 well separated blobs: 6 connected regions, named <map>_<k>.
    assert len(table) == 6
    assert list(table["index"]) == list(range(1, 7))
    assert set(table["map_name"]) == set(tiny.map_names)
    pairs = zip(table["name"], table["map_name"], strict=True)
    assert all(name.startswith(f"{m}_") for name, m in pairs)
    assert (table["volume_mm3"] == table["n_voxels"] * 8.0**3).all()
    import nibabel as nib

    regions = nib.load(atlas / f"tpl-{SPACE}_atlas-{tiny.atlas}_seg-regions_probseg.nii.gz")
    assert regions.shape == (*tiny.shape, 6)
    meta = sidecar(atlas / f"tpl-{SPACE}_atlas-{tiny.atlas}_seg-regions_probseg.json")
    assert set(meta) == ATLAS_KEYS
    assert meta["LabelMap"] == list(table["name"])
    maps_tsv = read_tsv(atlas / f"tpl-{SPACE}_atlas-{tiny.atlas}_probseg.tsv")
    assert list(maps_tsv.columns) == ["index", "name"]
    assert list(maps_tsv["name"]) == list(tiny.map_names)
    maps_meta = read_json(atlas / f"tpl-{SPACE}_atlas-{tiny.atlas}_probseg.json")
    assert set(maps_meta) == ATLAS_KEYS
    # The maps are named by a BIDS URI into the linked maps dataset, not by a host path.
    assert maps_meta["Sources"] == [
        f"bids:maps:{tiny.maps.relative_to(tiny.maps_dir).as_posix()}"
    ]
    described = read_json(out / "atlases" / f"atlas-{tiny.atlas}_description.json")
    source = read_json(tiny.maps_dir / f"atlas-{tiny.atlas}_description.json")
    assert described["License"] == source["License"]
    assert described["Name"] == source["Name"]
    assert described["LevelType"] == "group"


def test_tsv_shapes_and_headers(base, tiny):
    out, _ = base
    names = list(read_tsv(next(out.glob("atlases/tpl-*/*_seg-regions_probseg.tsv")))["name"])
    for run in tiny.runs:
        prefix = f"sub-{run.subject}_task-{run.task}_run-{run.run}"
        func = out / f"sub-{run.subject}" / "func"
        stem = f"{prefix}_space-{SPACE}_atlas-{tiny.atlas}_seg-regions"
        series = read_tsv(func / f"{stem}_stat-mean_timeseries.tsv")
        meta = sidecar(func / f"{stem}_stat-mean_timeseries.tsv")
        outliers = read_tsv(func / f"{prefix}_outliers.tsv")
        outliers_meta = sidecar(func / f"{prefix}_outliers.tsv")
        design = read_tsv(func / f"{prefix}_design.tsv")
        coverage = read_tsv(func / f"{stem}_stat-coverage_bold.tsv")

        assert list(series.columns) == names
        assert len(series) == meta["NumberOfVolumes"] == outliers_meta["NumberOfVolumesKept"]
        assert len(series) == run.n_volumes - run.n_dummy  # no censoring in "simple"
        assert series.notna().all().all()
        assert {"dummy", "fd", "dvars", "short_segment"} <= set(outliers.columns)
        assert len(outliers) == run.n_volumes == outliers_meta["NumberOfVolumes"]
        assert int(outliers["dummy"].sum()) == run.n_dummy
        assert len(design) == run.n_volumes
        assert list(design.columns) == meta["ConfoundRegressors"]
        assert list(coverage.columns) == ["name", "coverage", "used"]
        assert list(coverage["name"]) == names
        for label in STATS:
            for desc in ("", "_desc-fisherz") if label in STATS[:2] else ("",):
                matrix = read_tsv(func / f"{stem}_stat-{label}{desc}_relmat.tsv", index_col=0)
                assert matrix.index.name == "Node"
                assert list(matrix.index) == names == list(matrix.columns)
                values = matrix.to_numpy()
                assert ((values == values.T) | (values != values)).all()


def test_json_keys(base, tiny):
    out, _ = base
    kinds = {
        "*_stat-mean_timeseries.json": TIMESERIES_KEYS,
        "*_stat-coverage_bold.json": COVERAGE_KEYS,
        "*_relmat.json": RELMAT_KEYS,
        "*_design.json": DESIGN_KEYS,
        "*_outliers.json": OUTLIERS_KEYS,
    }
    for pattern, keys in kinds.items():
        files = func_files(out, pattern)
        assert len(files) >= len(tiny.runs), pattern
        for path in files:
            assert set(read_json(path)) == keys, path.name
    run1 = func_files(out, "sub-01_task-rest_run-1_*_stat-mean_timeseries.json")[0]
    meta = read_json(run1)
    assert meta["SamplingFrequency"] == pytest.approx(1 / tiny.t_r)
    assert meta["RepetitionTime"] == tiny.t_r
    assert meta["DenoisingStrategy"] == "simple"
    assert meta["Sources"][0] == (
        f"bids:preprocessed:sub-01/func/sub-01_task-rest_run-1_space-{SPACE}"
        "_desc-preproc_bold.nii.gz"
    )
    # Every bids:: URI points at a file of this dataset.
    for path in out.rglob("*.json"):
        for uri in re.findall(r'"bids::([^"]+)"', path.read_text()):
            assert (out / uri).is_file(), f"{path.name}: dangling {uri}"
    for path in func_files(out, "*_relmat.json"):
        meta = read_json(path)
        assert meta["FisherZ"] is ("desc-fisherz" in path.name)
        assert meta["ValidDiagonal"] is any(s in path.name for s in ("covariance", "precision"))
    description = read_json(out / "dataset_description.json")
    assert DESCRIPTION_KEYS <= set(description)
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "bids_regionx"
    assert description["GeneratedBy"][1]["Name"] == "fMRIPrep"
    assert description["DatasetLinks"]["preprocessed"] == str(tiny.root)
    assert read_json(out / "atlases" / "dataset_description.json")["DatasetType"] == "derivative"


def test_bids_validator_passes(base):
    out, _ = base
    assert validate(out) == []
    assert validate(out / "atlases") == []


def test_rerun_with_same_work_dir_recomputes_nothing(base, tiny):
    """Only the writer nodes run again (they always do, and leave unchanged files alone)."""
    out, work = base
    results = {p: p.stat().st_mtime_ns for p in work.glob("bids_regionx_wf/**/result_*.pklz")}
    before = snapshot(out)
    run_tiny(tiny, out, "--connectivity", *MEASURES, "--fisher-z", work=work, reports=True)
    after_results = {p: p.stat().st_mtime_ns
                     for p in work.glob("bids_regionx_wf/**/result_*.pklz")}
    assert set(after_results) == set(results), "new nodes were created"
    rerun = sorted(p.parent.name for p in results if after_results[p] != results[p])
    assert rerun and all(name.startswith("write_") for name in rerun), rerun
    assert snapshot(out) == before  # same bytes, and no file rewritten (same mtimes)


def _read_only_mount() -> bool:
    """Whether this process can bind-mount a folder read-only in a private mount namespace."""
    if shutil.which("unshare") is None:
        return False
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                          capture_output=True)
    return proc.returncode == 0


def _tree_state(root: Path) -> dict[str, tuple[str, int, int]]:
    return {
        p.relative_to(root).as_posix(): (
            hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir",
            p.stat().st_mtime_ns,
            p.stat().st_mode,
        )
        for p in sorted(root.rglob("*"))
    }


def test_read_only_bids_dir(base, tiny, tmp_path):
    """A read-only copy of bids_dir (and, when possible, a read-only mount) works, unchanged.

    Root ignores permission bits, so the tree is also hashed before and after, and the run
    goes through a read-only bind mount when the kernel lets us make one.
    """
    bids = tmp_path / "fmriprep"
    shutil.copytree(tiny.root, bids)
    for path in [bids, *bids.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    state = _tree_state(bids)
    out, work = tmp_path / "out", tmp_path / "work"
    cmd = [sys.executable, "-m", "bids_regionx.cli.run", str(bids), str(out), "participant",
           "--maps", str(tiny.maps), *TINY, "-w", str(work), "--connectivity", *MEASURES,
           "--fisher-z", "--no-reports"]
    mounted = _read_only_mount()
    if mounted:
        script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
        cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(bids), *cmd]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                              env=dict(os.environ))
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert _tree_state(bids) == state, "bids_dir was modified"
    finally:
        for path in [bids, *bids.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    # Same outputs as from the writable dataset, except the input paths named in the
    # dataset description.
    reference, _ = base
    assert listing(out) == listing(reference)
    for rel in listing(reference):
        if rel != "dataset_description.json":
            assert (out / rel).read_bytes() == (reference / rel).read_bytes(), rel
    assert read_json(out / "dataset_description.json")["DatasetLinks"]["preprocessed"] == str(
        bids)


# --------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------
def subjects_sessions_tasks_runs(out: Path) -> set[tuple]:
    found = set()
    for path in func_files(out, "*_stat-mean_timeseries.tsv"):
        ents = dict(part.split("-", 1) for part in path.name.split("_") if "-" in part)
        found.add((ents["sub"], ents.get("ses"), ents["task"], ents.get("run")))
    return found


@pytest.mark.parametrize("label", ["02", "sub-02"])
def test_participant_label(tiny, tmp_path, label):
    run_tiny(tiny, tmp_path / "out", "--participant-label", label)
    assert subjects_sessions_tasks_runs(tmp_path / "out") == {
        ("02", None, "rest", "1"), ("02", None, "rest", "2")
    }
    assert not (tmp_path / "out" / "sub-01").exists()


def test_unknown_participant_label_is_a_usage_error(tiny, tmp_path):
    code, err = run_tiny(tiny, tmp_path / "out", "--participant_label", "03", "07", ok=False)
    assert code == 64
    assert err.count("\n") == 1 and "03, 07" in err


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    root = tmp_path_factory.mktemp("variants")
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = make_variant(root / name, name)
        return cache[name]

    return get


def test_session_label(variants, tmp_path):
    info = variants("sessions")
    run_tiny(info, tmp_path / "out", "--session-label", "ses-2")
    assert subjects_sessions_tasks_runs(tmp_path / "out") == {
        ("01", "2", "rest", "1"), ("02", "2", "rest", "1")
    }
    assert list((tmp_path / "out" / "sub-01").glob("ses-2/func/*_design.tsv"))
    assert not (tmp_path / "out" / "sub-01" / "ses-1").exists()


@pytest.mark.parametrize("flag", ["-t", "--task-id"])
def test_task_id(variants, tmp_path, flag):
    info = variants("multitask")
    run_tiny(info, tmp_path / "out", flag, "nback", "--participant-label", "01")
    assert subjects_sessions_tasks_runs(tmp_path / "out") == {
        ("01", None, "nback", "1"), ("01", None, "nback", "2")
    }


def test_space_and_res(variants, tmp_path):
    """``res-`` of the BOLD runs is carried into the outputs; the maps keep their own."""
    info = variants("res")
    out = tmp_path / "out"
    run_tiny(info, out, "--space", SPACE, "--participant-label", "01")
    series = func_files(out, "*_stat-mean_timeseries.tsv")
    assert [p.name for p in series] == [
        f"sub-01_task-rest_run-{r}_space-{SPACE}_atlas-{info.atlas}_seg-regions_res-2"
        "_stat-mean_timeseries.tsv" for r in (1, 2)
    ]
    regions = out / "atlases" / f"tpl-{SPACE}" / (
        f"tpl-{SPACE}_atlas-{info.atlas}_seg-regions_res-2_probseg.tsv")
    assert regions.is_file()
    meta = sidecar(series[0])
    assert meta["NodeFiles"] == [f"bids::{regions.relative_to(out).as_posix()}"]
    maps_meta = read_json(regions.with_name(f"tpl-{SPACE}_atlas-{info.atlas}_res-2_probseg.json"))
    assert maps_meta["Resolution"].startswith("res-2")


def test_res_bold_with_maps_without_res(variants, tiny, tmp_path):
    """Maps without ``res-`` on ``res-2`` runs: the sidecars point at the regions written."""
    info = variants("res")
    out = tmp_path / "out"
    code, err = run_app(info.root, out, "participant", "--maps", tiny.maps, *TINY, "--no-reports",
                        "-w", tmp_path / "work", "--participant-label", "01")
    assert code == 0, err
    meta = sidecar(func_files(out, "*_stat-mean_timeseries.tsv")[0])
    for uri in meta["NodeFiles"]:
        assert (out / uri.removeprefix("bids::")).is_file(), uri


def test_space_without_runs_is_exit_18(tiny, tmp_path):
    code, err = run_tiny(tiny, tmp_path / "out", "--space", "MNI152NLin6Asym", ok=False)
    assert code == 18
    assert err.count("\n") == 1 and "MNI152NLin6Asym" in err


def test_bids_filter_file(tiny, tmp_path):
    filters = tmp_path / "filters.json"
    filters.write_text(json.dumps({"bold": {"run": 2, "session": None}, "mask": {"desc": "*"}}))
    run_tiny(tiny, tmp_path / "out", "--bids-filter-file", filters)
    assert subjects_sessions_tasks_runs(tmp_path / "out") == {
        ("01", None, "rest", "2"), ("02", None, "rest", "2")
    }


# --------------------------------------------------------------------------------------------
# Connectivity and denoising options
# --------------------------------------------------------------------------------------------
def test_combine_runs(tiny, tmp_path):
    out = tmp_path / "out"
    run_tiny(tiny, out, "--combine-runs", "--dtype", "float32", "--participant-label", "01")
    stem = f"sub-01_task-rest_space-{SPACE}_atlas-{tiny.atlas}_seg-regions"
    func = out / "sub-01" / "func"
    combined = read_tsv(func / f"{stem}_stat-mean_timeseries.tsv")
    meta = sidecar(func / f"{stem}_stat-mean_timeseries.tsv")
    per_run = [read_tsv(p) for p in sorted(func.glob("*_run-*_stat-mean_timeseries.tsv"))]
    assert len(per_run) == 2
    assert len(combined) == sum(len(r) for r in per_run) == meta["NumberOfVolumes"]
    assert list(combined.columns) == list(per_run[0].columns)
    assert set(meta) == TIMESERIES_KEYS | {"CombinedRuns"}
    assert meta["CombinedRuns"] == 2
    assert meta["DenoisingStrategy"] == "simple"
    assert meta["ConfoundRegressors"]
    assert meta["NumberOfVolumesDiscardedByNonsteadyStatesDetector"] == 2 * tiny.runs[0].n_dummy
    assert [uri.split(":")[1] for uri in meta["Sources"]] == ["preprocessed"] * 2 + [""]
    # Each run z-scored, then concatenated.
    half = combined.iloc[: len(per_run[0])]
    assert half.mean().abs().max() < 1e-5
    assert (half.std() - 1).abs().max() < 1e-5
    # --dtype float32: shortest float32 text, e.g. 0.9247532 rather than 0.924753189...
    first = (func / f"{stem}_stat-mean_timeseries.tsv").read_text().splitlines()[1]
    assert max(len(v) for v in first.split("\t")) <= 15
    matrix = read_tsv(func / f"{stem}_stat-pearsoncorrelation_relmat.tsv", index_col=0)
    assert matrix.shape == (6, 6)
    assert not list(func.glob("sub-01_task-rest_design.*"))  # per-run files only


@pytest.mark.parametrize(
    ("strategy", "check"),
    [
        ("none", lambda meta, design: meta["ConfoundRegressors"] == [] and design is None),
        ("scrubbing.5", lambda meta, design: len(design.columns) == 32 + 1),
        ("compcor", lambda meta, design: any(c.startswith("a_comp_cor") for c in design)),
        ("36P", lambda meta, design: len(design.columns) == 36),
    ],
)
def test_builtin_denoise_strategies(tiny, tmp_path, strategy, check):
    out = tmp_path / "out"
    run_tiny(tiny, out, "--denoise-strategy", strategy, "--participant-label", "01")
    series = func_files(out, "sub-01_task-rest_run-1_*_stat-mean_timeseries.tsv")[0]
    meta = sidecar(series)
    assert meta["DenoisingStrategy"] == strategy
    design_path = series.parent / "sub-01_task-rest_run-1_design.tsv"
    design = read_tsv(design_path) if design_path.exists() else None
    assert check(meta, design)
    if design is not None:
        assert list(design.columns) == meta["ConfoundRegressors"]
        assert read_json(design_path.with_suffix(".json"))["DenoisingStrategy"] == strategy
    outliers = sidecar(series.parent / "sub-01_task-rest_run-1_outliers.tsv")
    assert outliers["NumberOfVolumesKept"] == len(read_tsv(series))
    if strategy == "scrubbing.5":
        assert outliers["FramewiseDisplacementThreshold"] == 0.5
        assert outliers["MinimumSegmentLength"] == 5


def test_user_denoise_strategy_file(tiny, tmp_path):
    strategy = tmp_path / "motion6.json"
    motion = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    strategy.write_text(json.dumps({
        "schema_version": 1,
        "name": "motion6",
        "description": "The six head-motion parameters were regressed out [@friston1996].",
        "source": "tests",
        "confounds": motion,
        "high_pass": False,
        "compcor": None,
        "censoring": {"fd_threshold": 0.3, "dvars_threshold": None, "min_segment": 0},
        "dummy_scans": 4,
    }))
    out = tmp_path / "out"
    run_tiny(tiny, out, "--denoise-strategy", strategy, "--participant-label", "01")
    series = func_files(out, "sub-01_task-rest_run-1_*_stat-mean_timeseries.tsv")[0]
    meta = sidecar(series)
    assert meta["DenoisingStrategy"] == "motion6"
    assert meta["ConfoundRegressors"] == motion
    assert meta["NumberOfVolumesDiscardedByNonsteadyStatesDetector"] == 4
    outliers = read_tsv(series.parent / "sub-01_task-rest_run-1_outliers.tsv")
    assert int(outliers["dummy"].sum()) == 4
    assert len(read_tsv(series)) == meta["NumberOfVolumes"] == 60 - 4 - meta[
        "NumberOfVolumesDiscardedByMotionScrubbing"] - meta[
        "NumberOfVolumesDiscardedAsShortSegments"]
    design = sidecar(series.parent / "sub-01_task-rest_run-1_design.tsv")
    assert design["StrategyDescription"].startswith("The six head-motion")


def test_bad_strategy_file_is_one_usage_error(tiny, tmp_path):
    """Checked before anything runs: one line, exit 64, no output dir."""
    strategy = tmp_path / "bad.json"
    strategy.write_text(json.dumps({"bold": {"run": 1}}))
    code, err = run_tiny(tiny, tmp_path / "out", "--denoise-strategy", strategy, ok=False)
    assert code == 64
    assert err.count("\n") == 1 and str(strategy) in err
    assert not (tmp_path / "out").exists()


def test_mask_restricts_regions(tiny, tmp_path):
    import nibabel as nib
    import numpy as np

    maps = nib.load(tiny.maps)
    data = np.zeros(maps.shape[:3], dtype=np.uint8)
    data[:, : maps.shape[1] // 2] = 1  # the posterior half of the grid
    mask = tmp_path / "half_mask.nii.gz"
    nib.save(nib.Nifti1Image(data, maps.affine), mask)
    out = tmp_path / "out"
    run_tiny(tiny, out, "--mask", mask, "--participant-label", "01")
    atlas = out / "atlases" / f"tpl-{SPACE}"
    regions = nib.load(atlas / f"tpl-{SPACE}_atlas-{tiny.atlas}_seg-regions_probseg.nii.gz")
    used = nib.load(atlas / f"tpl-{SPACE}_atlas-{tiny.atlas}_probseg.nii.gz")
    outside = data == 0
    assert 0 < regions.shape[3] < 6
    assert not np.asarray(regions.dataobj)[outside].any()
    assert not np.asarray(used.dataobj)[outside].any()
    table = read_tsv(atlas / f"tpl-{SPACE}_atlas-{tiny.atlas}_seg-regions_probseg.tsv")
    series = read_tsv(func_files(out, "*_run-1_*_stat-mean_timeseries.tsv")[0])
    assert list(series.columns) == list(table["name"])


def test_unsupported_resampling_target_is_one_line(tiny, tmp_path):
    code, err = run_tiny(tiny, tmp_path / "out", "--resampling-target", "maps", ok=False)
    assert code == 64
    assert err.count("\n") == 1 and err.startswith("bids_regionx: error: --resampling-target")
    assert not (tmp_path / "out").exists()


def test_resampling_target_none_and_no_overlap(tiny, tmp_path):
    """Maps and BOLD share their grid: ``none`` and ``--no-allow-overlap`` both pass."""
    out = tmp_path / "out"
    run_tiny(tiny, out, "--resampling-target", "none", "--no-allow-overlap",
             "--participant-label", "01")
    assert len(func_files(out, "*_stat-mean_timeseries.tsv")) == 2


# --------------------------------------------------------------------------------------------
# Input layouts
# --------------------------------------------------------------------------------------------
def test_raw_bids_dir_with_fmriprep_dataset(variants, tmp_path):
    info = variants("raw")
    out = tmp_path / "out"
    run_tiny(info, out, "-d", f"fmriprep={info.root}", bids_dir=info.raw_root)
    description = read_json(out / "dataset_description.json")
    assert description["DatasetLinks"]["raw"] == str(info.raw_root)
    assert description["DatasetLinks"]["preprocessed"] == str(info.root)
    assert len(func_files(out, "*_stat-mean_timeseries.tsv")) == len(info.runs)
    # Without -d fmriprep the raw dataset is not a valid input (exit 16), in one line.
    code, err = run_tiny(info, tmp_path / "out2", bids_dir=info.raw_root, ok=False)
    assert code == 16 and err.count("\n") == 1


@pytest.mark.parametrize("name", ["legacy_confounds", "fmriprep20"])
def test_older_fmriprep_layouts(variants, base, tmp_path, name):
    """fMRIPrep < 20 (``desc-confounds_regressors.tsv``) and 20.x datasets give the same files."""
    info = variants(name)
    out = tmp_path / "out"
    run_tiny(info, out, "--connectivity", *MEASURES, "--fisher-z")
    reference, _ = base
    assert listing(out) == listing(reference)
    assert validate(out) == []
    generated = read_json(out / "dataset_description.json")["GeneratedBy"]
    assert generated[1]["Version"] == info.fmriprep_version
    for path in func_files(out, "*_design.json"):
        assert read_json(path)["ConfoundRegressors"]
