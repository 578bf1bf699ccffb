"""Signal cleaning: detrending, Butterworth / cosine filtering, confound removal, scrubbing.

:func:`clean` reproduces ``nilearn.signal.clean`` (nilearn 0.14.1) on numpy/scipy: the same
order of operations, dtypes and memory layouts, so results are bit-identical in practice (see
``region-extraction.md`` section 7 and traps 13, 14, 16, 18, 23, 24). Deliberate divergences:

* ``sample_mask`` with Butterworth filtering interpolates every censored volume by default
  (``sample_mask_mode="correct"``); ``sample_mask_mode="nilearn"`` reproduces nilearn's bug.
  The caller's sample mask is never modified. See :mod:`bids_regionx.core.sample_mask`.
* Confounds containing NaN or inf are refused up front with a ValueError naming the columns
  and rows (nilearn fails later inside scipy's QR with "array must not contain infs or NaNs").
* With ``runs``, ``standardize_confounds``, ``extrapolate``, ``sample_mask_mode`` and the
  ``butterworth__*`` options apply to every run (nilearn silently resets them to their defaults).
* Signals must be two-dimensional ``(n_samples, n_features)``.

All arrays are ``(n_samples, n_features)``: time runs down the rows.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import linalg
from scipy import signal as sp_signal

from bids_regionx.core.confounds import load_confounds
from bids_regionx.core.errors import AllVolumesRemovedError
from bids_regionx.core.sample_mask import (
    censor,
    check_sample_mask_mode,
    interpolate_censored,
    sanitize_sample_mask,
)

__all__ = [
    "butterworth",
    "clean",
    "create_cosine_drift",
    "detrend",
    "even_slices",
    "mean_of_squares",
    "standardize_signal",
]

Standardize = Literal["zscore_sample", "psc"] | bool | None
FilterType = Literal["butterworth", "cosine", False]

_EPS64 = np.finfo(np.float64).eps
# Kept as a NumPy float32 scalar: nilearn's Nyquist clipping arithmetic mixes it with Python
# floats, which under NumPy 2 promotion rules yields float32 cut-offs (and messages).
_EPS32 = np.finfo(np.float32).eps
_STANDARDIZE_VALUES = ("zscore_sample", "psc", True, False, None)
_FILTERS = ("butterworth", "cosine")
_SCALAR_TYPES = (float, np.floating, int, np.integer)
_PACKAGE_DIR = str(Path(__file__).resolve().parents[1])


# --------------------------------------------------------------------------------------------
# small utilities


def _stacklevel() -> int:
    """Stack level of the first frame outside bids_regionx, so warnings point at user code."""
    frame = inspect.currentframe()
    level = 0
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(
        _PACKAGE_DIR
    ):
        frame = frame.f_back
        level += 1
    return max(level, 1)


def _warn(message: str, category: type[Warning] = UserWarning) -> None:
    warnings.warn(message, category, stacklevel=_stacklevel())


def _check_bool(value, name: str) -> None:
    # Same test and message as nilearn's parameter validation (np.bool_ is refused too).
    if not isinstance(value, bool):
        raise TypeError(
            f"'{name}' must be of type(s): '<class 'bool'>'.\nGot: '{value.__class__.__name__}'"
        )


def _check_scalar(value, name: str) -> None:
    """Cut-off frequencies (Hz) and t_r (s): a real number or None, but not a bool."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, _SCALAR_TYPES):
        raise TypeError(
            f"'{name}' must be of type(s): "
            "'float | numpy.floating | int | numpy.integer | None'.\n"
            f"Got: '{value.__class__.__name__}'"
        )


def _check_standardize(value) -> None:
    # `in` compares with ==, so 1/0 pass like in nilearn (and fail later, as there).
    if value not in _STANDARDIZE_VALUES:
        raise ValueError(
            f"'standardize' must be one of {_STANDARDIZE_VALUES}.\n'{value}' was provided."
        )


def even_slices(n: int, n_packs: int) -> Iterator[slice]:
    """Split ``range(n)`` into ``n_packs`` contiguous slices whose sizes differ by at most one.

    The first ``n % n_packs`` slices are one longer; empty slices are skipped. This is the
    batching nilearn uses (``sklearn.utils.gen_even_slices``); the batch boundaries change BLAS
    rounding, so they are reproduced exactly.
    """
    start = 0
    for pack in range(n_packs):
        size = n // n_packs + (1 if pack < n % n_packs else 0)
        if size > 0:
            yield slice(start, start + size)
            start += size


