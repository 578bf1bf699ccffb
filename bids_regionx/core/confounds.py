"""Confound regressors: loading/validation and high-variance ("CompCor-like") confounds.

:func:`load_confounds` accepts what ``nilearn.signal.clean`` accepts, with nilearn's errors, and
in addition refuses non-finite values with a message naming the columns (nilearn fails later,
inside scipy's QR, with "array must not contain infs or NaNs").
:func:`high_variance_confounds` is ``nilearn.signal.high_variance_confounds`` (0.14.1) bit for bit
on a 2D array; for a 4D run, streamed, see :mod:`bids_regionx.core.high_variance`.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import linalg

__all__ = [
    "high_variance_confounds",
    "load_confounds",
]

# Type names in the order and spelling of nilearn's TypeError message.
_ALLOWED_TYPE_NAMES = (
    "<class 'list'>, <class 'tuple'>, <class 'str'>, <class 'numpy.ndarray'>, "
    "<class 'pandas.DataFrame'>"
)


def _is_dataframe(obj) -> bool:
    # A DataFrame can only exist if pandas was imported: avoid importing it ourselves.
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(obj, pandas.DataFrame)


def _read_delimited(path: str, **kwargs) -> np.ndarray:
    """Read a numeric text table, guessing the delimiter like nilearn's ``csv_to_array``."""
    try:
        # Whitespace-delimited first (also covers TSV).
        return np.genfromtxt(path, loose=False, encoding=None, **kwargs)
    except ValueError:
        pass
    try:
        with Path(path).open() as handle:
            dialect = csv.Sniffer().sniff(handle.readline(), " \t,;")
    except csv.Error as exc:
        raise TypeError(f"Could not read CSV file [{path}]: {exc.args[0]}") from exc
    return np.genfromtxt(path, delimiter=dialect.delimiter, encoding=None, **kwargs)


def _header_names(path: str, n_columns: int) -> list[str | None]:
    """Column names from a header line (best effort; only used in error messages)."""
    with Path(path).open() as handle:
        line = handle.readline().rstrip("\r\n")
    for delimiter in ("\t", ",", ";", None):
        tokens = [token.strip().strip("\"'") for token in line.split(delimiter)]
        if len(tokens) == n_columns:
            return [token or None for token in tokens]
    return [None] * n_columns


def _load_one(confound, n_samples: int) -> tuple[np.ndarray, list[str | None]]:
    """One confound element -> (2D array, column names or None)."""
    names: list[str | None] | None = None
    if _is_dataframe(confound):
        names = [str(column) for column in confound.columns]
        confound = confound.to_numpy()
    if isinstance(confound, (str, Path)):
        path = os.fspath(confound)
        confound = _read_delimited(path)
        header = bool(confound.size) and np.isnan(confound.flat[0])
        if header:
            confound = _read_delimited(path, skip_header=1)
        if confound.shape[0] != n_samples:
            raise ValueError(
                "Confound signal has an incorrect length. \n"
                f"Signal length: {n_samples}; confound length: {confound.shape[0]}"
            )
        if confound.ndim == 1:
            # A single-column file (nilearn crashes on it): make it a column.
            confound = confound[:, np.newaxis]
        if header:
            names = _header_names(path, confound.shape[1])
    elif isinstance(confound, np.ndarray):
        if confound.ndim == 1:
            confound = np.atleast_2d(confound).T
        elif confound.ndim != 2:
            raise ValueError(
                f"confound array has an incorrect number of dimensions: {confound.ndim}"
            )
        if confound.shape[0] != n_samples:
            raise ValueError(
                "Confound signal has an incorrect length. "
                f"Signal length: {n_samples}; confound length: {confound.shape[0]}."
            )
    else:
        raise TypeError(f"confound has an unhandled type: {confound.__class__}")
    if names is None or len(names) != confound.shape[1]:
        names = [None] * confound.shape[1]
    return confound, names


def _check_finite(confounds: np.ndarray, names: Sequence[str | None]) -> None:
    bad = ~np.isfinite(confounds)
    if not bad.any():
        return
    described = []
    for column in np.flatnonzero(bad.any(axis=0)):
        rows = np.flatnonzero(bad[:, column])
        label = f"column {column}" + (f" ({names[column]!r})" if names[column] else "")
        shown = ", ".join(str(row) for row in rows[:5]) + (", ..." if rows.size > 5 else "")
        described.append(f"{label}: {rows.size} value(s) at row(s) [{shown}]")
    raise ValueError(
        "confounds contain NaN or inf values, which cannot be regressed out: "
        + "; ".join(described)
        + ". Fill or drop them first (fMRIPrep writes 'n/a' in the first row of derivative "
        "and framewise_displacement columns)."
    )


