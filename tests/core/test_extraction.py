"""Streaming least squares on region maps equals smoothing + lstsq on the whole volume."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
from scipy import linalg, ndimage

from bids_regionx.core.bold import bold_info, iter_blocks
from bids_regionx.core.extraction import extract_signals, plan_extraction
from bids_regionx.core.smoothing import smooth_array

AFFINE = np.array([[3.0, 0, 0, -40], [0, 2.5, 0, -50], [0, 0, 3.5, -30], [0, 0, 0, 1]])
SHAPE = (20, 22, 18)


def _regions(seed=0, n=5, overlap=False):
    rng = np.random.default_rng(seed)
    maps = np.zeros(SHAPE + (n,), np.float32, order="F")
    for k in range(n):
        c = rng.integers(3, np.array(SHAPE) - 3)
        sl = tuple(slice(ci - 2, ci + 3) for ci in c)
        maps[sl + (k,)] = rng.random((5, 5, 5)) + 0.2
    if overlap:
        # Overlapping (not linearly dependent) maps couple the least-squares problem.
        wide = np.zeros(SHAPE, bool)
        wide[np.any(maps[..., :2] != 0, axis=3)] = True
        maps[..., -1] = np.where(wide, rng.random(SHAPE) + 0.1, maps[..., -1])
    return maps


def _bold(seed=0, t=30, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return (1000 + 10 * rng.standard_normal(SHAPE + (t,))).astype(dtype)


def _reference(maps, bold, fwhm, mask=None):
    """Smooth the whole run in float64, then lstsq on the (masked) maps' support."""
    data = smooth_array(bold.astype(np.float64), AFFINE, fwhm) if fwhm else bold.astype(float)
    maps = maps.astype(np.float64)
    if mask is not None:
        maps = maps * mask[..., None]
        maps = maps[..., np.abs(maps[mask]).sum(0) > 0]
    sel = np.any(maps != 0, axis=3)
    return linalg.lstsq(maps[sel], data[sel])[0].T


@pytest.mark.parametrize("fwhm", [None, 4.0, 8.0])
@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("overlap", [False, True])
def test_plan_matches_smoothing_then_lstsq(fwhm, use_mask, overlap):
    maps, bold = _regions(overlap=overlap), _bold()
    mask = np.zeros(SHAPE, bool)
    mask[:, 4:, :] = True
    plan = plan_extraction(maps, AFFINE, mask=mask if use_mask else None, smoothing_fwhm=fwhm,
                           rcond=float(np.finfo(np.float64).eps))
    out = extract_signals(nib.Nifti1Image(bold.astype(np.float64), AFFINE), plan)
    expected = _reference(maps, bold, fwhm, mask if use_mask else None)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-10 * np.abs(expected).max())


def test_rank_deficient_maps_give_minimum_norm_solution():
    maps = _regions(n=3)
    maps = np.concatenate([maps, maps[..., :1]], axis=3)  # a duplicated map
    bold = _bold(t=10).astype(np.float64)
    plan = plan_extraction(maps, AFFINE, rcond=float(np.finfo(np.float64).eps))
    out = extract_signals(nib.Nifti1Image(bold, AFFINE), plan)
    sel = np.any(maps != 0, axis=3)
    expected = linalg.lstsq(maps[sel].astype(float), bold[sel])[0].T
    np.testing.assert_allclose(out, expected, atol=1e-9 * np.abs(expected).max())
    np.testing.assert_allclose(out[:, 0], out[:, 3])


def test_masked_out_maps_are_dropped_with_warning():
    maps = _regions(n=4)
    mask = np.zeros(SHAPE, bool)
    mask[np.any(maps[..., :2] != 0, axis=3)] = True
    with pytest.warns(UserWarning, match="Out of 4 maps, the masked map image only contains 2"):
        plan = plan_extraction(maps, AFFINE, mask=mask)
    assert list(plan.kept) == [0, 1]
    with pytest.raises(ValueError, match="No map left after applying mask"):
        plan_extraction(maps, AFFINE, mask=np.zeros(SHAPE, bool))
    with pytest.warns(FutureWarning, match="keep_masked_maps"):
        assert plan_extraction(maps, AFFINE, mask=mask, keep_masked_maps=True).kept.size == 4


def test_plan_only_reads_voxels_near_the_maps():
    maps = _regions(n=2)
    plan = plan_extraction(maps, AFFINE, smoothing_fwhm=6.0)
    grown = ndimage.binary_dilation(np.any(maps != 0, axis=3), iterations=4)
    assert plan.rows.size < grown.sum() * 2 < np.prod(SHAPE)


@pytest.mark.parametrize("volumes", [1, 7, None])
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_blocks_give_the_same_signals(tmp_path, volumes, suffix):
    maps, bold = _regions(), _bold(t=23)
    path = tmp_path / f"bold{suffix}"
    nib.save(nib.Nifti1Image(bold, AFFINE), path)
    plan = plan_extraction(maps, AFFINE, smoothing_fwhm=6.0)
    whole = extract_signals(nib.Nifti1Image(bold, AFFINE), plan, volumes=100)
    streamed = extract_signals(nib.load(path), plan, volumes=volumes)
    np.testing.assert_array_equal(streamed, whole)


def test_nonfinite_voxels_warn_and_count_as_zero():
    maps, bold = _regions(), _bold(t=5)
    bold[np.any(maps != 0, axis=3), 2] = np.nan
    plan = plan_extraction(maps, AFFINE)
    with pytest.warns(UserWarning, match="Non-finite values detected"):
        out = extract_signals(nib.Nifti1Image(bold, AFFINE), plan)
    assert np.all(np.isfinite(out)) and np.all(out[2] == 0)


def test_iter_blocks_reads_run_in_order_and_3d(tmp_path):
    bold = _bold(t=11)
    img = nib.Nifti1Image(bold, AFFINE)
    starts = [(s, b.shape[3]) for s, b in iter_blocks(img, volumes=4)]
    assert starts == [(0, 4), (4, 4), (8, 3)]
    three = nib.Nifti1Image(bold[..., 0], AFFINE)
    assert bold_info(three).is_3d and bold_info(three).shape == SHAPE + (1,)
    (block,) = [b for _, b in iter_blocks(three)]
    assert block.shape == SHAPE + (1,)


def test_truncated_gzip_names_file(tmp_path):
    path = tmp_path / "bold.nii.gz"
    nib.save(nib.Nifti1Image(_bold(t=20), AFFINE), path)
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(ValueError, match=r"bold\.nii\.gz: cannot read volumes"):
        list(iter_blocks(nib.load(path), volumes=5))


def test_scaled_data_report_float64():
    img = nib.Nifti1Image((_bold(t=3) * 10).astype(np.int16), AFFINE)
    img.header.set_slope_inter(0.5, 1.0)
    reloaded = nib.Nifti1Image.from_bytes(img.to_bytes())
    assert bold_info(reloaded).dtype == np.float64
