"""Fault matrix: every kind of broken input through the command line.

Each case breaks a freshly generated ``tiny`` dataset (2 subjects x 2 runs) in one way, runs
``bids_regionx ... participant`` and checks what ``docs/errors.md`` promises:

- the exit code of the case (BEP027: 16, 17, 18, 64, 65, 66, 73; 1 when a run failed; 0 when
  the input is tolerated, with a warning);
- one line naming the file or option and the problem (``bids_regionx: error: ...`` for the
  invocation, ``bids_regionx: run failed: <run>: ...`` for a run), no traceback without ``-v``;
- the inputs byte-identical afterwards (every file hashed before and after);
- no partial output presented as done: no temporary file, no output without its sidecar (or the
  reverse), every file readable to the end; no run output at all after a failure before the
  workflow; and when one run fails, nothing of that run and everything of the others.

Most cases run :func:`bids_regionx.cli.run.main` in this process (fd-level capture of stderr);
those that need a process without root's permission override (unreadable inputs, unwritable
folders) and a few smoke cases go through the console script in a subprocess. Cases that need a
tmpfs (disk full, read-only filesystem) are skipped with the reason when mounting is impossible.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_regionx.cli.run import main
from bids_regionx.synthetic.dataset import inject_fault, make_preset, make_variant

#: Fast extraction on the 8 mm tiny grid, one process, no HTML reports (the reports layer has
#: its own tests; a fault here must show in the exit code and stderr).
TINY = ("--extractor", "connected_components", "--min-region-size", "500", "--plugin",
        "Linear", "--no-reports")
SCRIPT = Path(sys.executable).with_name("bids_regionx")
#: Lines allowed on stderr besides ``bids_regionx: ...``: the logging format of ``main``.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [\w.]+ (WARNING|INFO): ")
#: Outputs that come in pairs (data + JSON sidecar).
PAIRED = ("_timeseries", "_relmat", "_design", "_outliers", "_stat-coverage_bold", "_probseg")
#: Files every used run has (relative to the run's prefix).
RUN_OUTPUTS = ("design.tsv", "design.json", "outliers.tsv", "outliers.json")


# --------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def _isolated_env(app_env):
    """Caches in a temporary folder and one BLAS thread (``app_env`` in conftest)."""
    yield


def _can_mount() -> str | None:
    """Why a tmpfs cannot be mounted here (None: it can)."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    if shutil.which("mount") is None:
        return "no mount command"
    return None


def _no_dac_prefix() -> list[str] | None:
    """Command prefix that runs a child without root's permission override, or None."""
    if os.geteuid() != 0:
        return []  # file modes apply to us already
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    caps = "-dac_override,-dac_read_search"
    return [setpriv, f"--bounding-set={caps}", f"--inh-caps={caps}"]


@contextlib.contextmanager
def tmpfs(path: Path, *, size: str = "4m", read_only: bool = False,
          free: int | None = None) -> Iterator[Path]:
    """A small tmpfs at ``path``; ``free`` bytes left by a filler file (a disk about full)."""
    reason = _can_mount()
    if reason:
        pytest.skip(reason)
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True, text=True)
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        if free is not None:
            stats = os.statvfs(path)
            filler = stats.f_bavail * stats.f_frsize - free
            with open(path / "filler", "wb") as handle:
                handle.truncate(0)
                handle.write(b"\0" * max(filler, 0))
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


# --------------------------------------------------------------------------------------------
# One case
# --------------------------------------------------------------------------------------------
@dataclass
class Ctx:
    """A case's dataset and command line, changed by the case's ``setup``."""

    root: Path
    info: object
    bids: Path
    out: Path
    work: Path
    maps: Path
    level: str = "participant"
    args: list[str] = field(default_factory=list)
    #: Folders that are not inputs (outputs, work, mount points): not hashed.
    not_inputs: list[Path] = field(default_factory=list)
    #: Contexts entered before the run and left after it (mounts, held locks).
    contexts: list = field(default_factory=list)

    def argv(self) -> list[str]:
        maps = ["--maps", str(self.maps)] if self.maps is not None else []
        return [str(self.bids), str(self.out), self.level, *maps, *TINY, "-w", str(self.work),
                *self.args]