def load_confounds(confounds, n_samples: int) -> np.ndarray | None:
    """Load and check confound regressors, stacking several sources column-wise.

    Parameters
    ----------
    confounds : ndarray, pandas.DataFrame, str, os.PathLike, list/tuple of these, or None
        * ndarray: shape (n_samples,) or (n_samples, n_confounds);
        * DataFrame: its values (the column names are used in error messages);
        * str / Path: a whitespace-, tab-, comma- or semicolon-delimited text file, with an
          optional one-line header (detected by a non-numeric first value). An index column
          written by ``DataFrame.to_csv`` is kept as a confound, as in nilearn.
        * list/tuple: each element as above, stacked in order.
    n_samples : int
        Number of time points; every source must have that many rows.

    Returns
    -------
    ndarray, shape (n_samples, n_confounds), or None
        A new float array: float dtypes are kept, integer data become float64 (8-byte types)
        or float32.

    Raises
    ------
    TypeError
        Unsupported type ("'confounds' must be of type(s) ..." / "confound has an unhandled
        type").
    ValueError
        Wrong number of rows ("Confound signal has an incorrect length"), an array with more
        than two dimensions, or NaN/inf values (the message names the columns).
    FileNotFoundError
        A path that does not exist.
    """
    if confounds is None:
        return None
    if isinstance(confounds, os.PathLike):
        confounds = os.fspath(confounds)
    if not (isinstance(confounds, (list, tuple, str, np.ndarray)) or _is_dataframe(confounds)):
        raise TypeError(
            f"'confounds' must be of type(s): '{_ALLOWED_TYPE_NAMES}'.\n"
            f"Got: '{confounds.__class__.__name__}'"
        )
    items = confounds if isinstance(confounds, (list, tuple)) else (confounds,)
    arrays, names = [], []
    for item in items:
        array, item_names = _load_one(item, n_samples)
        arrays.append(array)
        names.extend(item_names)
    # np.hstack keeps an F layout (DataFrame values are F-ordered); later steps depend on it for
    # bit-identical results, so no layout change here.
    stacked = np.hstack(arrays)
    if stacked.dtype.kind != "f":
        stacked = stacked.astype(np.float64 if stacked.dtype.itemsize == 8 else np.float32)
    _check_finite(stacked, names)
    return stacked


def _leading_eigenvectors(series: np.ndarray, n_confounds: int) -> np.ndarray:
    """Eigenvectors of ``series series^T / n_samples`` for the ``n_confounds`` largest
    eigenvalues (symmetric solver: more stable than an SVD of ``series``)."""
    values, vectors = linalg.eigh(series.dot(series.T) / series.shape[0])
    order = np.argsort(values)[::-1]
    return vectors[:, order[:n_confounds]].copy()


def _check_detrend(detrend) -> None:
    if not isinstance(detrend, bool):
        raise TypeError(
            f"'detrend' must be of type(s): '<class 'bool'>'.\nGot: '{detrend.__class__.__name__}'"
        )


def high_variance_confounds(
    series: np.ndarray,
    *,
    n_confounds: int = 5,
    percentile: float = 2.0,
    detrend: bool = True,
) -> np.ndarray:
    """Principal time courses of the highest-variance features.

    1. Optionally detrend every column (a copy; the layout is kept).
    2. Mean of squares per column (no mean removal); keep the columns strictly above the
       ``100 - percentile`` percentile (NaN columns are ignored).
    3. Return the ``n_confounds`` leading eigenvectors of ``X X^T / n_samples`` of those columns.

    Parameters
    ----------
    series : ndarray, shape (n_samples, n_features)
        Not modified. nilearn's image variant passes an F-ordered array; the layout changes
        float32 rounding, so pass the same one for parity.
    n_confounds : int
    percentile : float
        Percentage (0-100) of highest-variance features kept.
    detrend : bool

    Returns
    -------
    ndarray, shape (n_samples, n_confounds)
        In the series' float dtype. Signs are arbitrary (LAPACK's).
    """
    from bids_regionx.core.signal import detrend as detrend_columns
    from bids_regionx.core.signal import mean_of_squares

    _check_detrend(detrend)
    if not isinstance(series, np.ndarray):
        series = np.asarray(series)
    if detrend:
        series = detrend_columns(series)
    variance = mean_of_squares(series)
    threshold = np.nanpercentile(variance, 100.0 - percentile)
    return _leading_eigenvectors(series[:, variance > threshold], n_confounds)
