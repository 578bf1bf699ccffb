"""The group level on generated participant outputs.

The outputs are written here as the participant level writes them (same writers and names),
with known numbers: a dropped run, a region set to n/a, sessions, a decoy ``--combine-runs``
connectome. Every number the group level writes is recomputed here independently (the csv
module, explicit loops, nilearn as the tangent oracle) and compared. One test runs the real
participant level on the ``tiny`` synthetic dataset first.
"""

from __future__ import annotations

import csv
import html.parser
import json
import math
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from bids_regionx.cli.run import main
from bids_regionx.config import ConnectivitySettings, MapsSettings, RegionSettings, Settings
from bids_regionx.core.connectivity import connectivity
from bids_regionx.io import derivatives as deriv

SPACE = "MNI152NLin2009cAsym"
ATLAS = "Syn"
NAMES = ("Default_1", "Default_2", "Visual_1", "Visual_2", "Motor_1")
TR = 2.0
PREFIX = f"space-{SPACE}_atlas-{ATLAS}_seg-regions"
#: The runs the "participant level" saw: outliers sidecar numbers, regions set to n/a, status.
RUNS = [
    dict(sub="01", ses="1", run="1", n=50, kept=44, dummy=2, fd=3, dvars=2, motion=4, short=0,
         mean_fd=0.11, max_fd=0.93, na=(), drop=None),
    dict(sub="01", ses="1", run="2", n=50, kept=47, dummy=2, fd=1, dvars=0, motion=1, short=0,
         mean_fd=0.087, max_fd=0.61, na=(), drop=None),
    dict(sub="02", ses="1", run="1", n=50, kept=40, dummy=3, fd=5, dvars=3, motion=6, short=1,
         mean_fd=0.25, max_fd=1.71, na=("Visual_1",), drop=None),
    dict(sub="02", ses="1", run="2", n=50, kept=20, dummy=3, fd=25, dvars=9, motion=27, short=0,
         mean_fd=0.62, max_fd=3.2, na=(), drop="kept time 40.0 s < --min-time 60 s"),
    dict(sub="03", ses="1", run="1", n=50, kept=45, dummy=2, fd=2, dvars=1, motion=3, short=0,
         mean_fd=0.13, max_fd=0.75, na=(), drop=None),
]
USED = [r for r in RUNS if r["drop"] is None]


# --------------------------------------------------------------------------------------------
# Generated participant outputs
# --------------------------------------------------------------------------------------------
def participant_settings(bids, out, **regions) -> Settings:
    return Settings(
        bids_dir=bids,
        output_dir=out,
        analysis_level="participant",
        maps=MapsSettings(files=(bids.parent / "maps" / "syn_maps.nii.gz",), labels=(ATLAS,)),
        regions=RegionSettings(**regions),
        connectivity=ConnectivitySettings(measures=("correlation", "covariance")),
    )


def _entities(run) -> dict:
    return {"subject": run["sub"], "session": run["ses"], "task": "rest", "run": run["run"]}


def _series(run) -> np.ndarray:
    seed = int(run["sub"]) * 10 + int(run["run"])
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((len(NAMES), len(NAMES)))
    data = rng.standard_normal((run["kept"], len(NAMES))) @ mixing + 100.0
    for name in run["na"]:
        data[:, NAMES.index(name)] = np.nan
    return data


def _write_relmat(path, matrix):
    import pandas as pd

    frame = pd.DataFrame(matrix, index=pd.Index(list(NAMES), name="Node"), columns=list(NAMES))
    deriv.write_tsv(path, frame, index=True)
    deriv.write_json(path.with_suffix(".json"), {"Description": "x"})


