"""Shared pieces of the integration tests (``make integration``; marker ``integration``).

* ``demo_dataset``: the synthetic demo dataset (``python -m bids_regionx.synthetic OUT --preset
  demo``), made once per session;
* ``run_native``: the participant level on the host, with the interpreter running the tests;
* ``compare_derivatives`` / ``check_derivatives`` (through the ``itools`` fixture, with the
  other helpers): two output datasets are the same, and one is
  complete and readable. What may legitimately differ between two runs of the same options:

  - ``sub-*/log/<run id>/``: one folder per invocation (date + random id) -> not compared;
  - ``GeneratedBy[0].Container`` in ``dataset_description.json``: only set inside the image;
  - input paths as the app saw them (``DatasetLinks``, ``SourceDatasets`` and the copied
    maps' sidecar): identical when the container sees the inputs at the host paths; with other
    mount points the comparison first maps container paths back to host paths (``path_map``);

  every other TSV / JSON / text file must be byte-identical, NIfTI files identical once
  decompressed (the gzip header holds a timestamp), anything else (HTML, SVG) must exist in both.

Settings (environment): ``BIDS_REGIONX_SHARED_TOOLS`` (default ``../shared/tools`` next to the
repository), ``BIDS_REGIONX_INTEGRATION_DIR`` (keep data and outputs there instead of pytest's
tmp dir), ``BIDS_REGIONX_TIMINGS`` (append wall-clock timings as JSON lines to this file).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_TOOLS = Path(os.environ.get("BIDS_REGIONX_SHARED_TOOLS", REPO.parent / "shared" / "tools"))
#: One BLAS/OpenMP thread, as in the Makefile and the image: results reproducible bit for bit.
THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
NATIVE_CMD = [sys.executable, "-m", "bids_regionx.cli.run"]

_RUN_LOG = re.compile(r"(^|/)log/[^/]+/")
_TEXT_SUFFIXES = {".tsv", ".json", ".txt", ".md", ".toml", ".bidsignore", ".lock", ""}


@dataclass(frozen=True)
class Dataset:
    """A synthetic dataset: the fMRIPrep root, the maps (BIDS-Atlas) root and atlas label."""

    root: Path
    fmriprep: Path
    maps: Path
    atlas: str
    subjects: tuple[str, ...]

    def app_args(self) -> list[str]:
        """Options selecting the dataset's maps (same for every run being compared)."""
        return ["-d", f"atlases={self.maps}", "--atlas", self.atlas]


def _dataset(root: Path) -> Dataset:
    fmriprep, maps = root / "fmriprep", root / "maps"
    images = sorted(maps.glob("tpl-*/*_atlas-*_probseg.nii.gz"))
    assert images, f"no maps under {maps}"
    atlas = re.search(r"_atlas-([A-Za-z0-9]+)_", images[0].name).group(1)
    subjects = tuple(sorted(p.name[4:] for p in fmriprep.glob("sub-*") if p.is_dir()))
    return Dataset(root, fmriprep, maps, atlas, subjects)


def make_dataset(root: Path, preset: str = "demo", **overrides) -> Dataset:
    """Write a synthetic dataset under ``root`` (CLI when there are no overrides)."""
    if overrides:
        from bids_regionx.synthetic.dataset import make_preset

        make_preset(root, preset, **overrides)
    else:
        subprocess.run(
            [sys.executable, "-m", "bids_regionx.synthetic", str(root), "--preset", preset],
            check=True,
            capture_output=True,
            text=True,
        )
    return _dataset(root)


@pytest.fixture(scope="session")
def integration_dir(tmp_path_factory) -> Path:
    base = os.environ.get("BIDS_REGIONX_INTEGRATION_DIR")
    if base:
        path = Path(base)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("integration")


@pytest.fixture(scope="session")
def demo_dataset(integration_dir) -> Dataset:
    root = integration_dir / "demo"
    if (root / "fmriprep" / "dataset_description.json").exists():
        return _dataset(root)
    return make_dataset(root, "demo")


def record_timing(label: str, value: float, unit: str = "s") -> None:
    """Print a measurement and append it to ``$BIDS_REGIONX_TIMINGS`` (JSON lines) if set."""
    print(f"[measure] {label}: {value:.1f} {unit}")
    target = os.environ.get("BIDS_REGIONX_TIMINGS")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            record = {"label": label, "value": round(value, 2), "unit": unit}
            handle.write(json.dumps(record) + "\n")