def _ensure_float(data: np.ndarray) -> np.ndarray:
    """Integers/bools -> float64 if 8 bytes per item, else float32; float dtypes unchanged."""
    if data.dtype.kind != "f":
        data = data.astype(np.float64 if data.dtype.itemsize == 8 else np.float32)
    return data


def _as_float_array(data, *, copy: bool) -> np.ndarray:
    """float32/float64 arrays are kept (copied in their own C/F layout if ``copy``); other
    dtypes are converted: <= 4-byte ints and bools to float32, anything else to float64.

    These are scikit-learn's ``as_float_array`` rules, which nilearn's detrending uses; keeping
    the F layout of an F-ordered input matters for bit-identical float32 reductions.
    """
    if not isinstance(data, np.ndarray):
        return np.array(data, dtype=np.float64)
    if data.dtype in (np.float32, np.float64):
        if not copy:
            return data
        return data.copy("F" if data.flags.f_contiguous else "C")
    if data.dtype.kind in "uib" and data.dtype.itemsize <= 4:
        return data.astype(np.float32)
    return data.astype(np.float64)


# --------------------------------------------------------------------------------------------
# numerical building blocks


def detrend(
    signals: np.ndarray,
    *,
    inplace: bool = False,
    kind: Literal["linear", "constant"] = "linear",
    n_batches: int = 10,
) -> np.ndarray:
    """Remove the mean and (``kind="linear"``) the least-squares line from every column.

    Parameters
    ----------
    signals : ndarray, shape (n_samples, n_features) or (n_samples,)
        Float32/float64 data keep their dtype; integer data are converted (see
        :func:`_as_float_array`) and then always copied.
    inplace : bool
        Modify ``signals`` instead of a copy (float32/float64 input only).
    kind : {"linear", "constant"}
    n_batches : int
        Number of column batches for the projection when there are at least 500 columns.
        The batch composition changes BLAS rounding in the last ulp, so keep the default for
        parity with nilearn.

    Returns
    -------
    ndarray, same shape
        A length-1 signal is returned unchanged, with a warning.
    """
    if kind not in ("linear", "constant"):
        raise ValueError(f"'kind' must be 'linear' or 'constant'; got {kind!r}.")
    if np.ndim(signals) == 1:
        return detrend(
            np.asarray(signals)[:, np.newaxis], inplace=inplace, kind=kind, n_batches=n_batches
        )[:, 0]
    signals = _as_float_array(signals, copy=not inplace)
    if signals.shape[0] == 1:
        _warn(
            "Detrending of 3D signal has been requested but would lead to zero values. Skipping."
        )
        return signals

    signals -= np.mean(signals, axis=0)
    if kind == "constant":
        return signals
    # A unit-norm, zero-mean ramp in the signals' own dtype (float32 stays float32, as in
    # nilearn: it saves memory and fixes the rounding).
    ramp = np.arange(signals.shape[0], dtype=signals.dtype)
    ramp -= ramp.mean()
    norm = np.sqrt((ramp**2).sum())
    if not norm < _EPS64:
        ramp /= norm
    ramp_column = ramp[:, np.newaxis]
    if signals.shape[1] < 500:
        n_batches = 1
    for batch in even_slices(signals.shape[1], n_batches):
        # Slope of every column of the batch (one gemv), then subtract slope * ramp.
        signals[:, batch] -= np.dot(ramp, signals[:, batch]) * ramp_column
    return signals


def mean_of_squares(signals: np.ndarray, *, n_batches: int = 20) -> np.ndarray:
    """Mean over time of the squared signal, per column (no mean removal).

    Parameters
    ----------
    signals : ndarray, shape (n_samples, n_features)
    n_batches : int
        Column batches (only when there are at least 500 columns) to bound the temporary copy.

    Returns
    -------
    ndarray, shape (n_features,), float64
        Each value is computed in the signals' dtype, then stored as float64.
    """
    if signals.shape[1] < 500:
        n_batches = 1
    result = np.empty(signals.shape[1])
    for batch in even_slices(signals.shape[1], n_batches):
        # np.copy keeps the layout ("K"), so each column is reduced in the same order as in
        # nilearn.
        squared = np.copy(signals[:, batch])
        squared **= 2
        result[batch] = squared.mean(axis=0)
    return result


