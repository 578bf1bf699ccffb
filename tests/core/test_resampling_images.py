"""Resampling equals nilearn's resample_img; image loading fails with clear messages."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nilearn.image import resample_img as nilearn_resample

from bids_regionx.core.errors import DimensionError
from bids_regionx.core.images import bounding_box, check_same_fov, concat_imgs, load_img
from bids_regionx.core.masks import binarize_mask
from bids_regionx.core.resampling import resample_data

SRC = np.array([[2.0, 0, 0, -20], [0, 2.0, 0, -24], [0, 0, 2.0, -18], [0, 0, 0, 1]])
TARGETS = {
    "coarser": (np.diag([3.0, 3.0, 3.0, 1.0]) + np.array([[0, 0, 0, -21], [0, 0, 0, -25],
                                                          [0, 0, 0, -19], [0, 0, 0, 0]]),
                (14, 16, 12)),
    "shifted": (SRC + np.array([[0, 0, 0, 1.3], [0, 0, 0, -0.7], [0, 0, 0, 0.4], [0] * 4]),
                (20, 24, 18)),
    "oblique": (np.array([[0, 2.0, 0, -20], [2.0, 0, 0, -24], [0, 0, 2.0, -18], [0, 0, 0, 1]]),
                (24, 20, 18)),
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("interpolation", ["continuous", "linear", "nearest"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.uint8])
@pytest.mark.parametrize("four_d", [False, True])
def test_resample_equals_nilearn(target, interpolation, dtype, four_d):
    rng = np.random.default_rng(0)
    shape = (20, 24, 18) + ((3,) if four_d else ())
    data = (rng.random(shape) * 100).astype(dtype)
    affine, tshape = TARGETS[target]
    expected = nilearn_resample(nib.Nifti1Image(data, SRC), target_affine=affine,
                                target_shape=tshape, interpolation=interpolation,
                                force_resample=True, copy_header=True)
    out = resample_data(data, SRC, affine, tshape, interpolation=interpolation)
    assert out.dtype == expected.get_data_dtype() or out.dtype == np.asanyarray(
        expected.dataobj).dtype
    np.testing.assert_array_equal(out, np.asanyarray(expected.dataobj))


def test_resample_outside_fov_raises():
    far = SRC.copy()
    far[:3, 3] += 1000
    with pytest.raises(ValueError, match="does not contain any of the data"):
        resample_data(np.ones((4, 4, 4)), SRC, far, (4, 4, 4))


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda p: p / "missing.nii.gz", FileNotFoundError, "file not found"),
        (lambda p: (p / "x.nii.gz").write_text("not nifti") and p / "x.nii.gz", ValueError,
         "not a readable NIfTI"),
        (lambda p: p, ValueError, "is a directory"),
    ],
    ids=["missing", "not-nifti", "directory"],
)
def test_load_img_errors_name_the_file(tmp_path, make, error, match):
    with pytest.raises(error, match=match):
        load_img(make(tmp_path), name="maps")


@pytest.mark.parametrize("shape,ndim", [((4, 4), 4), ((4, 4, 4, 2, 2), 4), ((4, 4, 4), 4)])
def test_load_img_dimension_errors(shape, ndim):
    with pytest.raises(DimensionError, match=f"Expected dimension is {ndim}D"):
        load_img(nib.Nifti1Image(np.ones(shape, np.float32), np.eye(4)), ndim=ndim)


def test_none_is_a_type_error():
    with pytest.raises(TypeError, match="NiftiLike"):
        load_img(None, name="maps_img")


def test_concat_and_fov_checks():
    vols = [nib.Nifti1Image(np.full((3, 3, 3), i, np.float32), SRC) for i in range(3)]
    out = concat_imgs(vols)
    assert out.shape == (3, 3, 3, 3) and np.asanyarray(out.dataobj).flags["F_CONTIGUOUS"]
    other = nib.Nifti1Image(np.zeros((4, 3, 3)), SRC * 2)
    with pytest.raises(ValueError, match="maps and data do not have the same shape\n- maps and "
                       "data do not have the same affine"):
        check_same_fov(maps=vols[0], data=other)


def test_binarize_mask_4d_nonbinary_and_nan():
    data = np.ones((4, 4, 4, 2))
    data[0, 0, 0, 1] = 0
    data[1, 1, 1, 0] = np.nan
    with pytest.warns(UserWarning, match="Non-finite"):
        mask = binarize_mask(nib.Nifti1Image(data, np.eye(4)))
    # uint8 data; the header keeps the source's on-disk dtype, as nilearn's mask_img_ does
    assert np.asanyarray(mask.dataobj).dtype == np.uint8 and mask.shape == (4, 4, 4)
    assert np.asanyarray(mask.dataobj).sum() == 62
    with pytest.raises(ValueError, match="empty"):
        binarize_mask(nib.Nifti1Image(np.zeros((3, 3, 3)), np.eye(4)))


def _bounding_box_by_definition(nonzero):
    where = np.nonzero(nonzero)
    if where[0].size == 0:
        return None
    return tuple(slice(int(w.min()), int(w.max()) + 1) for w in where)


@pytest.mark.parametrize("layout", ["C", "F", "reversed", "transposed", "strided"])
def test_bounding_box_is_the_smallest_box(layout):
    rng = np.random.default_rng(0)
    for trial in range(300):
        shape = tuple(int(n) for n in rng.integers(1, 12, 3))
        a = rng.random(shape) < rng.choice([0.0, 0.002, 0.02, 0.3])
        a = {
            "C": a,
            "F": np.asfortranarray(a),
            "reversed": np.asfortranarray(a)[::-1, :, ::-1],
            "transposed": a.transpose(2, 0, 1),
            "strided": np.asfortranarray(a)[::2, :, 1::2],
        }[layout]
        assert bounding_box(a) == _bounding_box_by_definition(a), (trial, a.shape, a.strides)
