"""The demo dataset's planted networks come out as regions carrying the planted signals.

``make demo`` generates the ``demo`` preset (2 subjects x 2 runs of 120 volumes, 8 networks of
2-3 blobs each on a 4 mm grid) and runs the participant level with the default region
extraction (``local_regions``, 6 mm smoothing, 1350 mm³) plus ``--combine-runs --fisher-z``.
This runs the same command and checks, against the generator's ground truth, that

- every planted blob is found as exactly one region, labelled with its network's map;
- each region's time series correlates with the planted signal of its blob as the denoising
  leaves it (``DatasetInfo.expected_signals`` with the design matrix and the volumes kept, so
  the part of the signal the confounds happen to span is removed from both sides), and more
  than with any other network's signal.

About 10 s (data 5 s, run 4 s).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_regionx.cli.run import main
from bids_regionx.synthetic.dataset import make_preset

SPACE = "MNI152NLin2009cAsym"
#: Observed: 0.94-0.96 per region (nipype Linear, one BLAS thread); margins for platform noise.
MIN_CORRELATION = 0.85
MIN_MEDIAN_CORRELATION = 0.9


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    info = make_preset(root / "data", "demo", seed=0)
    out = root / "output"
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MPLCONFIGDIR", "XDG_CACHE_HOME", "JOBLIB_TEMP_FOLDER"):
            mp.setenv(var, str(root / "cache" / var.lower()))
        mp.setenv("OPENBLAS_NUM_THREADS", "1")
        with contextlib.redirect_stderr(err):
            code = main([str(info.root), str(out), "participant", "--maps", str(info.maps),
                         "-w", str(root / "work"), "--combine-runs", "--fisher-z",
                         "--plugin", "Linear"])
    assert code == 0, err.getvalue()
    return info, out


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False)


@pytest.fixture(scope="module")
def regions(demo):
    """``(table, blob of each region)`` from the extracted regions image."""
    info, out = demo
    atlas = out / "atlases" / f"tpl-{SPACE}"
    image = nib.load(atlas / f"tpl-{SPACE}_atlas-{info.atlas}_seg-regions_probseg.nii.gz")
    table = _read(atlas / f"tpl-{SPACE}_atlas-{info.atlas}_seg-regions_probseg.tsv")
    data = np.asarray(image.dataobj)
    assert data.shape[:3] == tuple(info.shape)  # the maps are on the BOLD grid
    blobs = np.array([info.blob_of(data[..., k]) for k in range(data.shape[-1])])
    return table, blobs


def test_every_planted_blob_is_one_region(demo, regions):
    info, _ = demo
    table, blobs = regions
    assert sorted(blobs) == list(range(info.planted.n_blobs))
    networks = np.asarray(info.map_names)[info.blob_map[blobs]]
    assert list(table["map_name"]) == list(networks)
    assert set(table["map_name"]) == set(info.map_names)


@pytest.mark.parametrize("run_index", range(4))
def test_region_signals_are_the_planted_ones(demo, regions, run_index):
    info, out = demo
    table, blobs = regions
    run = info.runs[run_index]
    func = out / f"sub-{run.subject}" / "func"
    prefix = f"sub-{run.subject}_task-{run.task}_run-{run.run}"
    series = _read(next(func.glob(f"{prefix}_space-*_stat-mean_timeseries.tsv")))
    design = _read(func / f"{prefix}_design.tsv")
    outliers = _read(func / f"{prefix}_outliers.tsv")
    keep = (outliers[["dummy", "fd", "dvars", "short_segment"]] == 0).all(axis=1).to_numpy()
    expected = info.expected_signals(run, design=design.to_numpy(), sample_mask=keep)
    assert list(series.columns) == list(table["name"])
    assert len(series) == expected.shape[0] == keep.sum()

    # One representative blob per network: the networks' signals as denoised.
    first_blob = {net: int(np.flatnonzero(info.blob_map == net)[0]) for net in range(info.n_maps)}
    own = []
    for k, name in enumerate(series.columns):
        signal = series[name].to_numpy()
        r = {net: np.corrcoef(signal, expected[:, b])[0, 1] for net, b in first_blob.items()}
        net = int(info.blob_map[blobs[k]])
        own.append(np.corrcoef(signal, expected[:, blobs[k]])[0, 1])
        best_other = max(v for other, v in r.items() if other != net)
        assert r[net] > best_other + 0.2, (name, r)
    assert min(own) > MIN_CORRELATION, dict(zip(series.columns, np.round(own, 3), strict=True))
    assert np.median(own) > MIN_MEDIAN_CORRELATION


def test_combined_series_follow_the_planted_networks(demo, regions):
    """The concatenated (z-scored per run) series of a subject keep the network structure."""
    info, out = demo
    table, blobs = regions
    for subject in info.subjects:
        path = next((out / f"sub-{subject}" / "func").glob(
            f"sub-{subject}_task-rest_space-*_stat-mean_timeseries.tsv"))
        combined = _read(path).to_numpy()
        corr = np.corrcoef(combined.T)
        same = info.blob_map[blobs][:, None] == info.blob_map[blobs][None, :]
        off_diagonal = ~np.eye(len(blobs), dtype=bool)
        # Regions of one network are far more correlated than regions of different networks.
        assert corr[same & off_diagonal].min() > 0.8
        assert np.abs(corr[~same]).mean() < 0.5