def standardize_signal(
    signals: np.ndarray,
    *,
    detrend: bool = False,
    standardize: Standardize = "zscore_sample",
) -> np.ndarray:
    """Center and scale every column (time along axis 0). The input is not modified.

    Parameters
    ----------
    signals : ndarray, shape (n_samples, n_features)
    detrend : bool
        Linearly detrend first (see :func:`detrend`).
    standardize : {"zscore_sample", "psc", None} or bool
        ``"zscore_sample"``: subtract the mean, divide by the sample std (ddof=1); a std below
        float64 eps is replaced by 1. ``"psc"``: percent signal change ``100 (x - m) / |m|``;
        columns whose mean ``|m|`` is below float64 eps are set to 0 with a warning. None (or
        False) only copies / detrends; True means ``"zscore_sample"`` (no warning here).

    Returns
    -------
    ndarray, same shape
        A new array (C-ordered unless detrending kept an F layout).
    """
    _check_bool(detrend, "detrend")
    _check_standardize(standardize)
    # ndarray.copy() is C-ordered: nilearn's z-scores are reduced over that layout (trap 13).
    signals = _detrend_columns(signals, inplace=False) if detrend else signals.copy()

    if standardize is False:
        standardize = None
    elif standardize is True:
        standardize = "zscore_sample"
    if standardize is None:
        return signals
    if standardize not in ["psc", "zscore_sample"]:
        raise ValueError(
            "'standardize' must be one of ['psc', 'zscore_sample'].\n"
            f"'{standardize}' was provided."
        )
    if signals.shape[0] == 1:
        _warn(
            "Standardization of 3D signal has been requested but would lead to zero values. "
            "Skipping."
        )
        return signals

    if standardize == "zscore_sample":
        if not detrend:
            signals = signals - signals.mean(axis=0)
        std = signals.std(axis=0, ddof=1)
        std[std < _EPS64] = 1.0  # constant columns: leave them at 0 instead of dividing by 0
        signals /= std
    else:  # psc
        means = signals.mean(axis=0)
        zero_mean = np.absolute(means) < _EPS64
        # Zero-mean columns are zeroed (with a warning) below: no numpy RuntimeWarning for them.
        with np.errstate(divide="ignore", invalid="ignore"):
            signals = (signals - means) / np.absolute(means)
        signals *= 100
        if np.any(zero_mean):
            _warn(
                "psc standardization strategy is meaningless for features that have a mean "
                "of 0. These time series are set to 0."
            )
            signals[:, zero_mean] = 0
    return signals


# `standardize_signal` has a parameter named `detrend`; this alias reaches the function.
_detrend_columns = detrend


def _check_wn(btype: str, freq, nyq):
    """Keep a cut-off strictly inside (0, Nyquist) (scipy is unstable at Nyquist)."""
    if freq >= nyq:
        freq = nyq - (nyq * 10 * _EPS32)
        _warn(
            f"The frequency specified for the {btype} pass filter is too high to be handled "
            "by a digital filter (superior to Nyquist frequency). "
            f"It has been lowered to {freq} (Nyquist frequency)."
        )
    elif freq < 0.0:  # 0 itself is fine
        freq = nyq * _EPS32
        _warn(
            f"The frequency specified for the {btype} pass filter is too low to be handled by "
            f"a digital filter (must be non-negative). It has been set to eps: {freq}."
        )
    return freq


#: Columns filtered per scipy call: bounds the float64 temporaries without changing results.
_FILTER_CHUNK = 256