def make_dataset(tmp_path, *, extra_bold=(), recorded=None, overrides=None):
    """An fMRIPrep-like bids_dir (BOLD names only) and the participant outputs of ``RUNS``.

    Parameters
    ----------
    extra_bold : subjects with BOLD runs in bids_dir but no outputs
    recorded : RegionSettings overrides of the options the output dir was made with
    overrides : subject -> RegionSettings overrides of that subject's own run (a mismatch)
    """
    import pandas as pd

    bids, out = tmp_path / "fmriprep", tmp_path / "out"
    (bids).mkdir()
    (bids / "dataset_description.json").write_text(json.dumps(
        {"Name": "x", "BIDSVersion": "1.11.1", "DatasetType": "derivative"}))
    for sub, ses, run in [(r["sub"], r["ses"], r["run"]) for r in RUNS] + [
        (s, "1", "1") for s in extra_bold
    ]:
        func = bids / f"sub-{sub}" / f"ses-{ses}" / "func"
        func.mkdir(parents=True, exist_ok=True)
        (func / f"sub-{sub}_ses-{ses}_task-rest_run-{run}_space-{SPACE}_desc-preproc_bold.nii.gz"
         ).write_bytes(b"")
    settings = participant_settings(bids, out, **(recorded or {}))
    deriv.prepare_output_dir(settings, maps_specs=())
    regions = deriv.output_path(out, "atlas_regions", space=SPACE, atlas=ATLAS, seg="regions",
                                suffix="probseg", extension=".tsv")
    deriv.write_tsv(regions, pd.DataFrame({
        "index": range(1, 6), "name": NAMES, "map_name": [n.split("_")[0] for n in NAMES],
        "volume_mm3": [800.0, 640.0, 512.0, 1024.0, 700.0]}))
    for sub in sorted({r["sub"] for r in RUNS}):
        own = participant_settings(bids, out, **({**(recorded or {}),
                                                  **(overrides or {}).get(sub, {})}))
        log = out / f"sub-{sub}" / "log" / "20260101-000000_0000abcd" / "config.toml"
        log.parent.mkdir(parents=True)
        log.write_text(own.to_toml())
    for run in RUNS:
        ents = _entities(run)
        atlas = {**ents, "space": SPACE, "atlas": ATLAS, "seg": "regions"}
        outliers = deriv.output_path(out, "outliers", **ents, suffix="outliers",
                                     extension=".json")
        deriv.write_json(outliers, {
            "Description": "x",
            "RunStatus": "dropped" if run["drop"] else "used",
            "DropReason": run["drop"],
            "NumberOfVolumes": run["n"],
            "NumberOfVolumesKept": run["kept"],
            "NumberOfVolumesDiscardedByNonsteadyStatesDetector": run["dummy"],
            "NumberOfVolumesDiscardedByMotionScrubbing": run["motion"],
            "NumberOfVolumesCensoredForFD": run["fd"],
            "NumberOfVolumesCensoredForDVARS": run["dvars"],
            "NumberOfVolumesDiscardedAsShortSegments": run["short"],
            "MeanFramewiseDisplacement": run["mean_fd"],
            "MaxFramewiseDisplacement": run["max_fd"],
            "KeptTime": run["kept"] * TR,
            "RegionsSetToNA": list(run["na"]),
        })
        coverage = deriv.output_path(out, "coverage", **atlas, stat="coverage", suffix="bold",
                                     extension=".tsv")
        deriv.write_tsv(coverage, pd.DataFrame({
            "name": NAMES, "coverage": [0.2 if n in run["na"] else 1.0 for n in NAMES],
            "used": [0 if n in run["na"] else 1 for n in NAMES]}))
        if run["drop"]:
            continue
        ts = deriv.output_path(out, "region_timeseries", **atlas, stat="mean",
                               suffix="timeseries", extension=".tsv")
        deriv.write_tsv(ts, pd.DataFrame(_series(run), columns=list(NAMES)))
        deriv.write_json(ts.with_suffix(".json"), {"RegionsSetToNA": list(run["na"])})
        data = read_table(ts)[1]
        for kind, stat in (("correlation", "pearsoncorrelation"), ("covariance", "covariance")):
            path = deriv.output_path(out, "relmat", **atlas, stat=stat, suffix="relmat",
                                     extension=".tsv")
            _write_relmat(path, connectivity(data, kind=kind))
    # A --combine-runs connectome (no run-): not a run, so never aggregated.
    decoy = out / "sub-01" / "ses-1" / "func" / (
        f"sub-01_ses-1_task-rest_{PREFIX}_stat-pearsoncorrelation_relmat.tsv")
    _write_relmat(decoy, np.zeros((5, 5)))
    return bids, out


