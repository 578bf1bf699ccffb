"""Sample masks (volume censoring / scrubbing) for :func:`bids_regionx.core.signal.clean`.

A sample mask says which volumes (rows of a ``(n_samples, n_features)`` signal array) are kept.
It is given either as indices of the kept volumes or as a boolean array that is True for kept
volumes, and is applied in one of two ways:

* without Butterworth filtering the kept rows are simply selected (order and duplicates as
  given), in both modes;
* with Butterworth filtering the censored rows are first replaced by a cubic-spline
  interpolation through the kept rows (the filter needs evenly sampled data), the whole series
  is filtered and the kept rows are selected afterwards.

Two modes exist for the second case:

``"correct"`` (default)
    Every censored row is interpolated. Without extrapolation the censored rows before the first
    and after the last kept row cannot be interpolated; they are dropped before filtering and the
    mask is shifted by the number of leading rows dropped, so the rows returned are exactly the
    kept rows.
``"nilearn"``
    Reproduces nilearn 0.14.1 bit for bit, including its bugs: rows are updated through a
    bitwise-NOT of the kept indices (``~k`` is row ``n - 1 - k``), so only censored rows whose
    mirror row is kept are interpolated and kept rows are overwritten by spline values; rows that
    are entirely NaN afterwards are dropped; and the mask is shifted by its first index whether or
    not that many leading rows were dropped.

The two modes agree when every censored row ``r`` has its mirror ``n - 1 - r`` kept, e.g. when
only the first few (< n/2) non-steady-state volumes are censored.

Unlike nilearn, the caller's array is never modified (nilearn shifts an int32 mask in place).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy.interpolate import CubicSpline

from bids_regionx.core.errors import AllVolumesRemovedError

__all__ = [
    "SAMPLE_MASK_MODES",
    "censor",
    "check_sample_masks",
    "interpolate_censored",
    "sanitize_sample_mask",
]

SampleMaskMode = Literal["correct", "nilearn"]
SAMPLE_MASK_MODES: tuple[str, ...] = ("correct", "nilearn")

_INT32_MAX = np.iinfo(np.int32).max


def check_sample_mask_mode(mode: str) -> str:
    """Validate ``sample_mask_mode`` ("correct" or "nilearn") and return it."""
    if not isinstance(mode, str) or mode not in SAMPLE_MASK_MODES:
        raise ValueError(
            f"'sample_mask_mode' must be one of {list(SAMPLE_MASK_MODES)}; got {mode!r}."
        )
    return mode


def _is_all_boolean(mask) -> bool:
    """True when every element of ``mask`` is a Python or NumPy bool (True for empty input).

    Mirrors nilearn's element-wise type test, so a list mixing booleans and integers is read as
    indices. Arrays are decided from their dtype instead of a Python loop.
    """
    if isinstance(mask, np.ndarray) and mask.dtype != object:
        return mask.dtype == np.bool_ or mask.size == 0
    # Iterating also raises nilearn's TypeError ("'int' object is not iterable") when a plain
    # list of ints was given: it is read as a list of runs, each of which must be iterable.
    return all(type(item) is bool or type(item) is np.bool_ for item in mask)


def _to_index_array(mask, run: int, n_runs: int, n_samples: int | None) -> np.ndarray:
    """Convert one run's mask to a fresh 1D int32 array of kept indices."""
    if _is_all_boolean(mask):
        boolean = np.asarray(mask, dtype=bool)
        if boolean.ndim != 1:
            raise ValueError(
                f"sample_mask {run + 1} of {n_runs} must be one-dimensional; "
                f"got an array of shape {boolean.shape}."
            )
        if n_samples is not None and boolean.size not in (0, n_samples):
            # nilearn silently reads a boolean mask of the wrong length as the indices of its
            # True entries, which shifts or truncates the censoring; refuse it instead.
            raise ValueError(
                f"boolean sample_mask {run + 1} of {n_runs} has {boolean.size} entries but "
                f"the run has {n_samples} volumes."
            )
        mask = np.flatnonzero(boolean)
    values = np.asarray(mask)
    if values.ndim != 1:
        raise ValueError(
            f"sample_mask {run + 1} of {n_runs} must be one-dimensional (indices or booleans); "
            f"got an array of shape {values.shape}."
        )
    if values.size == 0:
        # nilearn fails here with numpy's "zero-size array to reduction operation minimum";
        # the dedicated error says what happened.
        raise AllVolumesRemovedError()
    if np.min(values) < 0:
        raise ValueError("sample_mask should not contain negative values.")
    highest = np.max(values)
    if highest > _INT32_MAX:
        raise ValueError(
            f"Max value in sample mask is larger than what can be represented by int32: {highest}."
        )
    # np.array (not asarray) so the caller's int32 array is never aliased and never mutated.
    return np.array(values, dtype=np.int32)


