"""Resilience of participant runs: broken runs among good ones, parallel participants, kill -9
and resume, determinism.

- one bad run among good ones: the others are written, the bad one is named on stderr, in the
  report and in the exit code (1); ``--stop-on-first-crash`` stops at once;
- 8 processes, one participant each, into one output dir at the same time (a SLURM array):
  every output complete, shared files consistent, bids-validator clean; a second process on
  the same work dir is refused (73);
- ``kill -9`` of the process group mid-way, rerun with the same work dir: it resumes (finished
  steps are not recomputed), leaves no temporary file, and gives the bytes of an uninterrupted
  run;
- a full disk, freed, then a rerun: complete outputs;
- two fresh runs of the same inputs give byte-identical TSV, JSON and NIfTI files.

See ``docs/errors.md``; the single-fault matrix is ``tests/test_faults.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_regionx.cli.run import main
from bids_regionx.io import derivatives as deriv
from bids_regionx.synthetic.dataset import make_preset

TINY = ("--extractor", "connected_components", "--min-region-size", "500", "--plugin", "Linear")
SCRIPT = Path(sys.executable).with_name("bids_regionx")
#: Per-invocation folders (named by date and a random id) and lock files: never compared.
_NOT_COMPARED = re.compile(r"(^|/)(sub-[^/]+/log/|\.bids_regionx/locks/)")


@pytest.fixture(scope="module", autouse=True)
def _isolated_env(app_env):
    """Caches in a temporary folder and one BLAS thread (``app_env`` in conftest)."""
    yield


def argv(info, out: Path, work: Path, *extra) -> list[str]:
    return [str(info.root), str(out), "participant", "--maps", str(info.maps), *TINY,
            "-w", str(work), *extra]


def run_app(capfd, *args) -> tuple[int, str]:
    """``bids_regionx ARGS`` in this process: ``(exit code, stderr)``."""
    capfd.readouterr()
    code = main([str(a) for a in args])
    return code, capfd.readouterr().err


def script(*args, **kwargs) -> subprocess.Popen:
    """The console script in its own process group (so that the whole group can be killed)."""
    return subprocess.Popen([str(SCRIPT), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=dict(os.environ), **kwargs)


def outputs(root: Path) -> dict[str, bytes]:
    """Every output file's bytes (not the per-invocation logs and lock files)."""
    return {
        rel: path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not _NOT_COMPARED.search(rel := path.relative_to(root).as_posix())
    }


def assert_same_outputs(a: Path, b: Path) -> None:
    first, second = outputs(a), outputs(b)
    assert sorted(first) == sorted(second)
    different = [rel for rel in first if first[rel] != second[rel]]
    assert not different, f"files differ: {different}"


def temporary_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.name.endswith(".tmp"))


def run_files(out: Path, run) -> list[str]:
    prefix = f"sub-{run.subject}_task-{run.task}_run-{run.run}_"
    return sorted(p.name for p in out.glob(f"sub-{run.subject}/func/{prefix}*"))


def assert_complete(out: Path, run) -> None:
    """A used run: time series, connectome, coverage, design, censoring, each with its JSON."""
    names = run_files(out, run)
    for kind in ("stat-mean_timeseries", "stat-pearsoncorrelation_relmat",
                 "stat-coverage_bold", "design", "outliers"):
        for ext in (".tsv", ".json"):
            assert any(n.endswith(f"_{kind}{ext}") for n in names), (kind, ext, names)
    for name in names:
        path = out / f"sub-{run.subject}" / "func" / name
        if name.endswith(".json"):
            json.loads(path.read_text())
        else:
            pd.read_csv(path, sep="\t")


def read_tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False)


def validate(dataset: Path) -> list[dict]:
    """bids-validator-deno issues of severity ``error`` (it runs offline)."""
    exe = Path(sys.executable).with_name("bids-validator-deno")
    if not exe.exists():
        found = shutil.which("bids-validator-deno")
        if found is None:
            pytest.skip("bids-validator-deno is not installed")
        exe = Path(found)
    proc = subprocess.run([str(exe), str(dataset), "--format", "json", "--no-color"],
                          capture_output=True, text=True, timeout=300)
    report = json.loads(proc.stdout)
    return [issue for issue in report["issues"]["issues"] if issue.get("severity") == "error"]


