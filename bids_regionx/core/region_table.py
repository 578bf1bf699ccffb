"""Names and descriptive statistics of extracted regions (the BIDS-Atlas look-up table)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from bids_regionx.core.images import voxel_volume_mm3


def region_names(index: Sequence[int], map_names: Sequence[str]) -> list[str]:
    """One name per region: the parent map's name and the region's rank within that map.

    ``index=[0, 0, 2]`` with maps ``["dmn", "motor", "visual"]`` gives
    ``["dmn_1", "dmn_2", "visual_1"]``.
    """
    counts: dict[int, int] = {}
    names = []
    for k in index:
        counts[k] = counts.get(k, 0) + 1
        names.append(f"{map_names[k]}_{counts[k]}")
    return names


def _world(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    return affine[:3, :3] @ ijk + affine[:3, 3]


def region_table(
    regions: np.ndarray,
    affine: np.ndarray,
    index: Sequence[int],
    map_names: Sequence[str],
) -> pd.DataFrame:
    """Look-up table of a region set.

    Parameters
    ----------
    regions : ndarray, shape (x, y, z, n_regions)
        One region per volume (values from the parent map, 0 elsewhere).
    affine : ndarray, shape (4, 4)
        Voxel-to-mm affine.
    index : sequence of int, length n_regions
        Parent map of each region.
    map_names : sequence of str
        Name of each map.

    Returns
    -------
    DataFrame
        One row per region, volume order: ``index`` (1-based, the region's volume number + 1),
        ``name``, ``map_index`` (0-based parent map), ``map_name``, ``n_voxels``,
        ``volume_mm3``, ``peak_x``/``peak_y``/``peak_z`` (mm, voxel of largest ``|value|``, first
        in C order on ties), ``peak_value`` (signed), ``centre_x``/``centre_y``/``centre_z``
        (mm, centre of mass of ``|value|``).
    """
    affine = np.asarray(affine, dtype=float)
    voxel_mm3 = voxel_volume_mm3(affine)
    names = region_names(index, map_names)
    rows = []
    for r in range(regions.shape[3]):
        vol = np.asarray(regions[..., r], dtype=np.float64)
        weight = np.abs(vol)
        n_voxels = int(np.count_nonzero(vol))
        peak = np.unravel_index(int(np.argmax(weight)), vol.shape)
        total = weight.sum()
        if total > 0:
            grids = np.indices(vol.shape, sparse=True)
            centre_ijk = np.array([(g * weight).sum() / total for g in grids])
        else:
            centre_ijk = np.full(3, np.nan)
        peak_mm = _world(affine, np.asarray(peak, dtype=float))
        centre_mm = _world(affine, centre_ijk)
        rows.append(
            {
                "index": r + 1,
                "name": names[r],
                "map_index": int(index[r]),
                "map_name": map_names[index[r]],
                "n_voxels": n_voxels,
                "volume_mm3": round(n_voxels * voxel_mm3, 3),
                "peak_x": round(float(peak_mm[0]), 3),
                "peak_y": round(float(peak_mm[1]), 3),
                "peak_z": round(float(peak_mm[2]), 3),
                "peak_value": float(vol[peak]),
                "centre_x": round(float(centre_mm[0]), 3),
                "centre_y": round(float(centre_mm[1]), 3),
                "centre_z": round(float(centre_mm[2]), 3),
            }
        )
    return pd.DataFrame(rows)