def check_sample_masks(
    sample_mask, n_runs: int, *, run_lengths: Sequence[int] | None = None
) -> list[np.ndarray]:
    """Convert a sample mask (one per run) to a list of int32 index arrays.

    Parameters
    ----------
    sample_mask : ndarray, or list/tuple of array-like
        A 1D array of kept indices or a boolean array (True = kept), or a list/tuple holding one
        such array per run. A plain list of ints is read as a list of runs and raises TypeError
        like nilearn; wrap it (``[[1, 2, 4]]``) or pass an array.
    n_runs : int
        Number of runs the masks must match.
    run_lengths : sequence of int, optional
        Number of volumes of each run, used to check boolean mask lengths.

    Returns
    -------
    list of ndarray, each of shape (n_kept,) and dtype int32
        New arrays; the input is never modified.
    """
    if isinstance(sample_mask, bool) or not isinstance(sample_mask, (list, tuple, np.ndarray)):
        raise TypeError(
            "'sample_masks' must be of type(s): "
            "'<class 'list'>, <class 'tuple'>, <class 'numpy.ndarray'>'.\n"
            f"Got: '{sample_mask.__class__.__name__}'"
        )
    masks = (sample_mask,) if isinstance(sample_mask, np.ndarray) else sample_mask
    n_given = len(masks)
    checked = []
    for run, mask in enumerate(masks):
        n_samples = None
        if run_lengths is not None and n_given == n_runs:
            n_samples = run_lengths[run]
        checked.append(_to_index_array(mask, run, n_given, n_samples))
    if len(checked) != n_runs:
        raise ValueError(
            f"Number of sample_mask ({len(checked)}) not matching number of runs ({n_runs})."
        )
    return checked


def _check_indices(mask: np.ndarray, run: int, n_runs: int, n_samples: int) -> None:
    """Raise nilearn's IndexErrors for a mask longer than the run or with invalid indices."""
    if mask.size > n_samples:
        raise IndexError(
            f"sample_mask {run + 1} of {n_runs} is has more timepoints than the current run "
            f";sample_mask contains {mask.size} index but the run has {n_samples} timepoints."
        )
    # nilearn tests `> n_samples`, so index n_samples slips through and fails later inside
    # numpy; `>=` reports it with the same message instead.
    invalid = mask[mask >= n_samples]
    if invalid.size > 0:
        raise IndexError(
            f"sample_mask {run + 1} of {n_runs} contains invalid index {invalid}. "
            f"The signal contains {n_samples} time points."
        )


def sanitize_sample_mask(
    sample_mask, n_samples: int, *, runs: np.ndarray | None = None
) -> list[np.ndarray] | None:
    """Validate a sample mask against the signal length and runs.

    Parameters
    ----------
    sample_mask : None, ndarray, or list/tuple of array-like
        See :func:`check_sample_masks`.
    n_samples : int
        Number of volumes of the whole signal.
    runs : ndarray of shape (n_samples,), optional
        Run label of each volume. Masks are matched to runs in sorted label order.

    Returns
    -------
    list of ndarray (int32), one per run, or None
    """
    if sample_mask is None:
        return None
    if runs is None:
        labels, lengths = np.zeros(1), [n_samples]
    else:
        labels, counts = np.unique(np.asarray(runs), return_counts=True)
        lengths = [int(c) for c in counts]
    masks = check_sample_masks(sample_mask, len(labels), run_lengths=lengths)
    for run, (mask, length) in enumerate(zip(masks, lengths, strict=True)):
        _check_indices(mask, run, len(masks), length)
    return masks


