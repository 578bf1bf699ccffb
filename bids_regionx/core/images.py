"""Loading, checking and building NIfTI images.

Images come in as paths, nibabel images or lists of 3D images; everything downstream works on
``(data, affine)`` pairs. Data keep the dtype and memory layout nibabel gives them (F-ordered for
files), because several float32 reductions in the reference implementation depend on it.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from bids_regionx.core.errors import DimensionError

ImageLike = Any  # str | os.PathLike | nibabel image | sequence of those


def _describe(img: ImageLike) -> str:
    if isinstance(img, (str, os.PathLike)):
        return str(img)
    return type(img).__name__


def _load_path(path: str | os.PathLike, name: str) -> nib.spatialimages.SpatialImage:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{name}: file not found: {path}")
    if path.is_dir():
        raise ValueError(f"{name}: {path} is a directory, not a NIfTI image")
    try:
        img = nib.load(path)
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{name}: {path} is not a readable NIfTI image ({exc})") from exc
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ValueError(f"{name}: {path} is a {type(img).__name__}, not a NIfTI image")
    return img


def load_img(
    img: ImageLike,
    *,
    name: str = "img",
    ndim: int | None = None,
    atleast_4d: bool = False,
) -> nib.Nifti1Image:
    """Return a nibabel image from a path, an image, or a list of 3D images.

    Parameters
    ----------
    img : str, path-like, nibabel image, or sequence of those
        A sequence of 3D images is concatenated along a fourth axis.
    name : str
        How the image is called in error messages (a parameter or a file role).
    ndim : {3, 4}, optional
        Required dimensionality. A 4D image with a single volume counts as 3D when ``ndim=3``.
    atleast_4d : bool
        Return a 3D image as a single-volume 4D image.

    Returns
    -------
    nibabel.Nifti1Image (or Nifti2Image)

    Raises
    ------
    TypeError
        ``img`` is not an image (message names ``name``).
    DimensionError
        ``img`` does not have ``ndim`` dimensions.
    FileNotFoundError, ValueError
        A path does not exist or is not a readable NIfTI file.
    """
    if img is None:
        raise TypeError(
            "input should be a NiftiLike object or an iterable of NiftiLike object. "
            f"Got: NoneType ({name})"
        )
    if isinstance(img, (str, os.PathLike)):
        out = _load_path(img, name)
    elif isinstance(img, nib.spatialimages.SpatialImage):
        out = img
    elif isinstance(img, Iterable) and not isinstance(img, (bytes, np.ndarray)):
        items = []
        for item in img:
            # Only images, paths and (nested) lists of them: any other iterable, such as a
            # scipy sparse matrix whose rows are sparse matrices, would recurse forever.
            if not isinstance(item, (str, os.PathLike, nib.spatialimages.SpatialImage, list,
                                     tuple)):
                raise TypeError(
                    "input should be a NiftiLike object or an iterable of NiftiLike object. "
                    f"Got: {type(img).__name__} of {type(item).__name__} ({name})"
                )
            items.append(load_img(item, name=name))
        out = concat_imgs(items, name=name)
    else:
        raise TypeError(
            "input should be a NiftiLike object or an iterable of NiftiLike object. "
            f"Got: {type(img).__name__} ({name})"
        )
    if len(out.shape) < 3 or len(out.shape) > 4:
        raise DimensionError(len(out.shape), ndim or 4, name=name)
    if ndim == 3 and len(out.shape) == 4:
        if out.shape[3] != 1:
            raise DimensionError(4, 3, name=name)
        out = out.slicer[..., 0]
    elif ndim == 4 and len(out.shape) == 3:
        raise DimensionError(3, 4, name=name)
    if atleast_4d and len(out.shape) == 3:
        out = as_4d(out)
    return out


def as_4d(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """Return a 3D image as a single-volume 4D image (data not copied)."""
    if len(img.shape) == 4:
        return img
    data = get_data(img)[..., np.newaxis]
    return img.__class__(data, img.affine, header=img.header)


def concat_imgs(imgs: Sequence[nib.Nifti1Image], *, name: str = "img") -> nib.Nifti1Image:
    """Stack 3D images (or single-volume 4D images) along a fourth axis.

    All images must share shape and affine; the result is float-typed like the inputs and
    F-ordered like data read from a NIfTI file.
    """
    if len(imgs) == 0:
        raise ValueError(f"{name}: an empty list of images was given")
    first = imgs[0]
    vols = []
    for i, im in enumerate(imgs):
        if len(im.shape) == 4:
            if im.shape[3] != 1:
                raise DimensionError(5, 4, name=name)
            im = im.slicer[..., 0]
        if im.shape[:3] != first.shape[:3] or not np.allclose(im.affine, first.affine):
            raise ValueError(f"{name}: image {i} does not have the field of view of image 0")
        vols.append(im)
    dtype = np.result_type(*[v.get_data_dtype() for v in vols])
    out = np.empty((*first.shape[:3], len(vols)), dtype=dtype, order="F")
    for i, v in enumerate(vols):
        out[..., i] = get_data(v)
    return first.__class__(out, first.affine, header=first.header)


def get_data(img: nib.Nifti1Image) -> np.ndarray:
    """Return the image's data array without forcing a dtype (scaled data come as float).

    Reading a file-backed image gives an F-ordered array, which the float32 reductions in
    thresholding and the random walker rely on for parity.
    """
    try:
        return np.asanyarray(img.dataobj)
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError) as exc:
        where = img.get_filename() or "in-memory image"
        raise ValueError(f"{where}: the image data cannot be read ({exc})") from exc


def same_fov(affine_a, shape_a, affine_b, shape_b) -> bool:
    """Whether two grids have the same first three dimensions and (allclose) affines."""
    return tuple(shape_a[:3]) == tuple(shape_b[:3]) and bool(
        np.allclose(np.asarray(affine_a), np.asarray(affine_b))
    )


def imgs_same_fov(a: nib.Nifti1Image, b: nib.Nifti1Image) -> bool:
    """:func:`same_fov` on two images."""
    return same_fov(a.affine, a.shape, b.affine, b.shape)


def check_same_fov(**images: nib.Nifti1Image) -> None:
    """Raise a ValueError listing every pair of images whose grids differ.

    Parameters
    ----------
    **images
        Images keyed by the role used in the message (``maps``, ``mask``, ``data``).
    """
    names = list(images)
    errors = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            ia, ib = images[a], images[b]
            if tuple(ia.shape[:3]) != tuple(ib.shape[:3]):
                errors.append(f"{a} and {b} do not have the same shape")
            if not np.allclose(ia.affine, ib.affine):
                errors.append(f"{a} and {b} do not have the same affine")
    if errors:
        raise ValueError(
            "Following field of view errors were detected:\n"
            + "\n".join(f"- {e}" for e in errors)
        )


def new_img_like(
    ref: nib.Nifti1Image,
    data: np.ndarray,
    affine: np.ndarray | None = None,
    *,
    copy_header: bool = True,
    set_dtype: bool = False,
    value_range: tuple = (None, None),
) -> nib.Nifti1Image:
    """Build an image on ``ref``'s grid and header from ``data``.

    Boolean data become uint8. The copied header gets scaling reset and ``cal_min``/``cal_max``
    set to the data range. With ``set_dtype`` the header's on-disk dtype follows ``data``
    (nilearn keeps the reference dtype, which can double the size of saved float32 regions).
    ``value_range`` gives ``(data.min(), data.max())`` when the caller knows them (None for
    an unknown one), which spares passes over a large array.
    """
    if data.dtype == bool:
        data = data.astype(np.uint8)
    header = None
    if copy_header and ref.header is not None:
        header = ref.header.copy()
        for key in ("scl_slope", "scl_inter", "glmax"):
            if key in header:
                header[key] = 0.0
        if "cal_max" in header:
            low, high = value_range
            if high is None:
                high = np.max(data) if data.size else 0.0
            if low is None:
                low = np.min(data) if data.size else 0.0
            header["cal_max"] = high
            header["cal_min"] = low
    klass = nib.Nifti1Image if isinstance(ref, nib.Nifti1Pair) else ref.__class__
    out = klass(data, ref.affine if affine is None else affine, header=header)
    if set_dtype:
        out.set_data_dtype(data.dtype)
    return out


def bounding_box(nonzero: np.ndarray) -> tuple[slice, slice, slice] | None:
    """Slices of the smallest box holding every True voxel of a 3D array (None if empty)."""
    # One full pass, OR-ing whole planes along the axis of largest stride (the fastest
    # reduction), gives the other two extents; the third comes from the box they span.
    first = int(np.argmax(np.abs(nonzero.strides)))
    others = tuple(a for a in range(3) if a != first)
    plane = nonzero.any(axis=first)
    spans: dict[int, slice] = {}
    for i, axis in enumerate(others):
        span = _span(plane.any(axis=1 - i))
        if span is None:
            return None
        spans[axis] = span
    crop = tuple(spans.get(a, slice(None)) for a in range(3))
    spans[first] = _span(nonzero[crop].any(axis=others))
    return tuple(spans[a] for a in range(3))


def _span(hits: np.ndarray) -> slice | None:
    """Slice from the first to the last True of a 1D array (None if there is none)."""
    where = np.flatnonzero(hits)
    if where.size == 0:
        return None
    return slice(int(where[0]), int(where[-1]) + 1)


def voxel_volume_mm3(affine: np.ndarray) -> float:
    """Volume of one voxel in mm³, ``|det(affine[:3, :3])|`` as the reference computes it."""
    return float(np.abs(np.linalg.det(np.asarray(affine)[:3, :3])))


def voxel_sizes_mm(affine: np.ndarray) -> np.ndarray:
    """Voxel size along each array axis in mm (column norms of ``affine[:3, :3]``)."""
    return np.sqrt(np.sum(np.asarray(affine)[:3, :3] ** 2, axis=0))
