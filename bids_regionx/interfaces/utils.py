"""Small helpers shared by the interfaces."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager

import nibabel as nib


def node_path(runtime, name: str) -> str:
    """Absolute path of an output file in the node's working directory."""
    return os.path.join(runtime.cwd, name)


def save_nifti(img: nib.Nifti1Image, path: str) -> str:
    """Write an image in the node directory and return its path."""
    nib.save(img, path)
    return path


def write_json(path: str, payload) -> str:
    """Deterministic JSON (sorted keys) for node outputs."""
    with open(path, "w") as fh:
        json.dump(payload, fh, indent=2, sort_keys=True, allow_nan=False)
        fh.write("\n")
    return path


def read_json(path: str):
    with open(path) as fh:
        return json.load(fh)


@contextmanager
def blas_single_thread() -> Iterator[None]:
    """Run numerics with a one-thread BLAS.

    Long dot products are split across BLAS threads, so their rounding depends on the thread
    count. Pinning it makes outputs identical whatever machine or ``--nprocs`` runs them, and
    lets the random walker process maps in parallel threads without oversubscription.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield
