"""Streaming access to 4D BOLD runs, a block of volumes at a time.

Peak memory of everything that reads BOLD data is set by the block size, never by the run
length: blocks come from nibabel's array proxy, which for ``.nii`` files is a memory map and for
``.nii.gz`` files is a gzip stream kept open between blocks (re-opening it for every block would
decompress the run from its start each time).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import nibabel as nib
import numpy as np

#: Default bytes of (unscaled) BOLD data per block.
BLOCK_BYTES = 32 * 1024**2


@dataclass(frozen=True)
class BoldInfo:
    """What is known about a run without reading its data.

    Attributes
    ----------
    shape : tuple of int
        ``(x, y, z, n_volumes)``; a 3D image has ``n_volumes == 1`` and ``is_3d``.
    affine : ndarray, shape (4, 4)
    dtype : numpy.dtype
        dtype of the data as nibabel returns it (float64 when the header scales the data).
    is_3d : bool
    """

    shape: tuple[int, int, int, int]
    affine: np.ndarray
    dtype: np.dtype
    is_3d: bool


def open_bold(img) -> nib.Nifti1Image:
    """Return ``img`` re-opened with a persistent file handle when it is a gzipped file.

    In-memory images and uncompressed files are returned as they are.
    """
    filename = img.get_filename() if hasattr(img, "get_filename") else None
    if (
        filename
        and str(filename).endswith(".gz")
        and isinstance(img.dataobj, nib.arrayproxy.ArrayProxy)
    ):
        return nib.load(filename, keep_file_open=True)
    return img


def bold_info(img: nib.Nifti1Image) -> BoldInfo:
    """Shape, affine and effective dtype of a 3D or 4D image."""
    shape = tuple(int(n) for n in img.shape)
    if len(shape) not in (3, 4):
        raise ValueError(
            f"{img.get_filename() or 'image'}: a BOLD run must be 3D or 4D, got {len(shape)}D"
        )
    dataobj = img.dataobj
    if isinstance(dataobj, nib.arrayproxy.ArrayProxy):
        # nibabel returns scaled data as float64 (unscaled files carry slope 1, inter 0).
        scaled = (dataobj.slope, dataobj.inter) != (1.0, 0.0)
        dtype = np.dtype(np.float64) if scaled else np.dtype(dataobj.dtype)
    elif hasattr(dataobj, "dtype"):
        # Arrays and other proxies: never read the data just to learn its dtype.
        dtype = np.dtype(dataobj.dtype)
    else:
        dtype = np.asarray(dataobj).dtype
    is_3d = len(shape) == 3
    return BoldInfo(
        shape=shape + (1,) if is_3d else shape,
        affine=np.asarray(img.affine, dtype=float),
        dtype=dtype,
        is_3d=is_3d,
    )


def block_volumes(
    shape: tuple[int, ...], itemsize: int, block_bytes: int | None = None
) -> int:
    """Number of volumes per block so that a block holds about ``block_bytes``.

    ``block_bytes`` defaults to :data:`BLOCK_BYTES`, read at call time (so it can be tuned).
    """
    if block_bytes is None:
        block_bytes = BLOCK_BYTES
    per_volume = int(np.prod(shape[:3])) * itemsize
    return max(1, int(block_bytes // max(per_volume, 1)))


def _raw_layout(img):
    """``(path, offset, dtype, shape)`` when blocks can be read straight from the file.

    That is an unscaled, Fortran-ordered NIfTI file behind a nibabel array proxy: consecutive
    volumes are then consecutive bytes. Anything else (scaled data, in-memory images) goes
    through the proxy's slicing.
    """
    proxy = img.dataobj
    if not isinstance(proxy, nib.arrayproxy.ArrayProxy):
        return None
    if (proxy.slope, proxy.inter) != (1.0, 0.0) or getattr(proxy, "order", "F") != "F":
        return None
    if not isinstance(proxy.file_like, (str, os.PathLike)):
        return None
    return proxy.file_like, int(proxy.offset), np.dtype(proxy.dtype), tuple(proxy.shape)


def _read_exactly(fobj, view: memoryview) -> int:
    """Fill ``view`` from ``fobj`` (gzip streams may return short reads); bytes read."""
    done = 0
    while done < len(view):
        got = fobj.readinto(view[done:])
        if not got:
            break
        done += got
    return done


def _iter_raw_blocks(path, offset, dtype, shape, volumes, name):
    """Blocks read into one reused buffer, sequentially (no allocation per block)."""
    voxels = int(np.prod(shape[:3]))
    n = shape[3] if len(shape) == 4 else 1
    buffer = np.empty(voxels * min(volumes, n), dtype=dtype)
    with nib.openers.ImageOpener(path, "rb") as opener:
        fobj = getattr(opener, "fobj", opener)
        fobj.seek(offset)
        for start in range(0, n, volumes):
            count = min(volumes, n - start)
            view = buffer[: voxels * count]
            try:
                got = _read_exactly(fobj, memoryview(view).cast("B"))
            except (OSError, EOFError, zlib.error) as exc:
                got, error = -1, exc
            if got != view.nbytes:
                reason = "the file ends early" if got >= 0 else str(error)
                raise ValueError(
                    f"{name}: cannot read volumes {start}-{start + count - 1} (truncated or "
                    f"corrupt file: {reason})"
                )
            yield start, view.reshape(tuple(shape[:3]) + (count,), order="F")


def iter_blocks(
    img: nib.Nifti1Image, *, volumes: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first_volume, data)`` with ``data`` of shape (x, y, z, n) for consecutive blocks.

    Unscaled NIfTI files are read straight into one buffer that is reused for every block, so
    a consumer must copy a block it wants to keep. Other images are sliced through nibabel's
    array proxy.

    Parameters
    ----------
    img : nibabel image, 3D or 4D
    volumes : int, optional
        Volumes per block; default from :data:`BLOCK_BYTES`.
    """
    info = bold_info(img)
    n = info.shape[3]
    if volumes is None:
        volumes = block_volumes(info.shape, info.dtype.itemsize)
    name = img.get_filename() or "in-memory image"
    raw = _raw_layout(img)
    if raw is not None:
        yield from _iter_raw_blocks(*raw, volumes, name)
        return
    img = open_bold(img)
    dataobj = img.dataobj
    for start in range(0, n, volumes):
        stop = min(start + volumes, n)
        try:
            if info.is_3d:
                block = np.asanyarray(dataobj)[..., np.newaxis]
            else:
                block = np.asanyarray(dataobj[..., start:stop])
        except (OSError, EOFError, ValueError, zlib.error) as exc:
            raise ValueError(
                f"{name}: cannot read volumes {start}-{stop - 1} (truncated or corrupt file: "
                f"{exc})"
            ) from exc
        yield start, block