@dataclass(frozen=True)
class Case:
    """A fault: how to plant it, the exit code and the line (regex) that must explain it.

    ``line`` is ``error`` (``bids_regionx: error:``, exactly one), ``run`` (``bids_regionx: run
    failed: <the broken run>:``) or ``warning`` (exit 0 and a logged warning).
    """

    id: str
    setup: Callable[[Ctx], None]
    code: int
    message: str
    line: str = "error"
    subprocess: bool = False
    no_dac: bool = False
    marks: tuple = ()


def bold(ctx: Ctx, i: int = 0) -> Path:
    return ctx.info.runs[i].bold


def maps_img(ctx: Ctx) -> tuple[nib.Nifti1Image, np.ndarray]:
    img = nib.load(ctx.maps)
    return img, np.asarray(img.dataobj)


def new_maps(ctx: Ctx, data, affine=None, name: str = "maps.nii.gz") -> None:
    img, _ = maps_img(ctx)
    path = ctx.root / "other" / name
    path.parent.mkdir(exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), img.affine if affine is None else affine), path)
    ctx.maps = path


def edit_bold(ctx: Ctx, change: Callable[[np.ndarray], np.ndarray]) -> None:
    path = bold(ctx)
    img = nib.load(path)
    data = change(np.asarray(img.dataobj).astype(np.float32))
    nib.save(nib.Nifti1Image(data, img.affine, img.header), path)


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def fault(name: str) -> Callable[[Ctx], None]:
    return lambda ctx: inject_fault(ctx.info, name)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def filter_file(ctx: Ctx, text: str) -> None:
    ctx.args += ["--bids-filter-file", str(write(ctx.root / "filters.json", text))]


def unreadable(path: Path) -> None:
    path.chmod(0)


def _raw_dataset(ctx: Ctx) -> None:
    info = make_variant(ctx.root / "rawds", "raw")
    ctx.bids = info.raw_root


def _other_options(ctx: Ctx) -> None:
    code = main(ctx.argv())  # the dataset made with --min-region-size 500
    assert code == 0
    ctx.args += ["--min-region-size", "600"]


def _other_pipeline(ctx: Ctx) -> None:
    ctx.out.mkdir()
    shutil.copy(ctx.info.root / "dataset_description.json", ctx.out)


def _mount(ctx: Ctx, where: str, **options) -> Path:
    mount_point = ctx.root / f"mnt_{where}"
    ctx.not_inputs.append(mount_point)
    ctx.contexts.append(tmpfs(mount_point, **options))
    return mount_point


def _disk_full(where: str, free: int) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        mount_point = _mount(ctx, where, size="4m", free=free)
        setattr(ctx, where, mount_point / where)
    return setup


def _read_only(where: str, existing: bool = False) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        mount_point = _mount(ctx, where, size="64k", read_only=True)
        setattr(ctx, where, mount_point if existing else mount_point / where)
    return setup


