"""Memory properties of signal extraction: a 4D run is read a block of volumes at a time.

``extract_signals`` (and the estimator's ``transform`` built on it) must never hold the whole run:
peak memory is set by the block size, not the run length. And a ``.nii.gz`` run must be
decompressed once, front to back: re-opening the gzip stream for every block would decompress the
file from its start each time (quadratic in the run length).
"""

from __future__ import annotations

import gzip
import tracemalloc
import warnings

import nibabel as nib
import numpy as np
import pytest

import bids_regionx.core.bold as bold_module
from bids_regionx import RegionExtractor
from bids_regionx.core.extraction import extract_signals, plan_extraction
from bids_regionx.synthetic.maps import grid_affine, ica_like_maps

SHAPE = (24, 26, 22)
AFFINE = grid_affine((3.0, 3.0, 3.0), SHAPE)
N_VOLUMES = 48


class CountingProxy:
    """A nibabel data object over an array that records every read and refuses whole reads.

    Attributes
    ----------
    reads : list of tuple
        Shape of each block read through ``proxy[...]``.
    volumes : list of range
        Volumes (last-axis indices) covered by each read of a slice along time.
    """

    is_proxy = True

    def __init__(self, data: np.ndarray):
        self._data = data
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim
        self.reads: list[tuple[int, ...]] = []
        self.volumes: list[range] = []

    def __getitem__(self, key):
        block = self._data[key]
        if block.ndim == 0:  # nibabel peeks at one value to learn the dtype
            return block
        self.reads.append(block.shape)
        if isinstance(key, tuple) and key[0] is Ellipsis and isinstance(key[-1], slice):
            self.volumes.append(range(*key[-1].indices(self.shape[-1])))
        return block

    def __array__(self, dtype=None, copy=None):
        raise AssertionError("the whole run was materialized")


@pytest.fixture(scope="module")
def maps() -> np.ndarray:
    """Compact signed regions: ICA-like maps with |weights| < 0.2 set to 0 (float32)."""
    out = ica_like_maps(SHAPE, 5, seed=4, sigma_range=(2.0, 3.0))
    out[np.abs(out) < 0.2] = 0
    return out


@pytest.fixture(scope="module")
def run() -> np.ndarray:
    """A float32 run, baseline ~1000 with 1 % noise, shape (*SHAPE, N_VOLUMES)."""
    rng = np.random.default_rng(0)
    return (1000 * (1 + 0.01 * rng.standard_normal((*SHAPE, N_VOLUMES)))).astype(np.float32)


@pytest.mark.parametrize("volumes", [1, 5, 16])
@pytest.mark.parametrize("fwhm", [None, 6.0])
def test_extract_signals_reads_each_volume_once_in_blocks(volumes, fwhm, maps, run):
    proxy = CountingProxy(run)
    plan = plan_extraction(maps, AFFINE, smoothing_fwhm=fwhm)
    streamed = extract_signals(nib.Nifti1Image(proxy, AFFINE), plan, volumes=volumes)

    assert max(shape[3] for shape in proxy.reads) <= volumes
    covered = [t for block in proxy.volumes for t in block]
    assert covered == list(range(N_VOLUMES))  # each volume once, in order
    whole = extract_signals(nib.Nifti1Image(run, AFFINE), plan, volumes=N_VOLUMES)
    np.testing.assert_array_equal(streamed, whole)