# --------------------------------------------------------------------------------------------
# Independent readers and computations
# --------------------------------------------------------------------------------------------
def _float(text: str) -> float:
    return math.nan if text == "n/a" else float(text)


def read_table(path) -> tuple[list[str], np.ndarray]:
    """Header and float body of a TSV, with the csv module."""
    with open(path, newline="") as stream:
        rows = list(csv.reader(stream, delimiter="\t"))
    return rows[0], np.array([[_float(v) for v in row] for row in rows[1:]])


def read_named(path) -> tuple[list[str], np.ndarray]:
    """Region names and values of any relmat TSV."""
    with open(path, newline="") as stream:
        rows = list(csv.reader(stream, delimiter="\t"))
    assert rows[0][0] == "Node" and [row[0] for row in rows[1:]] == rows[0][1:]
    return rows[0][1:], np.array([[_float(v) for v in row[1:]] for row in rows[1:]])


def read_relmat(path) -> np.ndarray:
    with open(path, newline="") as stream:
        rows = list(csv.reader(stream, delimiter="\t"))
    assert rows[0] == ["Node", *NAMES]
    assert [row[0] for row in rows[1:]] == list(NAMES)
    return np.array([[_float(v) for v in row[1:]] for row in rows[1:]])


def read_qc(out) -> list[dict]:
    with open(out / "group" / f"atlas-{ATLAS}_qc.tsv", newline="") as stream:
        return list(csv.DictReader(stream, delimiter="\t"))


def run_relmat(out, run, stat) -> np.ndarray:
    return read_relmat(out / f"sub-{run['sub']}" / f"ses-{run['ses']}" / "func" / (
        f"sub-{run['sub']}_ses-{run['ses']}_task-rest_run-{run['run']}_{PREFIX}_stat-{stat}"
        "_relmat.tsv"))


def run_series(out, run) -> np.ndarray:
    return read_table(out / f"sub-{run['sub']}" / f"ses-{run['ses']}" / "func" / (
        f"sub-{run['sub']}_ses-{run['ses']}_task-rest_run-{run['run']}_{PREFIX}_stat-mean"
        "_timeseries.tsv"))[1]


def group_file(out, stat, desc) -> Path:
    return out / "group" / f"task-rest_{PREFIX}_stat-{stat}_desc-{desc}_relmat.tsv"


def expected_mean(matrices, *, fisher: bool, groups=None):
    """Edge by edge in plain Python: mean of arctanh(r) (or of values) over units."""
    n = len(NAMES)
    labels = groups or list(range(len(matrices)))
    units = list(dict.fromkeys(labels))
    mean, count = np.full((n, n), np.nan), np.zeros((n, n), dtype=int)
    for i in range(n):
        for j in range(n):
            per_unit = []
            for unit in units:
                values = [float(m[i, j]) for m, label in zip(matrices, labels, strict=True)
                          if label == unit and not math.isnan(m[i, j])]
                if fisher:
                    values = [math.atanh(max(min(v, 1 - 1e-7), -1 + 1e-7)) for v in values]
                if values:
                    per_unit.append(math.fsum(values) / len(values))
            count[i, j] = len(per_unit)
            if per_unit:
                mean[i, j] = math.fsum(per_unit) / len(per_unit)
    return mean, count


@pytest.fixture
def run_cli(tmp_path, monkeypatch, capsys):
    """``main(argv)`` in this process with caches in tmp_path; returns (code, stderr)."""
    for var in ("MPLCONFIGDIR", "NIPYPE_CONFIG_DIR", "XDG_CACHE_HOME", "JOBLIB_TEMP_FOLDER"):
        monkeypatch.setenv(var, str(tmp_path / "cache" / var))

    def run(bids, out, *options):
        capsys.readouterr()
        code = main([str(bids), str(out), "group", "-w", str(tmp_path / "work"), *options])
        return code, capsys.readouterr().err

    return run