def butterworth(
    signals: np.ndarray,
    sampling_rate: float,
    *,
    low_pass: float | None = None,
    high_pass: float | None = None,
    order: int = 5,
    padtype: Literal["odd", "even", "constant"] | None = "odd",
    padlen: int | None = None,
    copy: bool = False,
) -> np.ndarray:
    """Zero-phase Butterworth low-, high- or band-pass filter along axis 0.

    Parameters
    ----------
    signals : ndarray, shape (n_samples, n_features) or (n_samples,)
    sampling_rate : float
        Samples per second (Hz), i.e. ``1 / t_r``.
    low_pass, high_pass : float or None
        Cut-off frequencies in Hz. A cut-off at or above Nyquist is lowered just below it and a
        negative one raised to eps, with a warning. ``high_pass >= low_pass`` is an error.
    order : int
        Filter order (second-order sections: ``ceil(order / 2)`` per band edge).
    padtype, padlen
        Edge padding, as :func:`scipy.signal.sosfiltfilt`.
    copy : bool
        False filters ``signals`` in place (keeping its dtype) and returns it. True returns a new
        array, which is float64 like scipy's output.

    Returns
    -------
    ndarray, same shape
    """
    _check_scalar(low_pass, "low_pass")
    _check_scalar(high_pass, "high_pass")
    if low_pass is None and high_pass is None:
        return signals.copy() if copy else signals
    if low_pass is not None and high_pass is not None and high_pass >= low_pass:
        raise ValueError(
            f"High pass cutoff frequency ({high_pass}) is greater than or equal to low pass "
            f"filter frequency ({low_pass}). This case is not handled by this function."
        )

    nyq = sampling_rate * 0.5
    edges = []
    if high_pass is not None:
        btype = "high"
        edges.append(_check_wn(btype, high_pass, nyq))
    if low_pass is not None:
        btype = "low"
        edges.append(_check_wn(btype, low_pass, nyq))
    if len(edges) == 2:
        btype = "band"
        # Both edges clipped to just below Nyquist: scipy refuses equal band edges.
        if edges[0] == edges[1]:
            _warn(
                "Signals are returned unfiltered because band-pass critical frequencies are "
                "equal. Please check that inputs for sampling_rate, low_pass, and high_pass "
                "are valid."
            )
            return signals.copy() if copy else signals
        critical = edges
    else:
        critical = edges[0]

    sos = sp_signal.butter(N=order, Wn=critical, btype=btype, output="sos", fs=sampling_rate)
    options = {"padtype": padtype, "padlen": padlen}
    if signals.ndim == 1:
        filtered = sp_signal.sosfiltfilt(sos, signals, **options)
        if copy:
            return filtered
        signals[...] = filtered
        return signals
    if copy:
        return sp_signal.sosfiltfilt(sos, signals, axis=0, **options)
    # In place, a block of columns at a time. scipy pads each column in the input dtype
    # (float32 padding for float32 data) and filters in float64; casting the result back gives
    # exactly what filtering one column at a time gives (trap 23) -- *not* the same as filtering
    # a float64 copy of float32 data.
    for start in range(0, signals.shape[1], _FILTER_CHUNK):
        block = slice(start, start + _FILTER_CHUNK)
        signals[:, block] = sp_signal.sosfiltfilt(sos, signals[:, block], axis=0, **options)
    return signals


def create_cosine_drift(high_pass: float, frame_times: np.ndarray) -> np.ndarray:
    """Discrete cosine (DCT-II) drift basis up to ``high_pass`` Hz, plus a constant column.

    Parameters
    ----------
    high_pass : float
        Highest drift frequency in Hz.
    frame_times : ndarray, shape (n_samples,)
        Acquisition times in s (assumed evenly spaced).

    Returns
    -------
    ndarray, shape (n_samples, n_drifts + 1), float64
        Columns ``sqrt(2/n) cos(pi k (t + 1/2) / n)`` for ``k = 1..n_drifts`` with
        ``n_drifts = min(n - 1, floor(2 n high_pass dt))``, then a column of ones.
    """
    n_frames = len(frame_times)
    dt = (frame_times[-1] - frame_times[0]) / (n_frames - 1)
    if high_pass * dt >= 0.5:
        _warn(
            "High-pass filter will span all accessible frequencies and saturate the design "
            "matrix. You may want to reduce the high_pass value."
            f"The provided value is {high_pass} Hz"
        )
    n_drifts = np.minimum(n_frames - 1, int(np.floor(2 * n_frames * high_pass * dt)))
    basis = np.zeros((n_frames, n_drifts + 1))
    if n_drifts > 0:
        samples = np.arange(n_frames)[:, np.newaxis] + 0.5
        k = np.arange(1, n_drifts + 1)
        # Evaluated as ((pi / n) * (t + 0.5)) * k, the association that matches nilearn's bits.
        basis[:, :n_drifts] = np.sqrt(2.0 / n_frames) * np.cos((np.pi / n_frames) * samples * k)
    basis[:, -1] = 1.0
    return basis


