"""Concatenating the cleaned runs of a subject (``--combine-runs``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def zscore_columns(timeseries: pd.DataFrame) -> pd.DataFrame:
    """z-score each column over time (ddof=1); constant columns become 0, NaN stays NaN."""
    values = timeseries.to_numpy(dtype=np.float64)
    mean = values.mean(axis=0)
    std = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])
    std[~(std > np.finfo(np.float64).eps)] = 1.0
    return pd.DataFrame((values - mean) / std, columns=timeseries.columns)


def combine_runs(runs: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """z-score each run's region time series and stack them in order.

    Each run is z-scored on its own first, so differences in scale or offset between runs
    (XCP-D does the same since 26.0) do not masquerade as connectivity.

    Parameters
    ----------
    runs : sequence of DataFrame, each (n_volumes_i, n_regions)
        Cleaned time series with the same columns; NaN columns are regions set to n/a.

    Returns
    -------
    DataFrame, shape (sum n_volumes_i, n_regions)
        A region that is n/a in any run is n/a (NaN) in the combined series: a connectome
        must not mix runs with and without a region.
    """
    if not runs:
        raise ValueError("runs: at least one run is needed")
    columns = list(runs[0].columns)
    for i, run in enumerate(runs[1:], start=1):
        if list(run.columns) != columns:
            raise ValueError(f"runs: run {i} does not have the regions of run 0")
    missing = np.zeros(len(columns), dtype=bool)
    for run in runs:
        missing |= run.isna().all(axis=0).to_numpy()
    combined = pd.concat([zscore_columns(run) for run in runs], ignore_index=True)
    combined.loc[:, missing] = np.nan
    return combined