OFF = ~np.eye(len(NAMES), dtype=bool)


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------
def test_qc_table_and_group_connectomes_equal_independent_values(tmp_path, run_cli):
    bids, out = make_dataset(tmp_path)
    code, err = run_cli(bids, out)
    assert code == 0, err
    assert "missing" not in err

    rows = read_qc(out)
    assert [(r["participant_id"], r["session_id"], r["run"]) for r in rows] == [
        (f"sub-{r['sub']}", f"ses-{r['ses']}", r["run"]) for r in RUNS
    ]
    for row, run in zip(rows, RUNS, strict=True):
        assert row["task"] == "rest" and row["space"] == SPACE
        assert int(row["n_volumes"]) == run["n"]
        assert int(row["n_volumes_kept"]) == run["kept"]
        assert int(row["n_dummy"]) == run["dummy"]
        assert int(row["n_censored_fd"]) == run["fd"]
        assert int(row["n_censored_dvars"]) == run["dvars"]
        assert int(row["n_censored_motion"]) == run["motion"]
        assert int(row["n_short_segment"]) == run["short"]
        assert float(row["kept_time"]) == run["kept"] * TR
        assert float(row["mean_fd"]) == run["mean_fd"] and float(row["max_fd"]) == run["max_fd"]
        assert int(row["n_regions"]) == len(NAMES)
        assert int(row["n_regions_na"]) == len(run["na"])
        assert row["regions_na"] == (",".join(run["na"]) or "n/a")
        assert row["used"] == ("0" if run["drop"] else "1")
        assert row["reason"] == (run["drop"] or "n/a")
    sidecar = json.loads((out / "group" / f"atlas-{ATLAS}_qc.json").read_text())
    assert list(sidecar) == list(rows[0]) and sidecar["mean_fd"]["Units"] == "mm"

    # Pearson: mean of Fisher z over the 4 used runs (the decoy and the dropped run left out)
    r = [run_relmat(out, run, "pearsoncorrelation") for run in USED]
    z, count = expected_mean(r, fisher=True)
    np.testing.assert_allclose(
        read_relmat(group_file(out, "pearsoncorrelation", "fisherz"))[OFF], z[OFF], rtol=1e-12)
    mean = read_relmat(group_file(out, "pearsoncorrelation", "mean"))
    np.testing.assert_allclose(mean[OFF], np.tanh(z[OFF]), rtol=1e-12)
    assert (np.diag(mean) == 1).all()
    got = read_relmat(group_file(out, "pearsoncorrelation", "count"))
    np.testing.assert_array_equal(got, count)
    visual_1 = NAMES.index("Visual_1")
    assert got[0, 1] == 4 and got[visual_1, 0] == 3 and got[visual_1, visual_1] == 3
    # Covariance: arithmetic mean, valid diagonal
    cov, cov_count = expected_mean([run_relmat(out, run, "covariance") for run in USED],
                                   fisher=False)
    np.testing.assert_allclose(read_relmat(group_file(out, "covariance", "mean")), cov,
                               rtol=1e-12)
    np.testing.assert_array_equal(read_relmat(group_file(out, "covariance", "count")), cov_count)

    meta = json.loads(group_file(out, "pearsoncorrelation", "mean").with_suffix(".json")
                      .read_text())
    assert meta["AveragingUnit"] == "run" and meta["NumberOfRuns"] == 4
    assert meta["Participants"] == ["sub-01", "sub-02", "sub-03"]
    assert meta["RelationshipMeasure"] == "Pearson correlation" and "tanh" in meta["Description"]
    assert len(meta["Sources"]) == 4 and all("_run-" in s for s in meta["Sources"])
    assert meta["NodeFiles"] == [
        f"bids::atlases/tpl-{SPACE}/tpl-{SPACE}_atlas-{ATLAS}_seg-regions_probseg.tsv"]
    assert not list((out / "group").glob("*tangent*"))
    assert (out / "group.html").is_file()