def _add_cosine_drifts(
    n_samples: int, confounds: np.ndarray | None, high_pass: float, t_r: float
) -> np.ndarray | None:
    """Append the cosine drifts (without the constant) to the confounds.

    The drifts are left out, with a warning, when there are none for this length and cut-off
    or when a user confound already correlates > 0.9 (signed) with one of them.
    """
    frame_times = np.arange(n_samples) * t_r
    # The constant is dropped: signals and confounds are centred anyway.
    drifts = create_cosine_drift(high_pass, frame_times)[:, :-1]
    n_drifts = drifts.shape[1]
    if n_drifts == 0:
        _warn(
            "Cosine filter was not created. The time series might be too short or the high "
            "pass filter is not suitable for the data."
        )
        return confounds
    if confounds is None:
        return drifts.copy()
    correlation = np.corrcoef(drifts.T, confounds.T)
    np.fill_diagonal(correlation, 0)
    if np.any(correlation[:n_drifts, :] > 0.9):
        _warn(
            "Cosine filter(s) exist in user supplied confounds.Use user supplied regressors only."
        )
        return confounds
    return np.hstack((confounds, drifts))


def _remove_confounds(
    signals: np.ndarray, confounds: np.ndarray, *, standardize_confounds: bool
) -> np.ndarray:
    """Project the signals (in place) onto the orthogonal complement of the confounds."""
    confounds = standardize_signal(
        confounds, standardize="zscore_sample" if standardize_confounds else None, detrend=False
    )
    if not standardize_confounds:
        # Bring every confound to [-1, 1] for a well-conditioned QR while keeping its mean (a
        # z-score would remove any constant contribution).
        peak = np.max(np.abs(confounds), axis=0)
        peak[peak == 0] = 1
        confounds /= peak
    q, r, _ = linalg.qr(confounds, mode="economic", pivoting=True)
    # Absolute tolerance on |R_ii| (trap 18): drops the directions of rank-deficient confounds.
    q = q[:, np.abs(np.diag(r)) > _EPS64 * 100.0]
    # (Q Q^T) is formed first, as in nilearn; float64 products are cast into float32 signals.
    signals -= q.dot(q.T).dot(signals)
    return signals


# --------------------------------------------------------------------------------------------
# clean


def _check_filter(filter, low_pass, high_pass, t_r) -> FilterType:
    """Resolve the filter to "butterworth", "cosine" or False, checking its parameters."""
    if filter not in [*_FILTERS, False]:
        raise ValueError(f"Filter method {filter} not implemented.")
    if filter is False:
        if any(isinstance(item, (float, int)) for item in (low_pass, high_pass)):
            _warn(
                "No filter type selected but cutoff frequency provided.Will not perform filtering."
            )
        return False
    if filter == "cosine":
        if t_r is None or high_pass is None:
            raise ValueError(
                "Repetition time (t_r) and low cutoff frequency (high_pass) must be specified "
                f"for cosine filtering. Got: '{t_r=}' and '{high_pass=}'"
            )
        return "cosine"
    if low_pass is None and high_pass is None:
        return False  # Butterworth without cut-offs: no filtering
    if t_r is None:
        raise ValueError(
            f"Repetition time (t_r) must be specified for butterworth filtering. Got: '{t_r=}'"
        )
    return "butterworth"


def _sanitize_signals(signals, ensure_finite) -> np.ndarray:
    if ensure_finite not in [True, False]:
        raise ValueError(
            f"'ensure_finite' must be one of [True, False].\n'{ensure_finite}' was provided."
        )
    # A private C-ordered copy: every later step works in place on it, and nilearn's float32
    # reductions are over this layout (trap 13). np.array also drops memmap/subclasses.
    signals = np.array(signals, copy=True, order="C")
    if signals.ndim != 2:
        raise ValueError(
            "'signals' must be a 2D array of shape (n_samples, n_features); "
            f"got shape {signals.shape}."
        )
    if ensure_finite:
        bad = ~np.isfinite(signals)
        if bad.any():
            signals[bad] = 0
    return _ensure_float(signals)