# --------------------------------------------------------------------------------------------
# One bad run among good ones
# --------------------------------------------------------------------------------------------
@pytest.fixture
def one_bad_run(tmp_path):
    """The tiny dataset (2 subjects x 2 runs) with sub-01 run-1's BOLD file truncated."""
    info = make_preset(tmp_path / "data", "tiny")
    bad = info.runs[0]
    data = bad.bold.read_bytes()
    bad.bold.write_bytes(data[: len(data) // 2])
    return info


def test_one_bad_run_among_good_ones(one_bad_run, tmp_path, capfd):
    info, bad = one_bad_run, one_bad_run.runs[0]
    out = tmp_path / "out"
    code, err = run_app(capfd, *argv(info, out, tmp_path / "work"))
    assert code == 1, err
    failed = [ln for ln in err.splitlines() if ln.startswith("bids_regionx: run failed: ")]
    assert len(failed) == 1, err
    assert failed[0].startswith(
        "bids_regionx: run failed: sub-01_task-rest_run-1_space-MNI152NLin2009cAsym: "
        f"{bad.bold}: cannot read volumes 0-59 (truncated or corrupt file")
    assert "Traceback" not in err
    assert run_files(out, bad) == []  # nothing of the failed run
    for run in info.runs[1:]:
        assert_complete(out, run)
    # The participant report names the run and the problem.
    html = (out / "sub-01.html").read_text()
    assert "run-1" in html and "cannot read volumes" in html
    assert temporary_files(out) == []

    # Fix the file and rerun with the same work dir: only the broken run is computed.
    shutil.copy(make_preset(tmp_path / "fixed", "tiny").runs[0].bold, bad.bold)
    code, err = run_app(capfd, *argv(info, out, tmp_path / "work"))
    assert code == 0, err
    for run in info.runs:
        assert_complete(out, run)


def test_stop_on_first_crash_stops_at_once(one_bad_run, tmp_path, capfd):
    info = one_bad_run
    out = tmp_path / "out"
    code, err = run_app(capfd, *argv(info, out, tmp_path / "work", "--stop-on-first-crash",
                                     "--no-reports"))
    assert code == 1, err
    assert "bids_regionx: run failed: sub-01_task-rest_run-1_" in err
    assert re.search(r"stopped at the first failure \(--stop-on-first-crash\): \d other "
                     r"run\(s\) not processed", err), err
    written = [run for run in info.runs if run_files(out, run)]
    assert len(written) < len(info.runs) - 1  # the good runs were not all processed
    assert temporary_files(out) == []


# --------------------------------------------------------------------------------------------
# Parallel participants into one output dir
# --------------------------------------------------------------------------------------------
def test_eight_parallel_participants_into_one_output_dir(tmp_path):
    info = make_preset(tmp_path / "data", "tiny", n_subjects=8, n_runs=1)
    out = tmp_path / "out"
    procs = {
        subject: script(*argv(info, out, tmp_path / f"work-{subject}", "--participant-label",
                              subject, "--no-reports"))
        for subject in info.subjects
    }
    results = {subject: proc.communicate(timeout=600) for subject, proc in procs.items()}
    for subject, proc in procs.items():
        _, err = results[subject]
        assert proc.returncode == 0, f"sub-{subject}: {err}"
        assert "Traceback" not in err
        # Shared files were identical for every participant (none kept over a different one).
        assert "kept the existing file" not in err, err

    for run in info.runs:
        assert_complete(out, run)
    assert temporary_files(out) == []
    # One record of the options, one description, one atlas; all consistent.
    record = json.loads((out / ".bids_regionx" / "options.json").read_text())
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["GeneratedBy"][0]["ConfigurationHash"] == record["OutputHash"]
    regions = sorted(out.glob("atlases/tpl-*/*_seg-regions_probseg.tsv"))
    assert len(regions) == 1
    names = list(read_tsv(regions[0])["name"])
    image = nib.load(regions[0].with_name(regions[0].name.replace(".tsv", ".nii.gz")))
    assert image.shape[3] == len(names)
    for series in sorted(out.glob("sub-*/func/*_timeseries.tsv")):
        assert list(read_tsv(series).columns) == names
    # bids-validator: the output dataset and the nested atlas dataset.
    assert validate(out) == []
    assert validate(out / "atlases") == []


def test_a_work_dir_in_use_is_refused(tmp_path, capfd):
    """Two processes on one work dir would delete each other's node files: the second stops."""
    import fcntl

    info = make_preset(tmp_path / "data", "tiny", n_subjects=1, n_runs=1)
    work = tmp_path / "work"
    work.mkdir()
    handle = os.open(work / ".bids_regionx.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        code, err = run_app(capfd, *argv(info, tmp_path / "out", work, "--no-reports"))
    finally:
        os.close(handle)
    assert code == 73
    assert err.strip().endswith("give each parallel job its own work dir "
                                "(e.g. -w <scratch>/work/sub-<label>)")
    code, err = run_app(capfd, *argv(info, tmp_path / "out", work, "--no-reports"))
    assert code == 0, err  # the lock went with its holder


# --------------------------------------------------------------------------------------------
# kill -9 and resume; determinism
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def longer(tmp_path_factory):
    """2 subjects x 4 runs of 300 volumes: a few seconds of work, long enough to be killed."""
    return make_preset(tmp_path_factory.mktemp("longer") / "data", "tiny", n_runs=4,
                       n_volumes=300)


@pytest.fixture(scope="module")
def uninterrupted(longer, tmp_path_factory):
    """Output dir of one uninterrupted run of ``longer``."""
    root = tmp_path_factory.mktemp("uninterrupted")
    proc = script(*argv(longer, root / "out", root / "work", "--no-reports"))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return root / "out"


def test_kill_and_resume(longer, uninterrupted, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    proc = script(*argv(longer, out, work, "--no-reports"))
    deadline = time.monotonic() + 300
    try:
        # Kill the whole process group as soon as a first run's outputs are in place.
        while not list(out.glob("sub-*/func/*_timeseries.tsv")):
            assert proc.poll() is None, f"finished before it could be killed: {proc.stderr.read()}"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    done = list(out.glob("sub-*/func/*_timeseries.tsv"))
    assert 0 < len(done) < len(longer.runs), "not killed mid-way"
    # What is under a final name is complete (written aside, then renamed).
    for path in out.rglob("*"):
        if path.name.endswith(".json") and not path.name.startswith("."):
            json.loads(path.read_text())
        elif path.name.endswith(".nii.gz") and not path.name.startswith("."):
            np.asarray(nib.load(path).dataobj)
    # What a writer killed mid-file leaves: a hidden temporary file nobody holds.
    stale = [out / "sub-01" / "func" / ".sub-01_task-rest_run-4_design.tsv.k1ll3d.tmp",
             out / ".dataset_description.json.k1ll3d.tmp"]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    regions_result = next(work.glob("bids_regionx_wf/regions_*_wf/split_regions/result_*.pklz"))
    computed = regions_result.stat().st_mtime_ns

    proc = script(*argv(longer, out, work, "--no-reports"))
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert regions_result.stat().st_mtime_ns == computed  # resumed: not recomputed
    assert temporary_files(out) == []
    assert_same_outputs(out, uninterrupted)


def test_fresh_runs_are_byte_identical(longer, uninterrupted, tmp_path, capfd):
    """A second fresh run (new work dir, in this process) writes the same bytes."""
    out = tmp_path / "out"
    code, err = run_app(capfd, *argv(longer, out, tmp_path / "work", "--no-reports"))
    assert code == 0, err
    files = outputs(out)
    assert any(name.endswith(".nii.gz") for name in files)
    assert sum(name.endswith("_timeseries.tsv") for name in files) == len(longer.runs)
    assert_same_outputs(out, uninterrupted)


def test_stale_temporary_files_are_removed_unless_held(tmp_path):
    """Cleanup removes a dead writer's file, never one a live process is writing."""
    import fcntl

    out = tmp_path / "out"
    (out / deriv.STATE_DIR).mkdir(parents=True)
    dead = out / "sub-01" / "func" / ".x.tsv.abc.tmp"
    live = out / "atlases" / ".y.nii.gz.def.tmp"
    other = out / "sub-02" / "func" / ".z.tsv.ghi.tmp"  # another participant's: not searched
    for path in (dead, live, other):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, os, sys, time; h = os.open(sys.argv[1], os.O_RDWR); "
         "fcntl.flock(h, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)", str(live)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        removed = deriv.remove_stale_temporary_files(out, subjects=["01"])
    finally:
        holder.kill()
        holder.wait()
    assert removed == [dead]
    assert live.exists() and other.exists()
    handle = os.open(live, os.O_RDWR)  # its holder is gone: now it is stale
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(handle)
    assert deriv.remove_stale_temporary_files(out) == [live]


def test_staged_writes_put_all_files_in_place_or_none(tmp_path):
    """A failure in the middle of a run's files leaves none of them (and no temporary file)."""
    first, second = tmp_path / "a.tsv", tmp_path / "a.json"
    with pytest.raises(RuntimeError), deriv.staged_writes():
        deriv.write_text(first, "x\n")
        assert not first.exists()  # written aside until the whole set is ready
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []
    with deriv.staged_writes():
        deriv.write_text(first, "x\n")
        deriv.write_json(second, {"a": 1})
    assert first.read_text() == "x\n" and json.loads(second.read_text()) == {"a": 1}
    assert temporary_files(tmp_path) == []


# --------------------------------------------------------------------------------------------
# A full disk, freed
# --------------------------------------------------------------------------------------------
def test_disk_full_then_freed_and_rerun(tmp_path, capfd):
    """Out of space mid-way: 73, nothing partial; space freed, same work dir: complete."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    info = make_preset(tmp_path / "data", "tiny")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        stats = os.statvfs(mount_point)
        filler = mount_point / "filler"
        filler.write_bytes(b"\0" * (stats.f_bavail * stats.f_frsize - 64 * 1024))
        out, work = mount_point / "out", tmp_path / "work"
        code, err = run_app(capfd, *argv(info, out, work, "--no-reports"))
        assert code == 73, err
        assert re.search(r"bids_regionx: error: \S+: cannot write it \(No space left on device\)",
                         err), err
        assert temporary_files(out) == []
        for run in info.runs:
            names = run_files(out, run)
            assert names == [] or len(names) >= 10, names  # all of a run or nothing
        filler.unlink()
        code, err = run_app(capfd, *argv(info, out, work, "--no-reports"))
        assert code == 0, err
        for run in info.runs:
            assert_complete(out, run)
        assert temporary_files(out) == []
        fresh = tmp_path / "fresh"
        assert run_app(capfd, *argv(info, fresh, tmp_path / "work2", "--no-reports"))[0] == 0
        assert_same_outputs(out, fresh)
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)