def test_subject_unit_averages_within_subject_first(tmp_path, run_cli):
    bids, out = make_dataset(tmp_path)
    code, err = run_cli(bids, out, "--group-unit", "subject")
    assert code == 0, err
    r = [run_relmat(out, run, "pearsoncorrelation") for run in USED]
    z, count = expected_mean(r, fisher=True, groups=[run["sub"] for run in USED])
    np.testing.assert_allclose(
        read_relmat(group_file(out, "pearsoncorrelation", "fisherz"))[OFF], z[OFF], rtol=1e-12)
    np.testing.assert_array_equal(read_relmat(group_file(out, "pearsoncorrelation", "count")),
                                  count)
    assert count[0, 1] == 3
    meta = json.loads(group_file(out, "pearsoncorrelation", "mean").with_suffix(".json")
                      .read_text())
    assert meta["AveragingUnit"] == "subject" and "averaged first" in meta["Description"]


@pytest.mark.filterwarnings("ignore:Maximum number of iterations")
def test_tangent_matches_nilearn(tmp_path, run_cli):
    from sklearn.covariance import EmpiricalCovariance

    connectome = pytest.importorskip("nilearn.connectome")
    bids, out = make_dataset(tmp_path)
    code, err = run_cli(bids, out, "--connectivity", "tangent")
    assert code == 0, err
    # Visual_1 is n/a in one run, so the tangent space leaves it out for everyone.
    keep = [i for i, name in enumerate(NAMES) if name != "Visual_1"]
    series = [run_series(out, run)[:, keep] for run in USED]
    measure = connectome.ConnectivityMeasure(kind="tangent", cov_estimator=EmpiricalCovariance())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = measure.fit_transform(series)
    block = np.ix_(keep, keep)
    reference = read_relmat(group_file(out, "tangent", "reference"))
    np.testing.assert_allclose(reference[block], measure.mean_, rtol=1e-9)
    assert np.isnan(reference[NAMES.index("Visual_1")]).all()
    for run, matrix in zip(USED, expected, strict=True):
        path = out / "group" / f"sub-{run['sub']}" / (
            f"sub-{run['sub']}_ses-{run['ses']}_task-rest_run-{run['run']}_{PREFIX}"
            "_stat-tangent_relmat.tsv")
        np.testing.assert_allclose(read_relmat(path)[block], matrix,
                                   atol=1e-9 * np.abs(expected).max())
        meta = json.loads(path.with_suffix(".json").read_text())
        assert meta["Reference"].endswith("_stat-tangent_desc-reference_relmat.tsv")
        assert meta["CovarianceEstimator"] == "empirical"
    count = read_relmat(group_file(out, "tangent", "count"))
    assert count[block].min() == count[block].max() == 4
    # the participant measures are still aggregated alongside
    assert group_file(out, "pearsoncorrelation", "mean").is_file()


def test_missing_participants_are_listed_and_exit_1(tmp_path, run_cli):
    bids, out = make_dataset(tmp_path, extra_bold=("04", "05"))
    code, err = run_cli(bids, out)
    assert code == 1
    lines = [ln for ln in err.splitlines() if "missing participant outputs" in ln]
    assert len(lines) == 1 and "sub-04, sub-05" in lines[0]
    report = (out / "group.html").read_text()
    missing = report[report.index('id="missing-list"'):]
    missing = missing[: missing.index("</ul>")]
    assert "<li>sub-04</li>" in missing and "<li>sub-05</li>" in missing
    # the others are aggregated all the same
    assert {row["participant_id"] for row in read_qc(out)} == {"sub-01", "sub-02", "sub-03"}