def _no_write_permission(where: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        folder = ctx.root / f"locked_{where}"
        folder.mkdir(mode=0o555)
        ctx.not_inputs.append(folder)
        setattr(ctx, where, folder / where)
    return setup


@contextlib.contextmanager
def _held_lock(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
        yield
    finally:
        os.close(handle)


def _work_dir_in_use(ctx: Ctx) -> None:
    ctx.contexts.append(_held_lock(ctx.work / ".bids_regionx.lock"))


def _labels_tsv(ctx: Ctx) -> None:
    path = write(ctx.root / "names.tsv", "index\tname\n1\tA\n2\tB\n")
    ctx.args += ["--maps-labels-tsv", str(path)]


def _nan_maps(ctx: Ctx) -> None:
    _, data = maps_img(ctx)
    data = data.astype(np.float32)
    data[0, 0, 0, 0], data[1, 1, 1, 1] = np.nan, np.inf
    new_maps(ctx, data)


def _one_volume(ctx: Ctx) -> None:
    edit_bold(ctx, lambda data: data[..., :1])


def _nan_volumes(ctx: Ctx) -> None:
    def change(data):
        data[..., 10:12] = np.nan
        return data
    edit_bold(ctx, change)


CASES = [
    # --- the input dataset --------------------------------------------------------------
    Case("bids_dir_missing", lambda c: setattr(c, "bids", c.root / "nope"), 66,
         r"bids_dir \S*nope: no such directory"),
    Case("bids_dir_is_a_file", lambda c: setattr(c, "bids", c.maps), 66,
         r"bids_dir \S+probseg.nii.gz: not a directory"),
    Case("bids_dir_unreadable", lambda c: unreadable(c.info.root), 66,
         r"bids_dir \S+fmriprep: cannot read it \(Permission denied\)", subprocess=True,
         no_dac=True),
    Case("no_dataset_description", fault("no_description"), 16,
         r"bids_dir \S+fmriprep: no dataset_description.json, so it is not a BIDS dataset"),
    Case("dataset_description_invalid_json",
         lambda c: write(c.info.root / "dataset_description.json", "{"), 16,
         r"\S+dataset_description.json: invalid JSON"),
    Case("raw_dataset_without_derivatives", _raw_dataset, 16,
         r"bids_dir \S+ is a raw dataset .*add -d fmriprep=PATH"),
    Case("raw_dataset_derivatives_missing",
         lambda c: (_raw_dataset(c), c.args.extend(["-d", f"fmriprep={c.root / 'nope'}"])), 66,
         r"-d fmriprep \S*nope: no such directory"),
    Case("unknown_analysis_level", lambda c: setattr(c, "level", "subject"), 17,
         r"analysis_level: invalid choice: 'subject'"),
    Case("unknown_participant", lambda c: c.args.extend(["--participant-label", "01", "99"]), 64,
         r"--participant-label: no sub-<label> folder in \S+ for 99 \(found 2: sub-01, sub-02\)"),
    Case("task_matches_nothing", lambda c: c.args.extend(["-t", "nback"]), 18,
         r"no preprocessed BOLD run in \S+ matched \(.*task nback\); "
         r"the dataset has: .*task rest"),
    Case("session_matches_nothing", lambda c: c.args.extend(["--session-label", "9"]), 18,
         r"no preprocessed BOLD run in \S+ matched \(.*session 9"),
    Case("filter_file_matches_nothing", lambda c: filter_file(c, '{"bold": {"run": 7}}'), 18,
         r"no preprocessed BOLD run .*--bids-filter-file bold \{\"run\": 7\}"),
    Case("filter_file_malformed_json", lambda c: filter_file(c, '{"bold": {"task": "rest",}}'),
         64, r"--bids-filter-file \S+filters.json: invalid JSON"),
    Case("filter_file_missing",
         lambda c: c.args.extend(["--bids-filter-file", str(c.root / "nope.json")]), 66,
         r"--bids-filter-file \S*nope.json: no such file"),
    # --- the maps -----------------------------------------------------------------------
    Case("maps_missing", lambda c: setattr(c, "maps", c.root / "nope.nii.gz"), 66,
         r"--maps \S*nope.nii.gz: no such file"),
    Case("maps_unreadable", lambda c: unreadable(c.maps), 66,
         r"--maps \S+probseg.nii.gz: cannot read it \(Permission denied\)", subprocess=True,
         no_dac=True),
    Case("maps_not_nifti_name",
         lambda c: setattr(c, "maps", write(c.root / "maps.txt", "not an image")), 65,
         r"--maps \S+maps.txt: not a NIfTI file"),
    Case("maps_not_nifti_content",
         lambda c: setattr(c, "maps", write(c.root / "maps.nii.gz", "not an image")), 65,
         r"--maps \S+maps.nii.gz: cannot read it as NIfTI"),
    Case("maps_truncated_gzip", lambda c: truncate(c.maps), 65,
         r"\S+probseg.nii.gz: the image data cannot be read"),
    Case("maps_2d", lambda c: new_maps(c, maps_img(c)[1][:, :, 0, 0]), 65,
         r"--maps \S+maps.nii.gz: a 2D image, expected 3D \(one map\) or 4D"),
    Case("maps_5d", lambda c: new_maps(c, maps_img(c)[1][..., None]), 65,
         r"--maps \S+maps.nii.gz: a 5D image"),
    Case("maps_all_zeros", lambda c: new_maps(c, np.zeros_like(maps_img(c)[1])), 65,
         r"\S+maps.nii.gz: the maps image is empty \(every value is 0\)"),
    Case("maps_all_nan",
         lambda c: new_maps(c, np.full(maps_img(c)[1].shape, np.nan, np.float32)), 65,
         r"\S+maps.nii.gz: the maps image is empty"),
    Case("maps_some_nan_inf", _nan_maps, 0, r"\S+maps.nii.gz: Non-finite values detected",
         line="warning"),
    Case("maps_empty_after_thresholding",
         lambda c: c.args.extend(["--thresholding-strategy", "img_value", "--threshold", "1e3"]),
         65, r"\S+probseg.nii.gz: no map value survived thresholding "
             r"\(--thresholding-strategy img_value, --threshold 1000\): lower --threshold",
         marks=(pytest.mark.filterwarnings("ignore:The given float value must not exceed"),)),
    Case("maps_no_region_big_enough", lambda c: c.args.extend(["--min-region-size", "1e9"]), 65,
         r"\S+probseg.nii.gz: no region survived thresholding and splitting",
         marks=(pytest.mark.filterwarnings("ignore:No supra threshold regions"),)),
    Case("maps_in_another_space",
         lambda c: setattr(c, "maps", Path(shutil.copy(
             c.maps, c.root / "tpl-MNI152NLin6Asym_atlas-Other_probseg.nii.gz"))), 18,
         r"matched \(space MNI152NLin6Asym\); the dataset has: space MNI152NLin2009cAsym.*"
         r"give --space"),
    Case("maps_grid_far_from_bold",
         lambda c: new_maps(c, maps_img(c)[1], affine=np.diag([8.0, 8, 8, 1]) + np.array(
             [[0, 0, 0, 1000.0]] * 3 + [[0, 0, 0, 0]])), 1,
         r"do not overlap", line="run"),
    Case("maps_labels_tsv_wrong_rows", _labels_tsv, 65,
         r"\S+names.tsv: 2 names for 3 maps"),
    Case("mask_option_missing", lambda c: c.args.extend(["--mask", str(c.root / "nope.nii")]),
         66, r"--mask \S*nope.nii: no such file"),
    # --- one BOLD run -------------------------------------------------------------------
    Case("bold_truncated_gzip", lambda c: truncate(bold(c)), 1,
         r"\S+_bold.nii.gz: cannot read volumes 0-59 \(truncated or corrupt file", line="run"),
    Case("bold_empty_file", fault("empty_bold"), 1, r"\S+_bold.nii.gz: the file is empty",
         line="run"),
    Case("bold_3d", fault("bold_3d"), 1, r"\S+_bold.nii.gz: a 3D image, expected a 4D BOLD",
         line="run"),
    Case("bold_nan_volumes", _nan_volumes, 1,
         r"\S+_bold.nii.gz: NaN or infinite values inside the regions in 2 of 60 volumes "
         r"\(0-based: 10-11\)", line="run"),
    Case("bold_one_volume", _one_volume, 1, r"\S+_bold.nii.gz: 1 volume\(s\), expected",
         line="run"),
    Case("mask_on_another_grid", fault("mask_grid"), 0,
         r"desc-brain_mask.nii.gz: not on the grid of \S+_bold.nii.gz", line="warning"),
    Case("mask_missing", fault("missing_mask"), 0, r"_bold.nii.gz: no brain mask found",
         line="warning"),
    Case("confounds_missing", fault("missing_confounds"), 1,
         r"_bold.nii.gz: no confounds table \(desc-confounds_timeseries.tsv\)", line="run"),
    Case("confounds_fewer_rows", fault("short_confounds"), 1,
         r"\S+_desc-confounds_timeseries.tsv: has 57 rows, fewer than the 60 volumes",
         line="run"),
    Case("confounds_missing_column", fault("missing_column"), 1,
         r"\S+_desc-confounds_timeseries.tsv: column\(s\) 'csf' required by denoising "
         r"strategy 'simple' are missing", line="run"),
    Case("confounds_na_in_the_middle", fault("nan_confounds"), 1,
         r"\S+_desc-confounds_timeseries.tsv: column 'white_matter' has n/a at row 30",
         line="run"),
    Case("sidecar_without_repetition_time", fault("missing_tr"), 1,
         r"\S+_bold.json: no RepetitionTime \(fix the sidecar or give --t-r\)", line="run"),
    Case("sidecar_invalid_json", fault("bad_json"), 1, r"\S+_bold.json: invalid JSON",
         line="run"),
    # --- options ------------------------------------------------------------------------
    Case("low_pass_not_above_high_pass",
         lambda c: c.args.extend(["--low-pass", "0.01", "--high-pass", "0.1"]), 64,
         r"--low-pass \(0.01 Hz\) must be greater than --high-pass \(0.1 Hz\)"),
    Case("option_out_of_range", lambda c: c.args.extend(["--fd-threshold", "-1"]), 64,
         r"--fd-threshold.*must be > 0"),
    Case("min_time_drops_every_run", lambda c: c.args.extend(["--min-time", "1e5"]), 65,
         r"no run has enough clean data: 4 of 4 run\(s\) dropped .*lower --min-time"),
    # --- output and work dirs -----------------------------------------------------------
    Case("output_dir_is_bids_dir", lambda c: setattr(c, "out", c.bids), 64,
         r"output_dir \S+ is bids_dir"),
    Case("output_dir_inside_bids_dir", lambda c: setattr(c, "out", c.bids / "derivatives"), 64,
         r"output_dir \S+derivatives is inside bids_dir"),
    Case("work_dir_inside_bids_dir", lambda c: setattr(c, "work", c.bids / "work"), 64,
         r"-w/--work-dir \S+work is inside"),
    Case("output_dir_read_only_fs", _read_only("out", existing=True), 73,
         r"output_dir \S+: not writable"),
    Case("output_dir_no_permission", _no_write_permission("out"), 73,
         r"output_dir \S+out: cannot create it, \S+ is not writable", subprocess=True,
         no_dac=True),
    Case("work_dir_read_only_fs", _read_only("work"), 73,
         r"-w/--work-dir \S+work: cannot create it, \S+ is not writable"),
    Case("work_dir_no_permission", _no_write_permission("work"), 73,
         r"-w/--work-dir \S+work: cannot create it", subprocess=True, no_dac=True),
    Case("output_dir_made_with_other_options", _other_options, 73,
         r"output_dir \S+ was made with other options \(regions.min_region_size: 500.0 vs "
         r"600.0\)"),
    Case("output_dir_of_another_pipeline", _other_pipeline, 73,
         r"output_dir \S+ holds another dataset \(made by fMRIPrep\)"),
    Case("work_dir_in_use", _work_dir_in_use, 73,
         r"-w/--work-dir \S+: in use by another bids_regionx process"),
    Case("disk_full_output_at_start", _disk_full("out", 0), 73,
         r"\S+/out\S*: cannot (write|create) it \(No space left on device\)"),
    Case("disk_full_output_midway", _disk_full("out", 48 * 1024), 73,
         r"\S+/out\S*: cannot (write|create) it \(No space left on device\)"),
    Case("disk_full_output_late", _disk_full("out", 160 * 1024), 73,
         r"\S+/out\S*: cannot (write|create) it \(No space left on device\)"),
    Case("disk_full_work_index", _disk_full("work", 32 * 1024), 73,
         r"\S+/work\S*: cannot write"),
    Case("disk_full_work_nodes", _disk_full("work", 600 * 1024), 73,
         r"-w/--work-dir \S+/work\S*: .*No space left on device"),
    # --- the same through the console script ---------------------------------------------
    Case("script_maps_truncated", lambda c: truncate(c.maps), 65,
         r"\S+probseg.nii.gz: the image data cannot be read", subprocess=True),
    Case("script_bold_truncated", lambda c: truncate(bold(c)), 1,
         r"\S+_bold.nii.gz: cannot read volumes", line="run", subprocess=True),
    Case("script_disk_full", _disk_full("out", 48 * 1024), 73,
         r"\S+/out\S*: cannot (write|create) it \(No space left on device\)", subprocess=True),
]


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------
def hash_inputs(root: Path, skip: list[Path]) -> dict[str, str]:
    """sha256 of every file under ``root`` but outputs, work dirs and mount points."""
    skip = [p.resolve() for p in skip]
    hashes = {}
    for path in sorted(root.rglob("*")):
        if any(path.resolve() == s or s in path.resolve().parents for s in skip):
            continue
        if path.is_file() and not path.is_symlink():
            hashes[path.relative_to(root).as_posix()] = hashlib.sha256(
                path.read_bytes()).hexdigest()
    return hashes


def run_prefix(run) -> str:
    ents = [f"sub-{run.subject}"] + ([f"ses-{run.session}"] if run.session else [])
    return "_".join([*ents, f"task-{run.task}", f"run-{run.run}"])


def check_outputs(out: Path) -> list[Path]:
    """Nothing partial looks done; returns the time series files."""
    if not out.exists():
        return []
    files = [p for p in out.rglob("*") if p.is_file()]
    leftovers = [p for p in files if p.name.endswith(".tmp") or ".tmp-" in p.name]
    assert not leftovers, f"temporary files left: {leftovers}"
    for path in files:
        name = path.name
        if name.endswith(".json"):
            json.loads(path.read_text())
        elif name.endswith(".tsv"):
            pd.read_csv(path, sep="\t")
        elif name.endswith((".nii", ".nii.gz")):
            np.asarray(nib.load(path).dataobj)  # reads every byte: no truncated image
        stem = name.split(".", 1)[0]
        data = name.endswith((".json", ".tsv", ".nii.gz")) and ".bids_regionx" not in path.parts
        if data and any(stem.endswith(kind) for kind in PAIRED):
            partner = {".json"} if not name.endswith(".json") else {".tsv", ".nii.gz"}
            assert any(path.with_name(stem + ext).exists() for ext in partner), \
                f"{path.relative_to(out)} has no partner file"
    series = sorted(out.glob("sub-*/**/func/*_timeseries.tsv"))
    for ts in series:  # a time series comes with its connectome
        relmat = ts.name.replace("_stat-mean_timeseries", "_stat-pearsoncorrelation_relmat")
        assert ts.with_name(relmat).exists(), f"{ts.name} has no connectome"
    return series


def run_case(case: Case, ctx: Ctx, capfd, caplog) -> tuple[int, str, str]:
    """Run the command; return ``(exit code, stderr, stderr + log records)``."""
    if case.subprocess:
        prefix = []
        if case.no_dac:
            prefix = _no_dac_prefix()
            if prefix is None:
                pytest.skip("no setpriv to drop root's permission override")
        proc = subprocess.run([*prefix, str(SCRIPT), *ctx.argv()], capture_output=True,
                              text=True, timeout=300, env=dict(os.environ))
        assert "Traceback" not in proc.stdout, proc.stdout
        return proc.returncode, proc.stderr, proc.stderr
    capfd.readouterr()
    code = main(ctx.argv())
    captured = capfd.readouterr()
    assert "Traceback" not in captured.out, captured.out
    return code, captured.err, captured.err + caplog.text


def prepare(case: Case, tmp_path: Path) -> Ctx:
    info = make_preset(tmp_path / "data", "tiny")
    ctx = Ctx(root=tmp_path, info=info, bids=info.root, out=tmp_path / "out",
              work=tmp_path / "work", maps=info.maps)
    ctx.not_inputs += [ctx.out, ctx.work]
    case.setup(ctx)
    ctx.not_inputs += [ctx.out, ctx.work]
    return ctx


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES]
)
def test_fault(case: Case, tmp_path, capfd, caplog):
    caplog.set_level("WARNING")
    ctx = prepare(case, tmp_path)
    before = hash_inputs(tmp_path, ctx.not_inputs)
    with contextlib.ExitStack() as stack:  # mounts and locks last until every check is done
        for context in ctx.contexts:
            stack.enter_context(context)
        code, err, text = run_case(case, ctx, capfd, caplog)
        check_messages(case, code, err, text)
        # Nothing partial presented as done (unless the "output dir" is the input dataset).
        series = check_outputs(ctx.out) if ctx.out != ctx.bids else []
        check_runs(case, ctx, err, series)
    # Inputs untouched.
    assert hash_inputs(tmp_path, ctx.not_inputs) == before


