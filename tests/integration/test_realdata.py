"""The participant level on real data: ds000001's fMRIPrep tree with real BOLD runs in it.

``../shared/realdata`` (see its PROVENANCE.md) has the fMRIPrep 20.2 file tree of ds000001
with 0-byte placeholders, six real low-resolution BOLD runs from GIFT (26 x 31 x 22 x 50,
7.5 x 7.5 x 9.1 mm, TR 1 s), a real fMRIPrep 1.4 confounds table and a real CanICA
decomposition (20 components, 4 mm: another grid than the BOLD, so the regions are resampled).

The test copies the tree, fills four runs (sub-10 and sub-11, runs 1 and 2) with a GIFT run
each, a brain mask computed from that run, the confounds table cut to 50 rows under the
layout's confounds name, and ``RepetitionTime`` 1 s in the BOLD sidecar; selects exactly those
runs with ``--participant-label`` and ``--bids-filter-file`` (the other placeholders would be
broken inputs); runs the participant level with the CanICA maps; and checks the outputs are
complete, consistent and valid BIDS. The pieces come from different scans: this checks the
plumbing, not the neuroscience.

``make integration``; ``BIDS_REGIONX_REALDATA`` overrides the data folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
REALDATA = Path(os.environ.get("BIDS_REGIONX_REALDATA", REPO.parent / "shared" / "realdata"))
DATASET = REALDATA / "bids" / "ds000001-fmriprep"
MAPS = REALDATA / "maps" / "canica_resting_state.nii.gz"
CONFOUNDS = REALDATA / "confounds" / "fmriprep-1.4_desc-confounds_regressors.tsv"
TASK = "balloonanalogrisktask"
SPACE = "MNI152NLin2009cAsym"
#: (subject, run) filled with a GIFT run each (in this order).
FILLED = [("10", 1), ("10", 2), ("11", 1), ("11", 2)]
GIFT = ["sub-007", "sub-018", "sub-067", "sub-107"]
THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _prefix(subject: str, run: int) -> str:
    return f"sub-{subject}/func/sub-{subject}_task-{TASK}_run-{run}"


def _brain_mask(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """Voxels whose mean is above 20 % of the 98th percentile of the mean image.

    GIFT's runs are not masked; their background is close to 0 and the brain is bright.
    """
    mean = np.asarray(img.dataobj, dtype=np.float64).mean(axis=3)
    mask = (mean > 0.2 * np.percentile(mean, 98)).astype(np.uint8)
    out = nib.Nifti1Image(mask, img.affine)
    out.set_data_dtype(np.uint8)
    return out


@pytest.fixture(scope="module")
def realdata(tmp_path_factory):
    """A copy of ds000001-fmriprep with four real runs in it."""
    for path in (DATASET, MAPS, CONFOUNDS):
        if not path.exists():
            pytest.skip(f"real data not found: {path}")
    root = tmp_path_factory.mktemp("realdata") / "ds000001-fmriprep"
    shutil.copytree(DATASET, root)
    for path in [root, *root.rglob("*")]:  # the shared copy is read-only
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    confounds = pd.read_csv(CONFOUNDS, sep="\t", na_values=["n/a"], keep_default_na=False)
    for (subject, run), gift in zip(FILLED, GIFT, strict=True):
        prefix = root / _prefix(subject, run)
        bold_name = f"{prefix}_space-{SPACE}_res-2_desc-preproc_bold"
        img = nib.load(REALDATA / "bold" / f"{gift}_lowres.nii")
        assert img.shape[3] == 50
        nib.save(img, f"{bold_name}.nii.gz")
        nib.save(_brain_mask(img), f"{prefix}_space-{SPACE}_res-2_desc-brain_mask.nii.gz")
        sidecar = Path(f"{bold_name}.json")
        meta = json.loads(sidecar.read_text())
        meta["RepetitionTime"] = 1.0  # GIFT's runs; the placeholder says 2 s
        sidecar.write_text(json.dumps(meta, indent=2))
        table = confounds.iloc[: img.shape[3]]
        table.to_csv(f"{prefix}_desc-confounds_timeseries.tsv", sep="\t", index=False,
                     na_rep="n/a", lineterminator="\n")
    return root


@pytest.fixture(scope="module")
def outputs(realdata, tmp_path_factory):
    base = tmp_path_factory.mktemp("realdata_run")
    filters = base / "filters.json"
    filters.write_text(json.dumps({"bold": {"run": [1, 2]}}))
    out = base / "out"
    cmd = [sys.executable, "-m", "bids_regionx.cli.run", str(realdata), str(out), "participant",
           "--participant-label", "10", "sub-11", "--bids-filter-file", str(filters),
           "--maps", str(MAPS), "-w", str(base / "work"), "--nprocs", "2",
           "--connectivity", "correlation", "covariance", "--fisher-z"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, **THREADS})
    assert proc.returncode == 0, proc.stderr[-6000:]
    return out


def _read(path: Path, **kwargs) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False, **kwargs)


def test_outputs_complete(outputs):
    out = outputs
    atlas = out / "atlases" / f"tpl-{SPACE}"
    label = "CanicaRestingState"
    regions_img = nib.load(atlas / f"tpl-{SPACE}_atlas-{label}_seg-regions_probseg.nii.gz")
    table = _read(atlas / f"tpl-{SPACE}_atlas-{label}_seg-regions_probseg.tsv")
    assert regions_img.shape[:3] == (50, 59, 50)  # the maps' grid, not the BOLD's
    assert regions_img.shape[3] == len(table) > 20  # components split into several regions
    assert table["map_index"].nunique() > 10
    names = list(table["name"])
    func_files = sorted(p.relative_to(out).as_posix() for p in out.glob("sub-*/func/*"))
    for subject, run in FILLED:
        prefix = f"sub-{subject}_task-{TASK}_run-{run}"
        stem = f"sub-{subject}/func/{prefix}_space-{SPACE}_atlas-{label}_seg-regions_res-2"
        expected = {
            f"{stem}_stat-mean_timeseries", f"{stem}_stat-coverage_bold",
            f"{stem}_stat-pearsoncorrelation_relmat",
            f"{stem}_stat-pearsoncorrelation_desc-fisherz_relmat",
            f"{stem}_stat-covariance_relmat",
            f"sub-{subject}/func/{prefix}_design", f"sub-{subject}/func/{prefix}_outliers",
        }
        for name in expected:
            assert f"{name}.tsv" in func_files and f"{name}.json" in func_files, name
        series = _read(out / f"{stem}_stat-mean_timeseries.tsv")
        meta = json.loads((out / f"{stem}_stat-mean_timeseries.json").read_text())
        coverage = _read(out / f"{stem}_stat-coverage_bold.tsv")
        assert list(series.columns) == names
        assert len(series) == meta["NumberOfVolumes"] == 50 - meta[
            "NumberOfVolumesDiscardedByMotionScrubbing"] - meta[
            "NumberOfVolumesDiscardedByNonsteadyStatesDetector"]
        assert meta["RepetitionTime"] == 1.0 and meta["SamplingFrequency"] == 1.0
        # Regions outside the run's brain mask (the BOLD's field of view is smaller than the
        # maps') are n/a, and said so in the sidecar and the coverage table.
        missing = [n for n in names if series[n].isna().all()]
        assert sorted(missing) == sorted(meta["RegionsSetToNA"])
        assert sorted(coverage.loc[coverage["used"] == 0, "name"]) == sorted(missing)
        assert len(missing) < len(names) // 2
        assert series.drop(columns=missing).notna().all().all()
        matrix = _read(out / f"{stem}_stat-pearsoncorrelation_relmat.tsv", index_col=0)
        assert list(matrix.index) == names == list(matrix.columns)
        present = matrix.loc[[n for n in names if n not in missing]]
        assert np.isfinite(present[[n for n in names if n not in missing]].to_numpy()).all()
        for uri in meta["NodeFiles"] + meta["Sources"]:
            kind, _, path = uri.partition(":")[2].partition(":")
            root = out if kind == "" else None
            if root is not None:
                assert (root / path).is_file(), uri
    # Only the selected runs were processed.
    assert {p.name for p in out.glob("sub-*") if p.is_dir()} == {"sub-10", "sub-11"}
    assert not [f for f in func_files if re.search(r"_run-3_", f)]


def test_outputs_valid_bids(outputs):
    exe = Path(sys.executable).with_name("bids-validator-deno")
    if not exe.exists():
        pytest.skip("bids-validator-deno is not installed")
    for dataset in (outputs, outputs / "atlases"):
        proc = subprocess.run([str(exe), str(dataset), "--format", "json"],
                              capture_output=True, text=True, timeout=300)
        issues = json.loads(proc.stdout)["issues"]["issues"]
        errors = [i for i in issues if i.get("severity") == "error"]
        assert errors == [], errors[:5]