def _clean_run(
    signals: np.ndarray,
    confounds: np.ndarray | None,
    sample_mask: np.ndarray | None,
    *,
    detrend: bool,
    standardize,
    standardize_confounds: bool,
    filter_type: FilterType,
    low_pass,
    high_pass,
    t_r,
    extrapolate: bool,
    sample_mask_mode: str,
    butterworth_kwargs: dict,
) -> np.ndarray:
    """Clean one run. ``signals``/``confounds`` are private arrays and may be modified."""
    if filter_type == "cosine":
        # Drifts span the full, uncensored run.
        confounds = _add_cosine_drifts(signals.shape[0], confounds, high_pass, t_r)
        if low_pass is not None:
            _warn("low_pass is not implemented for filter='cosine'")

    if sample_mask is not None:
        if sample_mask.size == 0:
            raise AllVolumesRemovedError()
        if filter_type == "butterworth":
            # The filter needs evenly sampled data: fill the censored volumes now, drop them
            # after filtering.
            signals, confounds, sample_mask = interpolate_censored(
                signals,
                confounds,
                sample_mask,
                t_r=t_r,
                extrapolate=extrapolate,
                mode=sample_mask_mode,
            )
        else:
            signals, confounds = censor(signals, confounds, sample_mask)

    # Taken after censoring and before detrending: psc needs the original scale back.
    original_means = signals.mean(axis=0)
    if detrend:
        # Confounds get the same temporal processing as the signals (Lindquist et al. 2019).
        signals = standardize_signal(signals, standardize=None, detrend=True)
        if confounds is not None:
            confounds = standardize_signal(confounds, standardize=None, detrend=True)

    if filter_type == "butterworth":
        options = {
            "low_pass": low_pass,
            "high_pass": high_pass,
            **butterworth_kwargs,
        }
        signals = butterworth(signals, 1.0 / t_r, **options)
        if confounds is not None:
            confounds = butterworth(confounds, 1.0 / t_r, **options)
        if sample_mask is not None:
            signals, confounds = censor(signals, confounds, sample_mask)

    if confounds is not None:
        signals = _remove_confounds(
            signals, confounds, standardize_confounds=standardize_confounds
        )

    if not standardize:
        return signals
    if standardize == "psc":
        # After detrending or high-pass filtering the means are ~0 and psc would divide by
        # noise: put the original means back first (trap 24).
        mean_ratio = np.abs(signals.mean(0)).mean() / np.abs(original_means).mean()
        if mean_ratio < 1e-1:
            signals = signals + original_means
    return standardize_signal(signals, standardize=standardize, detrend=False)