def check_messages(case: Case, code: int, err: str, text: str) -> None:
    """The exit code, and one line that names the file or option and the problem."""
    assert code == case.code, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    strays = [ln for ln in lines if not (ln.startswith("bids_regionx: ") or LOG_LINE.match(ln))]
    assert not strays, f"unexpected stderr lines: {strays}"
    errors = [ln for ln in lines if ln.startswith("bids_regionx: error: ")]
    if case.line == "error":
        assert len(errors) == 1, err
        assert re.search(case.message, errors[0]), errors[0]
    elif case.line == "run":
        failed = [ln for ln in lines if ln.startswith("bids_regionx: run failed: ")]
        assert failed and not errors, err
        assert all(re.search(case.message, ln) for ln in failed), failed
    else:
        assert not errors, err
        assert re.search(case.message, text), text


def check_runs(case: Case, ctx: Ctx, err: str, series: list[Path]) -> None:
    """No run output after an early failure; a failed run leaves nothing, the others all."""
    runs = ctx.info.runs
    if case.code not in (0, 1, 73):
        assert not series, "outputs written although the run could not start"
    if case.code == 0:
        assert len(series) == len(runs)
    if case.line != "run":
        return
    failed = [ln.split(": ")[2] for ln in err.splitlines()
              if ln.startswith("bids_regionx: run failed: ")]
    for run in runs:
        prefix = run_prefix(run)
        outputs = sorted(p.name for p in ctx.out.glob(f"sub-{run.subject}/func/{prefix}_*"))
        if any(key.startswith(prefix + "_") for key in failed):
            assert not outputs, f"outputs of the failed run {prefix}: {outputs}"
            continue
        missing = [kind for kind in RUN_OUTPUTS if not any(n.endswith(kind) for n in outputs)]
        assert not missing, f"{prefix}: incomplete outputs {outputs}"
        assert any(n.endswith("_timeseries.tsv") for n in outputs), outputs


def test_verbose_adds_the_traceback(tmp_path, capfd):
    """``-v``: the same one-line error, after the traceback of the original error."""
    ctx = prepare(Case("x", lambda c: truncate(c.maps), 65, ""), tmp_path)
    capfd.readouterr()
    assert main([*ctx.argv(), "-v"]) == 65
    err = capfd.readouterr().err
    assert "Traceback" in err
    assert err.strip().splitlines()[-1].startswith("bids_regionx: error: ")


def test_every_exit_code_of_the_table_is_exercised():
    """docs/errors.md lists each code; the matrix covers all of them."""
    table = (Path(__file__).resolve().parents[1] / "docs" / "errors.md").read_text()
    documented = {int(code) for code in re.findall(r"^\| `(\d+)` \|", table, re.MULTILINE)}
    assert documented == {0, 1, 16, 17, 18, 64, 65, 66, 73}
    assert {case.code for case in CASES} == documented
    assert len(CASES) >= 30
