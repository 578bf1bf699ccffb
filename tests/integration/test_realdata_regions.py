"""Regions of a real ICA decomposition, bit for bit against nilearn.

``../shared/realdata/maps/canica_resting_state.nii.gz`` (see its PROVENANCE.md) is a real CanICA
decomposition: 20 signed float64 components on the 4 mm MNI grid, about 1 % non-zero, read from
``.nii.gz`` (F-ordered). The unit suite's parity grid runs on generated maps; this checks that
real components give the same ``regions_img_`` bytes and ``index_`` as nilearn, with the random
walker (``local_regions``) and with connected components, for each thresholding strategy.

``make integration``; ``BIDS_REGIONX_REALDATA`` overrides the data folder.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nilearn.regions import RegionExtractor as NilearnRegionExtractor

from bids_regionx import RegionExtractor

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
REALDATA = Path(os.environ.get("BIDS_REGIONX_REALDATA", REPO.parent / "shared" / "realdata"))
MAPS = REALDATA / "maps" / "canica_resting_state.nii.gz"

CASES = [
    {"extractor": "local_regions"},
    {"extractor": "connected_components"},
    {"extractor": "local_regions", "threshold": 2.0, "smoothing_fwhm": 4},
    {"extractor": "local_regions", "thresholding_strategy": "img_value", "threshold": 0.02,
     "two_sided": True},
    {"extractor": "local_regions", "thresholding_strategy": "percentile", "threshold": 90,
     "min_region_size": 500},
    {"extractor": "connected_components", "thresholding_strategy": "img_value",
     "threshold": 0.02},
]


@pytest.fixture(scope="module")
def maps():
    if not MAPS.exists():
        pytest.skip(f"{MAPS} not found (set BIDS_REGIONX_REALDATA)")
    return nib.load(MAPS)


@pytest.mark.parametrize("params", CASES, ids=lambda p: "-".join(f"{v}" for v in p.values()))
def test_real_canica_regions_equal_nilearn(maps, params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = NilearnRegionExtractor(maps, **params).fit()
        ours = RegionExtractor(maps, **params).fit()
    assert list(ours.index_) == list(expected.index_)
    ours_data = np.asanyarray(ours.regions_img_.dataobj)
    expected_data = np.asanyarray(expected.regions_img_.dataobj)
    assert ours_data.shape == expected_data.shape
    assert ours_data.shape[-1] > 20  # the components do split into regions
    assert ours_data.tobytes() == expected_data.tobytes()  # signed zeros included
