"""Fixtures shared across the test suite (keep this file small: module-specific helpers live
in their test module)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from bids_regionx.synthetic.maps import grid_affine, ica_like_maps


@pytest.fixture
def rng() -> np.random.Generator:
    """Seeded random generator (a fresh one per test, so tests do not depend on order).

    Returns
    -------
    numpy.random.Generator
    """
    return np.random.default_rng(42)


@pytest.fixture
def small_maps_img() -> nib.Nifti1Image:
    """Small signed ICA-like maps: 4 float32 maps on a 20 x 21 x 22 grid of 2 mm voxels.

    Big enough for both extractors to find regions with ``min_region_size=10`` mm³, small
    enough for a fit in a few milliseconds.

    Returns
    -------
    nibabel.Nifti1Image
        4D, shape (20, 21, 22, 4), F-ordered float32 data.
    """
    shape = (20, 21, 22)
    data = ica_like_maps(shape, 4, seed=0, sigma_range=(1.5, 3.0))
    return nib.Nifti1Image(data, grid_affine((2.0, 2.0, 2.0), shape))


#: Library caches ``main`` would otherwise put under the work dir (or $HOME).
CACHE_VARIABLES = ("MPLCONFIGDIR", "NIPYPE_CONFIG_DIR", "XDG_CACHE_HOME", "JOBLIB_TEMP_FOLDER")
ONE_BLAS_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def app_env(tmp_path_factory):
    """Environment for running the app in tests: caches in a temporary folder, one BLAS thread
    (as the Makefile sets), no update checks. ``main`` only sets these when unset, so these
    values win, and they are undone at the end of the module."""
    cache = tmp_path_factory.mktemp("caches")
    with pytest.MonkeyPatch.context() as mp:
        for var in CACHE_VARIABLES:
            (cache / var.lower()).mkdir()
            mp.setenv(var, str(cache / var.lower()))
        for var, value in {**ONE_BLAS_THREAD, "NIPYPE_NO_ET": "1", "NO_ET": "1"}.items():
            mp.setenv(var, value)
        yield