def clean(
    signals: np.ndarray,
    *,
    runs: np.ndarray | None = None,
    detrend: bool = True,
    standardize: Standardize = "zscore_sample",
    sample_mask=None,
    confounds=None,
    standardize_confounds: bool = True,
    filter: FilterType = "butterworth",
    low_pass: float | None = None,
    high_pass: float | None = None,
    t_r: float | None = 2.5,
    ensure_finite: bool = False,
    extrapolate: bool = False,
    sample_mask_mode: Literal["correct", "nilearn"] = "correct",
    **kwargs,
) -> np.ndarray:
    """Denoise time series: scrub, detrend, filter, regress out confounds, standardize.

    Order of operations for one run (as ``nilearn.signal.clean`` 0.14.1):

    1. with ``filter="cosine"``: build cosine drift regressors on the full run and append them
       to the confounds;
    2. ``sample_mask``: with Butterworth filtering, interpolate the censored volumes (cubic
       spline); otherwise keep only the masked volumes;
    3. detrend signals and confounds (linear, over the sample index);
    4. Butterworth filter signals and confounds, then drop the censored volumes;
    5. regress the confounds out (pivoted QR projection);
    6. standardize.

    Parameters
    ----------
    signals : array-like, shape (n_samples, n_features)
        Not modified. Integer data are converted to float32 (float64 for 8-byte types);
        float dtypes are kept.
    runs : array-like, shape (n_samples,), optional
        Run label of every sample; each run is cleaned independently and the results are
        stacked in sorted label order.
    detrend : bool
        Remove a linear trend (signals and confounds).
    standardize : {"zscore_sample", "psc", None}
        ``"zscore_sample"``: zero mean, unit sample std (ddof=1). ``"psc"``: percent signal
        change. None: no scaling. True / False are deprecated aliases of "zscore_sample" / None
        (FutureWarning); any other value (e.g. "zscore") is a ValueError.
    sample_mask : ndarray or list/tuple of ndarray, optional
        Volumes to keep: indices, or booleans (True = keep); a list with one mask per run when
        ``runs`` is given. See :mod:`bids_regionx.core.sample_mask`.
    confounds : ndarray, DataFrame, str, Path, or a list/tuple of these, optional
        Regressors with n_samples rows, stacked column-wise in order. See
        :func:`bids_regionx.core.confounds.load_confounds`.
    standardize_confounds : bool
        z-score the confounds before the projection (else scale each to max |value| 1).
    filter : {"butterworth", "cosine", False}
    low_pass, high_pass : float or None
        Cut-off frequencies in Hz. ``low_pass`` is ignored, with a warning, by the cosine
        filter.
    t_r : float or None
        Repetition time in s. Required for filtering.
    ensure_finite : bool
        Replace NaN/inf in the signals by 0.
    extrapolate : bool
        With Butterworth filtering and a sample mask, extrapolate censored volumes at both ends
        instead of dropping them from the filtered series.
    sample_mask_mode : {"correct", "nilearn"}
        How censored volumes are interpolated before Butterworth filtering; "nilearn"
        reproduces nilearn 0.14.1 including its bugs. Without Butterworth both are identical.
    **kwargs
        ``butterworth__order``, ``butterworth__padtype``, ``butterworth__padlen`` are passed to
        :func:`butterworth`; other keys are ignored.

    Returns
    -------
    ndarray, shape (n_kept_samples, n_features)
        Float32 for float32 input, float64 for float64 input.
    """
    _check_bool(detrend, "detrend")
    _check_standardize(standardize)
    _check_bool(standardize_confounds, "standardize_confounds")
    _check_scalar(low_pass, "low_pass")
    _check_scalar(high_pass, "high_pass")
    _check_scalar(t_r, "t_r")
    check_sample_mask_mode(sample_mask_mode)

    if isinstance(confounds, os.PathLike):
        confounds = os.fspath(confounds)
    if confounds is not None and not detrend and not standardize_confounds:
        _warn(
            "When confounds are provided, one must perform detrend and/or standardize "
            f"confounds. You provided detrend={detrend}, "
            f"standardize_confounds={standardize_confounds}. If confounds were not "
            "standardized or demeaned before passing to signal.clean signal will not be "
            "correctly cleaned. "
        )
    filter_type = _check_filter(filter, low_pass, high_pass, t_r)

    n_samples = len(signals)
    if runs is not None:
        runs = np.asarray(runs)
        if len(runs) != n_samples:
            raise ValueError(
                f"The length of the run vector ({len(runs)}) does not match the length of "
                f"the signals ({n_samples})"
            )
    confounds = load_confounds(confounds, n_samples)
    sample_masks = sanitize_sample_mask(sample_mask, n_samples, runs=runs)
    signals = _sanitize_signals(signals, ensure_finite)

    if isinstance(standardize, bool):
        _warn(
            "boolean values for 'standardize' will be deprecated in nilearn 0.15.0.\n"
            "Use 'zscore_sample' instead of 'True' or use 'None' instead of 'False'.",
            FutureWarning,
        )
        standardize = "zscore_sample" if standardize else None

    options = {
        "detrend": detrend,
        "standardize": standardize,
        "standardize_confounds": standardize_confounds,
        "filter_type": filter_type,
        "low_pass": low_pass,
        "high_pass": high_pass,
        "t_r": t_r,
        "extrapolate": extrapolate,
        "sample_mask_mode": sample_mask_mode,
        "butterworth_kwargs": {
            key.removeprefix("butterworth__"): value
            for key, value in kwargs.items()
            if key.startswith("butterworth__")
        },
    }
    if runs is None:
        mask = None if sample_masks is None else sample_masks[0]
        return _clean_run(signals, confounds, mask, **options)

    cleaned = []
    for index, label in enumerate(np.unique(runs)):
        in_run = runs == label
        cleaned.append(
            _clean_run(
                signals[in_run],
                None if confounds is None else confounds[in_run],
                None if sample_masks is None else sample_masks[index],
                **options,
            )
        )
    return np.vstack(cleaned)