def run_checked(cmd: list[str], *, label: str, env: dict | None = None, **kwargs):
    """Run ``cmd``; on failure show its output; record its wall time."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, **kwargs)
    record_timing(label, time.perf_counter() - start)
    if proc.returncode != 0:
        pytest.fail(
            f"{label}: exit {proc.returncode}\n$ {' '.join(map(str, cmd))}\n"
            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-8000:]}"
        )
    return proc


def run_native(dataset: Dataset, out: Path, work: Path, *extra: str, label: str,
               env_extra: dict | None = None):
    """The participant level on the host for every participant of ``dataset``."""
    env = {**os.environ, **THREAD_ENV, **(env_extra or {})}
    cmd = [*NATIVE_CMD, str(dataset.fmriprep), str(out), "participant", *dataset.app_args(),
           "-w", str(work), *extra]
    return run_checked(cmd, label=label, env=env)


def _files(root: Path) -> set[str]:
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not _RUN_LOG.search(p.relative_to(root).as_posix())
    }


def _without_container(data):
    generated_by = data.get("GeneratedBy") if isinstance(data, dict) else None
    if isinstance(generated_by, list) and generated_by:
        generated_by[0].pop("Container", None)
    return data


def _nifti_bytes(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if path.name.endswith(".gz") else raw


def compare_derivatives(
    reference: Path, other: Path, *, container: bool = False, path_map: dict | None = None
) -> list[str]:
    """Differences between two output datasets (empty list: the same).

    ``container``: ``other`` was written inside the image, so its ``dataset_description.json``
    may also carry ``GeneratedBy[0].Container`` (and must: the caller checks its value).
    ``path_map``: ``{path in other: path in reference}``, for inputs mounted elsewhere in the
    container; applied to ``other``'s text files before comparing.
    """
    problems = []
    ref_files, other_files = _files(reference), _files(other)
    for name in sorted(ref_files - other_files):
        problems.append(f"only in {reference}: {name}")
    for name in sorted(other_files - ref_files):
        problems.append(f"only in {other}: {name}")
    for name in sorted(ref_files & other_files):
        a, b = reference / name, other / name
        if name.endswith((".nii", ".nii.gz")):
            if _nifti_bytes(a) != _nifti_bytes(b):
                problems.append(f"NIfTI differs: {name}")
            continue
        suffix = Path(name).suffix
        if suffix not in _TEXT_SUFFIXES and not name.endswith(".bidsignore"):
            continue  # reports and figures: existence only
        left_bytes, right_bytes = a.read_bytes(), b.read_bytes()
        for theirs, ours in (path_map or {}).items():
            right_bytes = right_bytes.replace(str(theirs).encode(), str(ours).encode())
        if left_bytes == right_bytes:
            continue
        if container and name == "dataset_description.json":
            left = _without_container(json.loads(left_bytes))
            right = _without_container(json.loads(right_bytes))
            if left == right:
                continue
        problems.append(f"content differs: {name}")
    return problems


def check_derivatives(out: Path, subjects) -> None:
    """``out`` is a complete, readable derivatives dataset for ``subjects``."""
    import nibabel as nib

    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "bids_regionx"
    for path in out.rglob("*.json"):
        json.loads(path.read_text(encoding="utf-8"))  # every sidecar parses
    for path in out.rglob("*.tsv"):
        rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]
        assert rows, f"{path}: empty"
        assert len({len(r) for r in rows}) == 1, f"{path}: ragged rows"
    for path in out.rglob("*.nii.gz"):
        nib.load(path).get_fdata()
    for subject in subjects:
        func = out / f"sub-{subject}" / "func"
        assert sorted(func.glob("*_timeseries.tsv")), f"sub-{subject}: no time series"
        assert sorted(func.glob("*_relmat.tsv")), f"sub-{subject}: no connectome"
        assert not list((out / f"sub-{subject}").glob("**/crash-*")), f"sub-{subject}: crashes"


@pytest.fixture(scope="session")
def itools() -> SimpleNamespace:
    """The helpers above, for the test modules (conftest modules cannot be imported by name
    under ``--import-mode=importlib``)."""
    return SimpleNamespace(
        REPO=REPO,
        SHARED_TOOLS=SHARED_TOOLS,
        THREAD_ENV=THREAD_ENV,
        NATIVE_CMD=NATIVE_CMD,
        make_dataset=make_dataset,
        record_timing=record_timing,
        run_checked=run_checked,
        run_native=run_native,
        compare_derivatives=compare_derivatives,
        check_derivatives=check_derivatives,
    )