def _peak_bytes(func) -> int:
    tracemalloc.start()
    try:
        func()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_extract_signals_peak_memory_is_set_by_the_block(suffix, maps, run, tmp_path):
    """Peak numpy allocations (numpy reports to tracemalloc) are a few blocks, and do not grow
    when the run is twice as long."""
    plan = plan_extraction(maps, AFFINE, smoothing_fwhm=6.0)
    volumes = 2
    block_bytes = int(np.prod(SHAPE)) * run.itemsize * volumes
    peaks = []
    for n_runs in (1, 2):
        path = tmp_path / f"bold{n_runs}{suffix}"
        nib.save(nib.Nifti1Image(np.concatenate([run] * n_runs, axis=3), AFFINE), path)
        img = nib.load(path)
        peaks.append(_peak_bytes(lambda img=img: extract_signals(img, plan, volumes=volumes)))
    # the block, its float64 copy of the rows used, and temporaries: < 6 blocks (measured 4.5-5)
    assert max(peaks) < 6 * block_bytes, (peaks, block_bytes)
    assert peaks[1] < 1.05 * peaks[0]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"standardize": "zscore_sample", "detrend": True, "t_r": 2.0, "low_pass": 0.1},
        {"high_variance_confounds": True},
        {"resampling_target": "maps"},
    ],
    ids=["default", "cleaning", "high-variance-confounds", "data-resampled-onto-maps"],
)
def test_estimator_transform_never_materializes_the_run(params, maps, run, monkeypatch):
    """Through ``RegionExtractor.transform`` too, with blocks of ~3 volumes."""
    per_volume = int(np.prod(SHAPE)) * run.itemsize
    monkeypatch.setattr(bold_module, "BLOCK_BYTES", 3 * per_volume)
    maps_img = nib.Nifti1Image(maps, AFFINE)
    est = RegionExtractor(maps_img, extractor="connected_components", min_region_size=100,
                          thresholding_strategy="img_value", threshold=0.2, **params).fit()
    affine = AFFINE
    if params.get("resampling_target") == "maps":
        affine = AFFINE.copy()
        affine[:3, 3] += 1.0  # data on another grid: resampled block by block
    proxy = CountingProxy(run)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        signals = est.transform(nib.Nifti1Image(proxy, affine))
    assert signals.shape == (N_VOLUMES, est.n_elements_)
    assert all(shape[:3] == SHAPE for shape in proxy.reads)  # whole volumes, ...
    assert max(shape[3] for shape in proxy.reads) <= 3  # ... a block at a time
    # each volume read once for extraction; a second sequential pass gathers the
    # high-variance voxels; resampling onto the maps first reads the run's range
    passes = 2 if params.get("high_variance_confounds") or "resampling_target" in params else 1
    assert sorted(t for block in proxy.volumes for t in block) == sorted(
        list(range(N_VOLUMES)) * passes
    )


class _GzipLog:
    """Counts gzip streams opened for reading and backward seeks (each one re-decompresses
    the file from its start)."""

    def __init__(self, monkeypatch):
        self.opened = 0
        self.rewinds = 0
        init, seek = gzip.GzipFile.__init__, gzip.GzipFile.seek
        log = self

        def counting_init(self, *args, **kwargs):
            init(self, *args, **kwargs)
            if getattr(self, "mode", None) == gzip.READ:
                log.opened += 1

        def counting_seek(self, offset, whence=0):
            if whence == 0 and offset < self.tell():
                log.rewinds += 1
            return seek(self, offset, whence)

        monkeypatch.setattr(gzip.GzipFile, "__init__", counting_init)
        monkeypatch.setattr(gzip.GzipFile, "seek", counting_seek)


@pytest.mark.parametrize("volumes", [3, 12])
def test_gzipped_run_is_decompressed_once_front_to_back(volumes, maps, run, tmp_path,
                                                        monkeypatch):
    path = tmp_path / "bold.nii.gz"
    nib.save(nib.Nifti1Image(run, AFFINE), path)
    plan = plan_extraction(maps, AFFINE, smoothing_fwhm=6.0)
    img = nib.load(path)  # nibabel's default: the gzip stream is re-opened for every read
    log = _GzipLog(monkeypatch)
    extract_signals(img, plan, volumes=volumes)
    # one gzip stream, read front to back, for all the data whatever the number of blocks
    assert log.opened == 1
    assert log.rewinds == 0


def test_gzip_log_sees_reopening(maps, run, tmp_path, monkeypatch):
    """The instrument works: block reads through nibabel's default proxy re-open the stream."""
    path = tmp_path / "bold.nii.gz"
    nib.save(nib.Nifti1Image(run, AFFINE), path)
    img = nib.load(path)
    log = _GzipLog(monkeypatch)
    for start in range(0, N_VOLUMES, 12):
        np.asanyarray(img.dataobj[..., start : start + 12])
    assert log.opened == N_VOLUMES // 12


@pytest.mark.parametrize("high_variance_confounds", [False, True])
def test_estimator_reads_a_gzipped_run_sequentially(high_variance_confounds, maps, run,
                                                     tmp_path, monkeypatch):
    """``transform`` on a .nii.gz path, with small blocks: the number of gzip streams does not
    grow with the number of blocks and no stream seeks backwards (with high-variance
    confounds: one more front-to-back pass)."""
    path = tmp_path / "bold.nii.gz"
    nib.save(nib.Nifti1Image(run, AFFINE), path)
    est = RegionExtractor(nib.Nifti1Image(maps, AFFINE), extractor="connected_components",
                          min_region_size=100, thresholding_strategy="img_value",
                          threshold=0.2, standardize=None,
                          high_variance_confounds=high_variance_confounds).fit()
    per_volume = int(np.prod(SHAPE)) * run.itemsize
    opened = {}
    for n in (4, 16):
        monkeypatch.setattr(bold_module, "BLOCK_BYTES", n * per_volume)
        with monkeypatch.context() as patch:
            log = _GzipLog(patch)
            est.transform(str(path))
            opened[n] = log.opened
            assert log.rewinds == 0
    assert opened[4] == opened[16]