def test_participant_label_selects_and_reports_missing(tmp_path, run_cli):
    bids, out = make_dataset(tmp_path, extra_bold=("04",))
    code, err = run_cli(bids, out, "--participant-label", "sub-01", "03")
    assert code == 0, err  # sub-04 has no outputs but was not selected
    assert {row["participant_id"] for row in read_qc(out)} == {"sub-01", "sub-03"}
    r = [run_relmat(out, run, "pearsoncorrelation") for run in USED if run["sub"] != "02"]
    z, _ = expected_mean(r, fisher=True)
    np.testing.assert_allclose(
        read_relmat(group_file(out, "pearsoncorrelation", "fisherz"))[OFF], z[OFF], rtol=1e-12)

    code, err = run_cli(bids, out, "--participant-label", "01", "04")
    assert code == 1
    assert "missing participant outputs: sub-04" in err
    code, err = run_cli(bids, out, "--participant-label", "07")
    assert code == 64 and "sub-<label> folder" in err  # not in bids_dir at all


def test_participant_made_with_other_options_is_refused(tmp_path, run_cli):
    bids, out = make_dataset(tmp_path, overrides={"03": {"threshold": 2.0}})
    code, err = run_cli(bids, out)
    assert code == 1
    (line,) = [ln for ln in err.splitlines() if "refused participant outputs" in ln]
    assert "sub-03" in line and "regions.threshold: 1.0 vs 2.0" in line
    sub03 = [row for row in read_qc(out) if row["participant_id"] == "sub-03"]
    assert sub03 and all(row["used"] == "0" and "regions.threshold" in row["reason"]
                         for row in sub03)
    r = [run_relmat(out, run, "pearsoncorrelation") for run in USED if run["sub"] != "03"]
    z, count = expected_mean(r, fisher=True)
    np.testing.assert_allclose(
        read_relmat(group_file(out, "pearsoncorrelation", "fisherz"))[OFF], z[OFF], rtol=1e-12)
    assert read_relmat(group_file(out, "pearsoncorrelation", "count"))[0, 1] == 3
    assert "regions.threshold" in (out / "group.html").read_text()


@pytest.mark.parametrize(
    ("recorded", "options", "fragment"),
    [
        ({}, ["--threshold", "2"], "--threshold (regions.threshold): 2.0 given, outputs made "
                                    "with 1.0"),
        # typed with its default value: still not what the outputs were made with
        ({"threshold": 2.0}, ["--threshold", "1"], "--threshold (regions.threshold)"),
        ({}, ["--connectivity", "precision", "tangent"], "precision not computed"),
        ({}, ["--denoise-strategy", "36P", "--fisher-z"], "--fisher-z (connectivity.fisher_z)"),
    ],
)
def test_group_options_that_differ_are_refused(tmp_path, run_cli, recorded, options, fragment):
    bids, out = make_dataset(tmp_path, recorded=recorded)
    code, err = run_cli(bids, out, *options)
    assert code == 64
    assert fragment in err and err.count("\n") == 1
    assert not (out / "group").exists()


def test_recorded_options_need_no_retyping(tmp_path, run_cli):
    bids, out = make_dataset(tmp_path, recorded={"threshold": 2.0})
    maps = bids.parent / "maps" / "syn_maps.nii.gz"
    maps.parent.mkdir()
    maps.write_bytes(b"")
    code, err = run_cli(bids, out, "--maps", str(maps), "--maps-label", ATLAS,
                        "--threshold", "2", "--connectivity", "covariance", "--nprocs", "1")
    assert code == 0, err


def test_incomplete_run_outputs_are_named(tmp_path, run_cli):
    bids, out = make_dataset(tmp_path)
    run_relmat_path = out / "sub-03" / "ses-1" / "func" / (
        f"sub-03_ses-1_task-rest_run-1_{PREFIX}_stat-covariance_relmat.tsv")
    run_relmat_path.unlink()
    code, err = run_cli(bids, out)
    assert code == 1
    assert "sub-03_ses-1_task-rest_run-1 (atlas-Syn): missing outputs: stat-covariance relmat" \
        in err
    (row,) = [row for row in read_qc(out) if row["participant_id"] == "sub-03"]
    assert row["used"] == "0" and row["reason"] == "missing outputs: stat-covariance relmat"


