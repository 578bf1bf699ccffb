"""One BOLD run to denoised region time series: confounds, censoring, extraction, cleaning.

The BIDS App's per-run step, as a pure function on loaded inputs. It is the estimator's
``transform`` (same extraction and cleaning code) plus what a pipeline adds around it: the
denoising strategy's design matrix, censoring from fMRIPrep's confounds, the decision to drop a
run with too little clean data, and region coverage in the run's brain mask.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from bids_regionx.core.bold import bold_info
from bids_regionx.core.coverage import region_coverage
from bids_regionx.core.denoise import (
    Strategy,
    build_design,
    build_sample_mask,
    censoring_summary,
    check_run_usable,
)
from bids_regionx.core.extraction import extract_signals, plan_extraction
from bids_regionx.core.high_variance import HighVarianceConfounds
from bids_regionx.core.images import get_data


@dataclass(frozen=True)
class CleaningOptions:
    """Extraction and cleaning options of a run (the CLI's denoising options).

    Attributes
    ----------
    t_r : float
        Repetition time in s.
    standardize : {"zscore_sample", "psc"} or None
    standardize_confounds : bool
    detrend : bool
    low_pass, high_pass : float or None
        Butterworth cut-offs in Hz.
    smoothing_fwhm : float or None
        Gaussian smoothing of the BOLD data before extraction, in mm.
    high_variance_confounds : bool
        Add the 5 principal time courses of the 2 % highest-variance voxels to the design.
    clean_args : dict
        Extra options of :func:`bids_regionx.core.signal.clean`.
    min_coverage : float
        Regions with less of their weight inside the brain mask become n/a.
    min_time : float
        Runs with less clean data (s) are dropped.
    """

    t_r: float
    standardize: str | None = None
    standardize_confounds: bool = True
    detrend: bool = False
    low_pass: float | None = None
    high_pass: float | None = None
    smoothing_fwhm: float | None = None
    high_variance_confounds: bool = False
    clean_args: dict = field(default_factory=dict)
    min_coverage: float = 0.5
    min_time: float = 0.0


@dataclass(frozen=True)
class RunSignals:
    """What one run produced.

    Attributes
    ----------
    timeseries : DataFrame or None
        ``(n_kept, n_regions)``, columns = region names, NaN for regions set to n/a; None when the
        run was dropped.
    design : DataFrame
        ``(n_volumes, n_regressors)``: the confounds regressed out (before censoring). For a
        dropped run, the strategy's columns only (high-variance confounds are not computed).
    outliers : DataFrame
        ``(n_volumes, ...)``: boolean ``dummy``, ``fd``, ``dvars``, ``short_segment`` and
        ``censored`` (1 = not used) per volume.
    coverage : DataFrame
        ``name``, ``coverage`` (fraction in the brain mask), ``used`` per region.
    summary : dict
        Counts and statistics for sidecars, reports and the group QC table.
    dropped : str or None
        Why the run was not used (None when used).
    """

    timeseries: pd.DataFrame | None
    design: pd.DataFrame
    outliers: pd.DataFrame
    coverage: pd.DataFrame
    summary: dict[str, Any]
    dropped: str | None = None


def _fd_stats(confounds: pd.DataFrame) -> tuple[float | None, float | None]:
    if "framewise_displacement" not in confounds:
        return None, None
    fd = pd.to_numeric(confounds["framewise_displacement"], errors="coerce").to_numpy()
    fd = fd[np.isfinite(fd)]
    if fd.size == 0:
        return None, None
    return float(fd.mean()), float(fd.max())


def _non_finite_message(bold_img: nib.Nifti1Image, plan) -> str:
    """Say which volumes of a run hold NaN or infinite values inside the regions."""
    from bids_regionx.core.bold import iter_blocks

    bad: list[int] = []
    for start, block in iter_blocks(bold_img):
        data = block.reshape(-1, block.shape[3], order="F")[plan.rows]
        bad += [start + int(v) for v in np.flatnonzero(~np.isfinite(data).all(axis=0))]
    n_volumes = bold_info(bold_img).shape[3]
    ranges: list[str] = []
    for v in bad:
        if ranges and int(ranges[-1].rsplit("-", 1)[-1]) == v - 1:
            ranges[-1] = f"{ranges[-1].split('-')[0]}-{v}"
        else:
            ranges.append(str(v))
    shown = ", ".join(ranges[:10]) + (", ..." if len(ranges) > 10 else "")
    name = bold_img.get_filename() or "the BOLD image"
    return (
        f"{name}: NaN or infinite values inside the regions in {len(bad)} of {n_volumes} "
        f"volumes (0-based: {shown}); fix the file or leave the run out (--bids-filter-file)"
    )


def region_signals_for_run(
    bold_img: nib.Nifti1Image,
    regions_img: nib.Nifti1Image,
    names: list[str],
    confounds: pd.DataFrame,
    strategy: Strategy,
    options: CleaningOptions,
    *,
    confounds_meta: dict | None = None,
    brain_mask: np.ndarray | None = None,
    confounds_source: str = "confounds table",
) -> RunSignals:
    """Denoised region time series of one run.

    Parameters
    ----------
    bold_img : nibabel image, 4D
        The preprocessed run (read one block of volumes at a time).
    regions_img : nibabel image, 4D
        Regions on the run's grid (one per volume).
    names : list of str
        Region names (columns of the output).
    confounds : DataFrame, shape (n_volumes, n_columns)
        The fMRIPrep confounds table.
    strategy : Strategy
        Denoising strategy (regressors, censoring, dummy scans), with CLI overrides applied.
    options : CleaningOptions
    confounds_meta : dict, optional
        The confounds JSON sidecar (CompCor metadata).
    brain_mask : ndarray of bool, shape (x, y, z), optional
        The run's brain mask on its grid: regions are trimmed to it and coverage is measured in
        it.
    confounds_source : str
        File name used in error messages.

    Returns
    -------
    RunSignals
    """
    from bids_regionx.core.signal import clean

    info = bold_info(bold_img)
    n_volumes = info.shape[3]
    regions = get_data(regions_img)
    design = build_design(
        confounds, strategy, confounds_meta=confounds_meta, n_volumes=n_volumes,
        source=confounds_source,
    )
    mask = build_sample_mask(
        confounds, **strategy.censoring_kwargs(), n_volumes=n_volumes, source=confounds_source
    )
    # High-variance confounds: their statistics are gathered during the extraction pass and
    # one more sequential pass reads the selected voxels (reading the run in voxel slabs would
    # decompress a .nii.gz once per slab). They count as regressors for the checks below.
    hv = HighVarianceConfounds(info.shape[:3], n_volumes) if options.high_variance_confounds \
        else None
    n_regressors = design.shape[1] + (hv.n_confounds if hv is not None else 0)

    outliers = mask.reasons.astype(np.uint8)
    outliers["censored"] = (~mask.keep).astype(np.uint8)
    coverage = region_coverage(regions, brain_mask)
    used = coverage >= options.min_coverage
    coverage_table = pd.DataFrame(
        {"name": names, "coverage": np.round(coverage, 6), "used": used.astype(np.uint8)}
    )
    counts = censoring_summary(mask.reasons)
    mean_fd, max_fd = _fd_stats(confounds)
    summary: dict[str, Any] = {
        **counts,
        "kept_time_s": round(counts["n_kept"] * options.t_r, 6),
        "mean_fd": mean_fd,
        "max_fd": max_fd,
        "n_regressors": int(n_regressors),
        "n_regions": len(names),
        "regions_na": [n for n, u in zip(names, used, strict=True) if not u],
    }
    dropped = check_run_usable(
        counts["n_kept"], n_regressors, options.t_r, min_time=options.min_time
    )
    if dropped is not None:
        return RunSignals(None, design, outliers, coverage_table, summary, dropped)

    fit_dtype = np.result_type(np.float32, info.dtype)
    with warnings.catch_warnings():
        # Regions outside the brain mask are reported through coverage, not as a warning.
        warnings.filterwarnings("ignore", message="After applying mask to the maps image")
        plan = plan_extraction(
            regions,
            bold_img.affine,
            mask=brain_mask,
            smoothing_fwhm=options.smoothing_fwhm or None,
            rcond=float(np.finfo(fit_dtype).eps),
        )
    with warnings.catch_warnings():
        # nilearn sets non-finite BOLD values to 0, which turns a NaN volume into a spike in
        # every region: a run with NaN/inf inside its regions is refused instead.
        warnings.filterwarnings("error", message="Non-finite values detected")
        try:
            raw = extract_signals(bold_img, plan, on_block=None if hv is None else hv.add)
        except UserWarning:
            raise ValueError(_non_finite_message(bold_img, plan)) from None
    if hv is not None:
        values = hv.confounds(bold_img)
        columns = [f"high_variance_{i:02d}" for i in range(values.shape[1])]
        # Placed before the strategy's regressors, as nilearn places them before the user's.
        design = pd.concat([pd.DataFrame(values, columns=columns), design], axis=1)
    keep = np.flatnonzero(mask.keep)
    cleaned = clean(
        raw,
        detrend=options.detrend,
        standardize=options.standardize,
        standardize_confounds=options.standardize_confounds,
        t_r=options.t_r,
        low_pass=options.low_pass,
        high_pass=options.high_pass,
        confounds=design.to_numpy() if design.shape[1] else None,
        sample_mask=None if keep.size == n_volumes else keep,
        **options.clean_args,
    )
    signals = np.full((cleaned.shape[0], len(names)), np.nan)
    signals[:, plan.kept] = cleaned
    signals[:, ~used] = np.nan
    timeseries = pd.DataFrame(signals, columns=names)
    summary["n_kept"] = int(cleaned.shape[0])
    return RunSignals(timeseries, design, outliers, coverage_table, summary, None)
