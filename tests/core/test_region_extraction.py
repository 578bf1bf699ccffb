"""Loading maps for region extraction: non-finite values and empty maps, as nilearn."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest

from bids_regionx.core.region_extraction import load_maps


def _maps(dtype=np.float32):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((6, 7, 5, 3)).astype(dtype)
    data[np.abs(data) < 1] = 0
    return np.asfortranarray(data)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_any_non_finite_value_warns_and_becomes_zero(bad, dtype):
    data = _maps(dtype)
    data[2, 3, 1, 1] = bad
    with pytest.warns(UserWarning, match="Non-finite values detected"):
        _, out = load_maps(nib.Nifti1Image(data, np.eye(4)))
    expected = np.where(np.isfinite(data), data, 0)
    assert out.dtype == data.dtype and out.flags.f_contiguous
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_finite_maps_are_returned_as_read(dtype):
    data = _maps(np.float32) * 10
    data = data.astype(dtype)
    img = nib.Nifti1Image(data, np.eye(4))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, out = load_maps(img)
    np.testing.assert_array_equal(out, data)


@pytest.mark.parametrize(
    "data",
    [
        np.zeros((4, 4, 4, 2), np.float32),
        np.full((4, 4, 4, 2), -0.0, np.float32),
        np.zeros((4, 4, 4, 2), np.int16),
        np.full((4, 4, 4, 2), np.nan, np.float32),  # zero once the NaN are replaced
    ],
    ids=["zeros", "negative-zeros", "int-zeros", "all-nan"],
)
def test_all_zero_maps_raise(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="the maps image is empty"):
            load_maps(nib.Nifti1Image(data, np.eye(4)))


@pytest.mark.parametrize("value", [-1e-30, 3, -2])
def test_one_non_zero_value_is_enough(value):
    data = np.zeros((4, 4, 4, 2), np.float32)
    data[1, 2, 3, 1] = value
    _, out = load_maps(nib.Nifti1Image(data, np.eye(4)))
    assert np.count_nonzero(out) == 1