def test_output_dir_without_participant_outputs(tmp_path, run_cli):
    bids, out = make_dataset(tmp_path)
    code, err = run_cli(bids, out, "--task-id", "nback")
    assert code == 18 and "no participant outputs match the selection (--task-id nback)" in err
    shutil.rmtree(out / ".bids_regionx")
    code, err = run_cli(bids, out)
    assert code == 66 and "run the participant level" in err


# --------------------------------------------------------------------------------------------
# The report in a browser
# --------------------------------------------------------------------------------------------
class _Page(html.parser.HTMLParser):
    """Tags, ids and every URL an HTML page refers to."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.ids: set[str] = set()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name == "id":
                self.ids.add(value)
            if name in ("src", "href", "data", "xlink:href") and value:
                self.urls.append(value)


def check_report_in_browser(path: Path) -> str:
    """Minimal stand-in for the reports' browser test: static rules + a headless render.

    Self-contained (no script, no remote URL, every local link resolves), and headless
    Chromium renders it offline into a DOM with the expected sections.
    """
    text = path.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    assert "script" not in page.tags and "iframe" not in page.tags
    for url in page.urls:
        assert not url.startswith(("http:", "https:", "//")), url
        if not url.startswith(("#", "data:")):
            assert (path.parent / url.split("#")[0]).is_file(), url
        elif url.startswith("#"):
            assert url[1:] in page.ids, url
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which(
        "google-chrome")
    if browser is None:
        pytest.skip("no headless browser")
    done = subprocess.run(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={path.parent / '.chrome'}",
         "--dump-dom", path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    shutil.rmtree(path.parent / ".chrome", ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert "<h1>bids_regionx group report</h1>" in dom
    return dom


def test_group_report_passes_the_browser_test(tmp_path, run_cli):
    bids, out = make_dataset(tmp_path, extra_bold=("04",))
    run_cli(bids, out, "--connectivity", "tangent")
    dom = check_report_in_browser(out / "group.html")
    for section in ("summary", "missing", "regions", "qc", "connectomes"):
        assert f'<section id="{section}">' in dom
    # QC histograms + 3 heatmaps (correlation, covariance, tangent), all inside the page
    assert dom.count('src="data:image/svg+xml;base64,') == 4
    assert 'http-equiv="Content-Security-Policy"' in dom
    assert "sub-04" in dom and "kept time 40.0 s &lt; --min-time 60 s" in dom
    # the regions table once, in the region order of the connectomes
    assert dom.count(">Default_1</td>") == 1


# --------------------------------------------------------------------------------------------
# End to end: the real participant level, then the group level
# --------------------------------------------------------------------------------------------
def test_after_the_real_participant_level(tmp_path, run_cli):
    from bids_regionx.synthetic.dataset import make_preset

    info = make_preset(tmp_path / "data", "tiny", n_subjects=2, n_runs=2)
    out = tmp_path / "out"
    code = main([str(info.root), str(out), "participant", "--maps", str(info.maps),
                 "--extractor", "connected_components", "--no-reports", "--nprocs", "2",
                 "-w", str(tmp_path / "work")])
    assert code == 0
    code, err = run_cli(info.root, out, "--maps", str(info.maps))
    assert code == 0, err
    relmats = sorted(out.glob("sub-*/func/*_run-*_stat-pearsoncorrelation_relmat.tsv"))
    assert len(relmats) == 4
    header = read_named(relmats[0])[0]
    values = [read_named(p)[1] for p in relmats]
    group = sorted((out / "group").glob("*_stat-pearsoncorrelation_desc-fisherz_relmat.tsv"))
    assert len(group) == 1 and read_named(group[0])[0] == header
    z = np.mean([np.arctanh(np.clip(v, -1 + 1e-7, 1 - 1e-7)) for v in values], axis=0)
    off = ~np.eye(len(header), dtype=bool)
    np.testing.assert_allclose(read_named(group[0])[1][off], z[off], rtol=1e-12)
    assert len(read_qc_any(out)) == 4
    assert (out / "group.html").is_file()


def read_qc_any(out) -> list[dict]:
    (path,) = (out / "group").glob("atlas-*_qc.tsv")
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream, delimiter="\t"))
