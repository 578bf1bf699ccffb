"""Streamed high-variance confounds (float64, blocks of volumes) against nilearn 0.14."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nilearn.image import high_variance_confounds as nilearn_hv

from bids_regionx.core.bold import iter_blocks
from bids_regionx.core.high_variance import HighVarianceConfounds

SHAPE = (14, 16, 12)
AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])


def _run(n_volumes: int = 40, seed: int = 0, dtype=np.float64) -> np.ndarray:
    """Baseline ~1000, voxel-wise drifts and a few high-variance voxels driven by 3 sources."""
    rng = np.random.default_rng(seed)
    t = np.linspace(-1, 1, n_volumes)
    base = 1000 * (1 + 0.1 * rng.random(SHAPE))
    data = base[..., None] * (1 + 0.01 * rng.standard_normal((*SHAPE, n_volumes)))
    data += rng.normal(0, 5, SHAPE)[..., None] * t
    sources = rng.standard_normal((3, n_volumes))
    loud = rng.random(SHAPE) < 0.05
    data[loud] += 30 * rng.standard_normal((loud.sum(), 3)) @ sources
    return data.astype(dtype)


def _streamed(img, volumes):
    hv = HighVarianceConfounds(img.shape[:3], img.shape[3])
    for start, block in iter_blocks(img, volumes=volumes):
        hv.add(start, block)
    return hv.confounds(img, volumes=volumes)


def _assert_same_up_to_sign(got, want, rtol):
    assert got.shape == want.shape
    signs = np.sign(np.sum(got * want, axis=0))
    np.testing.assert_allclose(got * signs, want, rtol=0, atol=rtol * np.abs(want).max())


@pytest.mark.parametrize("volumes", [1, 7, 40])
def test_equals_nilearn_on_float64(volumes):
    img = nib.Nifti1Image(_run(), AFFINE)
    _assert_same_up_to_sign(_streamed(img, volumes), nilearn_hv(img), 1e-10)


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_float64_arithmetic_on_other_dtypes(dtype):
    """For float32/int16 runs we compute in float64: equal to nilearn on a float64 copy."""
    data = _run(dtype=dtype)
    got = _streamed(nib.Nifti1Image(data, AFFINE), 9)
    want = nilearn_hv(nib.Nifti1Image(data.astype(np.float64), AFFINE))
    _assert_same_up_to_sign(got, want, 1e-10)


def test_nan_voxels_are_ignored():
    data = _run()
    data[0, 0, 0, 5] = np.nan
    img = nib.Nifti1Image(data, AFFINE)
    got = _streamed(img, 8)
    assert np.all(np.isfinite(got))
    _assert_same_up_to_sign(got, nilearn_hv(img), 1e-10)


def test_blocks_must_arrive_in_order():
    data = _run(n_volumes=6)
    hv = HighVarianceConfounds(SHAPE, 6)
    with pytest.raises(ValueError, match="blocks must arrive in order"):
        hv.add(3, data[..., 3:])
    hv.add(0, data[..., :3])
    with pytest.raises(ValueError, match="only 3 of 6 volumes"):
        hv.selected()