def censor(
    signals: np.ndarray, confounds: np.ndarray | None, sample_mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """Keep the rows ``sample_mask`` of signals and confounds (order and repeats as given)."""
    signals = signals[sample_mask, :]
    if confounds is not None:
        confounds = confounds[sample_mask, :]
    return signals, confounds


def _spline(volumes: np.ndarray, sample_mask: np.ndarray, t_r, extrapolate: bool):
    """Frame times (s) and the not-a-knot cubic spline through the kept rows (float64)."""
    # Same expression as nilearn (int64 arange times t_r) so the knots are bit-identical.
    frame_times = np.arange(volumes.shape[0]) * t_r
    try:
        spline = CubicSpline(
            frame_times[sample_mask], volumes[sample_mask, :], extrapolate=extrapolate
        )
    except ValueError as exc:
        raise ValueError(
            "sample_mask: interpolating censored volumes before Butterworth filtering needs at "
            f"least 2 kept volumes in strictly increasing order ({exc})"
        ) from exc
    return frame_times, spline


def _interpolate_nilearn(volumes: np.ndarray, sample_mask: np.ndarray, t_r, extrapolate: bool):
    """nilearn 0.14.1's interpolation, quirks included (updates rows ``~k``, in place)."""
    frame_times, spline = _spline(volumes, sample_mask, t_r, extrapolate)
    interpolated = spline(frame_times)
    mirror = ~sample_mask  # -k - 1, i.e. row n - 1 - k: nilearn's bug, reproduced on purpose
    volumes[mirror, :] = interpolated[mirror, :]
    # Rows outside the kept range become NaN when not extrapolating; nilearn drops every row that
    # is NaN in all columns (signals and confounds separately).
    return volumes[~np.isnan(volumes).all(axis=1), :]


def _interpolate_correct(
    volumes: np.ndarray, sample_mask: np.ndarray, t_r, extrapolate: bool
) -> np.ndarray:
    """Interpolate every censored row (in place); trim unreachable ends unless extrapolating."""
    frame_times, spline = _spline(volumes, sample_mask, t_r, extrapolate)
    censored = np.ones(volumes.shape[0], dtype=bool)
    censored[sample_mask] = False
    if not extrapolate:
        # Only rows between the first and last kept row can be interpolated.
        censored[: sample_mask[0]] = False
        censored[sample_mask[-1] + 1 :] = False
    if censored.any():
        # Evaluating the spline only where needed gives the same values as evaluating it
        # everywhere (each point is independent); kept rows keep their exact input values.
        volumes[censored, :] = spline(frame_times[censored])
    if not extrapolate:
        volumes = volumes[sample_mask[0] : sample_mask[-1] + 1, :]
    return volumes


def interpolate_censored(
    signals: np.ndarray,
    confounds: np.ndarray | None,
    sample_mask: np.ndarray,
    *,
    t_r: float,
    extrapolate: bool = False,
    mode: SampleMaskMode = "correct",
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Fill censored volumes by cubic-spline interpolation before Butterworth filtering.

    Parameters
    ----------
    signals : ndarray, shape (n_samples, n_features)
        Modified in place (pass a private copy).
    confounds : ndarray, shape (n_samples, n_confounds), or None
        Modified in place (pass a private copy).
    sample_mask : ndarray, shape (n_kept,), int32
        Kept indices, strictly increasing. Not modified.
    t_r : float
        Repetition time in s (only the spacing of the knots matters).
    extrapolate : bool
        Extrapolate the censored volumes before the first / after the last kept volume instead
        of dropping them.
    mode : {"correct", "nilearn"}
        See the module docstring.

    Returns
    -------
    signals : ndarray, shape (n_samples', n_features)
    confounds : ndarray, shape (n_samples', n_confounds), or None
    sample_mask : ndarray, shape (n_kept,)
        A new array: the rows to keep after filtering, relative to the returned arrays.
    """
    if sample_mask.size == 0:
        raise AllVolumesRemovedError()
    interpolate = _interpolate_nilearn if mode == "nilearn" else _interpolate_correct
    signals = interpolate(signals, sample_mask, t_r, extrapolate)
    if confounds is not None:
        confounds = interpolate(confounds, sample_mask, t_r, extrapolate)
    if not extrapolate:
        # Both modes shift by the first kept index (a new array: the caller's is left alone).
        # That is exactly the number of leading rows dropped in "correct" mode; in "nilearn"
        # mode it is wrong whenever those rows were not NaN-dropped (their mirrors were censored).
        sample_mask = sample_mask - sample_mask[0]
    return signals, confounds, sample_mask
