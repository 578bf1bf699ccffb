"""``RegionExtractor``: nilearn's estimator of the same name, rebuilt on :mod:`bids_regionx.core`.

Same parameters, defaults, attributes and methods as ``nilearn.regions.RegionExtractor``
(nilearn 0.14); same regions and signals (see ``docs/nilearn-divergences.md`` for the few places
where nilearn is wrong and this estimator is not).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from joblib import Memory
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from bids_regionx.core.bold import bold_info
from bids_regionx.core.errors import DimensionError
from bids_regionx.core.extraction import ExtractionPlan, extract_signals, plan_extraction
from bids_regionx.core.images import (
    check_same_fov,
    get_data,
    imgs_same_fov,
    load_img,
)
from bids_regionx.core.masks import binarize_mask
from bids_regionx.core.region_extraction import RegionParams, extract_regions
from bids_regionx.core.resampling import resample_data, resample_img

try:  # scikit-learn >= 1.6 (older versions never call __sklearn_tags__)
    from sklearn.utils import InputTags
except ImportError:  # pragma: no cover
    InputTags = object

_NUMBER = (float, np.floating, int, np.integer)
_STANDARDIZE = ("zscore_sample", "psc", True, False, None)
_TARGETS = ("mask", "maps", "data", None)


@dataclass
class _ImageInputTags(InputTags):
    """scikit-learn input tags plus nilearn's ``niimg_like`` (X is a NIfTI image)."""

    niimg_like: bool = True


def _check_type(value, types, name: str, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) and bool not in types:
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        # nilearn's format ("float | numpy.floating | ..."); numpy types are qualified so that
        # bool and numpy.bool do not read as "bool, bool".
        names = [f"numpy.{t.__name__}" if t.__module__ == "numpy" else t.__name__ for t in types]
        names = " | ".join([*dict.fromkeys(names), *(["None"] if allow_none else [])])
        raise TypeError(
            f"'{name}' must be of type(s): '{names}'.\nGot: '{value.__class__.__name__}'"
        )


def _is_list_of_4d(imgs) -> bool:
    """Whether ``imgs`` is a list of 4D runs (our extension) rather than one run's 3D volumes.

    Only headers are read. A list mixing 3D and 4D images is refused.
    """
    if not isinstance(imgs, (list, tuple)) or len(imgs) == 0:
        return False
    shapes = [
        tuple(load_img(i, name="imgs").shape if not hasattr(i, "shape") else i.shape)
        for i in imgs
    ]
    is_4d = [len(shape) == 4 for shape in shapes]
    if any(is_4d) and not all(is_4d):
        raise ValueError(
            "imgs: a list must hold either the 3D volumes of one run or 4D runs, not both; "
            f"got images of {sorted({len(shape) for shape in shapes})} dimensions"
        )
    # A lone single-volume 4D image is one run of one volume, as before.
    return all(is_4d) and (len(imgs) > 1 or shapes[0][3] > 1)


class RegionExtractor(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Split 4D maps into separate regions and extract their time series.

    Each map (an ICA component, a dictionary-learning atom, a probabilistic atlas region) is
    thresholded and split into spatially separate regions (Abraham et al. 2014); ``transform``
    then extracts one time series per region by least squares on the region maps, with optional
    smoothing, confound regression and cleaning.

    Parameters
    ----------
    maps_img : 4D Niimg-like or None
        The maps: a path, a nibabel image, or a list of 3D images.
    mask_img : Niimg-like or None
        Restricts region extraction and signal extraction to a mask (3D, or 4D: the
        intersection of its volumes).
    min_region_size : float, default=1350
        Regions must be strictly larger than this volume, in mm³.
    threshold : float, default=1.0
        With ``thresholding_strategy="ratio_n_voxels"``: keep about ``threshold`` times the
        number of voxels of one volume across all maps (``0 < threshold <= n_maps``). With
        ``"img_value"``: keep voxels with value >= threshold. With ``"percentile"``: keep voxels
        above that percentile of the values.
    thresholding_strategy : {"ratio_n_voxels", "img_value", "percentile"}
    two_sided : bool, default=False
        Keep strong negative values too (``img_value`` and ``percentile``).
    extractor : {"local_regions", "connected_components"}, default="local_regions"
        ``connected_components``: 6-connected components of each thresholded map.
        ``local_regions``: random-walker segmentation seeded at the peaks of the map smoothed by
        ``smoothing_fwhm``.
    smoothing_fwhm : float or None, default=6
        FWHM in mm. Used for peak finding with ``local_regions`` **and** to smooth the BOLD data
        before signal extraction.
    standardize : {"zscore_sample", "psc", True, False, None}, default=False
        Standardization of the region signals (True/False are deprecated aliases of
        "zscore_sample"/None).
    standardize_confounds : bool, default=True
    high_variance_confounds : bool, default=False
        Regress out the 5 principal time courses of the 2 % highest-variance voxels.
    detrend : bool, default=False
    low_pass, high_pass : float or None
        Butterworth cut-offs in Hz (``t_r`` required).
    t_r : float or None
        Repetition time in s.
    dtype : {None, "auto"} or numpy dtype
        dtype of the signals returned by ``transform``.
    resampling_target : {"data", "mask", "maps", None}, default="data"
        Grid on which signals are extracted.
    keep_masked_maps : bool, default=False
        Deprecated: keep regions emptied by the mask (their signals are 0).
    memory : None, str, Path or joblib.Memory
        Cache for region extraction.
    memory_level : int, default=0
        Region extraction is cached when ``memory_level >= 1`` and ``memory`` is set.
    verbose : int or bool, default=0
    reports : bool, default=True
        Keep what ``generate_report`` needs.
    cmap : str, default="CMRmap_r"
        Colormap of the report figures.
    allow_overlap : bool, default=True
        If False, ``transform`` raises a ValueError when two regions share a voxel.
    clean_args : dict or None
        Extra options for the cleaning step (e.g. ``{"filter": "cosine"}``,
        ``{"butterworth__order": 3}``, ``{"sample_mask_mode": "nilearn"}``).

    Attributes
    ----------
    index_ : list of int
        Parent map of each region.
    regions_img_ : nibabel.Nifti1Image
        4D float32: one region per volume, on the maps' grid.
    maps_img_ : nibabel.Nifti1Image
        The regions as used for extraction (resampled per ``resampling_target``).
    mask_img_ : nibabel.Nifti1Image or None
        The binarised mask (resampled per ``resampling_target``).
    n_elements_ : int
        Number of regions.
    memory_ : joblib.Memory
    clean_args_ : dict

    Notes
    -----
    Differences from nilearn 0.14 (see ``docs/nilearn-divergences.md``): ``fit`` never changes
    a parameter (nilearn rewrites ``threshold`` for the percentile strategy, so a second fit
    fails); no surviving region is a ValueError (nilearn: a TypeError); ``allow_overlap=False``
    does not rewrite the maps; a list of 4D images gives a list of signal arrays. ``transform``
    computes in float64 (nilearn: float32 for float32 runs), checks confounds, sample masks and
    filter options before reading the run, refuses cut-offs at or above Nyquist, interpolates
    every censored volume before Butterworth filtering (``clean_args={"sample_mask_mode":
    "nilearn"}`` reproduces nilearn) and never modifies the caller's sample mask.

    References
    ----------
    Abraham, A. et al. (2014). Region segmentation for sparse decompositions: better brain
    parcellations from rest fMRI. Sparsity Techniques in Medical Imaging, 8.
    """

    def __init__(
        self,
        maps_img=None,
        mask_img=None,
        min_region_size=1350,
        threshold=1.0,
        thresholding_strategy="ratio_n_voxels",
        two_sided=False,
        extractor="local_regions",
        smoothing_fwhm=6,
        standardize=False,
        standardize_confounds=True,
        high_variance_confounds=False,
        detrend=False,
        low_pass=None,
        high_pass=None,
        t_r=None,
        dtype=None,
        resampling_target="data",
        keep_masked_maps=False,
        memory=None,
        memory_level=0,
        verbose=0,
        reports=True,
        cmap="CMRmap_r",
        allow_overlap=True,
        clean_args=None,
    ):
        self.maps_img = maps_img
        self.mask_img = mask_img
        self.min_region_size = min_region_size
        self.threshold = threshold
        self.thresholding_strategy = thresholding_strategy
        self.two_sided = two_sided
        self.extractor = extractor
        self.smoothing_fwhm = smoothing_fwhm
        self.standardize = standardize
        self.standardize_confounds = standardize_confounds
        self.high_variance_confounds = high_variance_confounds
        self.detrend = detrend
        self.low_pass = low_pass
        self.high_pass = high_pass
        self.t_r = t_r
        self.dtype = dtype
        self.resampling_target = resampling_target
        self.keep_masked_maps = keep_masked_maps
        self.memory = memory
        self.memory_level = memory_level
        self.verbose = verbose
        self.reports = reports
        self.cmap = cmap
        self.allow_overlap = allow_overlap
        self.clean_args = clean_args

    # ------------------------------------------------------------------------------------------
    # validation

    def _check_params(self) -> None:
        _check_type(self.threshold, (*_NUMBER, str), "threshold", allow_none=True)
        for name in ("smoothing_fwhm", "t_r", "low_pass", "high_pass", "min_region_size"):
            _check_type(getattr(self, name), _NUMBER, name, allow_none=True)
        for name in ("detrend", "standardize_confounds", "keep_masked_maps", "two_sided",
                     "high_variance_confounds", "allow_overlap", "reports"):
            _check_type(getattr(self, name), (bool, np.bool_), name)
        _check_type(self.memory_level, (int, np.integer), "memory_level")
        _check_type(self.verbose, (bool, int, np.integer), "verbose")
        if not any(self.standardize is v or self.standardize == v for v in _STANDARDIZE
                   if not isinstance(v, bool) or isinstance(self.standardize, bool)):
            raise ValueError(
                f"'standardize' must be one of {_STANDARDIZE}.\n"
                f"{self.standardize!r} was provided."
            )
        if self.resampling_target not in _TARGETS:
            raise ValueError(
                f"'resampling_target' must be one of {_TARGETS}.\n"
                f"{self.resampling_target!r} was provided."
            )
        if self.dtype is bool or (self.dtype is not None and self.dtype != "auto"
                                  and np.dtype(self.dtype) == np.dtype(bool)):
            raise TypeError("'dtype' cannot be bool")
        if self.clean_args is not None and not isinstance(self.clean_args, dict):
            raise TypeError(
                f"'clean_args' must be a dict or None; got {type(self.clean_args).__name__}"
            )
        if self.min_region_size is not None and self.min_region_size < 0:
            raise ValueError(f"'min_region_size' must be >= 0 (mm3); got {self.min_region_size}")
        if self.smoothing_fwhm is not None and self.smoothing_fwhm < 0:
            raise ValueError(f"'smoothing_fwhm' must be >= 0 (mm); got {self.smoothing_fwhm}")

    def _memory(self) -> Memory:
        if isinstance(self.memory, Memory):
            return self.memory
        location = str(self.memory) if isinstance(self.memory, (str, Path)) else None
        return Memory(location=location, verbose=0)

    # ------------------------------------------------------------------------------------------
    # fit

    def fit(self, imgs=None, y=None):
        """Extract the regions from ``maps_img``.

        Parameters
        ----------
        imgs : Niimg-like, list of 3D Niimg-like or list of 4D Niimg-like, optional
            Data defining the extraction grid when ``resampling_target="data"`` (and the report
            background); of a list of 4D runs, the first one.
        y : None
            Ignored.

        Returns
        -------
        self
        """
        del y
        self._check_params()
        maps = load_img(self.maps_img, name="maps_img", ndim=4)
        self.memory_ = self._memory()
        self.clean_args_ = {} if self.clean_args is None else dict(self.clean_args)
        self.mask_img_ = None if self.mask_img is None else binarize_mask(self.mask_img)
        data_img = data_dim = None
        if imgs is not None:
            # A list of 4D runs (as transform takes): the first one defines the grid and the
            # report background, and the report says so (nilearn's "dim" 5).
            several = _is_list_of_4d(imgs)
            data_img = load_img(imgs[0] if several else imgs, name="imgs")
            data_dim = 5 if several else len(data_img.shape)
            if 0 in data_img.shape:
                raise ValueError("The image is empty.")

        params = RegionParams(
            threshold=self.threshold,
            thresholding_strategy=self.thresholding_strategy,
            two_sided=self.two_sided,
            extractor=self.extractor,
            smoothing_fwhm=self.smoothing_fwhm,
            min_region_size=self.min_region_size,
        )
        compute = extract_regions
        if self.memory_.location is not None and self.memory_level >= 1:
            compute = self.memory_.cache(extract_regions, ignore=["n_threads"])
            # joblib hashes a file-backed image by its header and file name, not its data,
            # so a rewritten file would hit a stale entry: hand it the data instead.
            maps = _with_data_in_memory(maps)
        self.regions_img_, split = compute(maps, params, mask_img=self.mask_img_)
        self.index_ = list(split.index)
        self._fit_grid(data_img)
        if self.reports:
            self._reporting_data = {
                "maps_image": self.maps_img_,
                "mask": self.mask_img_,
                "images": None if data_img is None else _middle_volume(data_img),
                "dim": data_dim,
            }
        else:
            self._reporting_data = None
        self.n_elements_ = int(self.maps_img_.shape[3])
        self._plans: dict = {}
        return self

    def _fit_grid(self, data_img) -> None:
        """Put regions and mask on the extraction grid chosen by ``resampling_target``."""
        target = self.resampling_target
        maps_img = self.regions_img_
        mask_img = self.mask_img_
        if target == "mask" and mask_img is None:
            raise ValueError(
                "resampling_target has been set to 'mask' but no mask has been provided.\n"
                "Set resampling_target to something else or provide a mask."
            )
        if target is None:
            images = {"maps": maps_img}
            if mask_img is not None:
                images["mask"] = mask_img
            if data_img is not None:
                images["data"] = data_img
            check_same_fov(**images)
        ref = {"data": data_img, "mask": mask_img, "maps": maps_img, None: None}[target]
        if ref is not None:
            if target != "maps" and not imgs_same_fov(ref, maps_img):
                maps_img = _resample_maps(maps_img, ref.affine, ref.shape[:3])
            if mask_img is not None and not imgs_same_fov(ref, mask_img):
                mask_img = resample_img(mask_img, ref.affine, ref.shape[:3],
                                        interpolation="nearest")
        data = get_data(maps_img)
        # The fitted regions always hold non-zero values; only resampled ones can lose them
        # (and reading the whole 4D array costs a pass over mostly untouched zero pages).
        if maps_img is not self.regions_img_ and not np.any(data):
            raise ValueError("maps_img contains no map.")
        if mask_img is not None and ref is not None:
            if not np.any(data[get_data(mask_img).astype(bool)]):
                raise ValueError("No map left after applying mask to the maps image.")
        self.maps_img_ = maps_img
        self.mask_img_ = mask_img

    # ------------------------------------------------------------------------------------------
    # transform

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "maps_img_") and hasattr(self, "n_elements_")

    @property
    def _n_features_out(self) -> int:
        return self.n_elements_

    def _output_config(self) -> str | None:
        config = getattr(self, "_sklearn_output_config", None)
        return None if config is None else config.get("transform", "default")

    def set_output(self, *, transform=None):
        """Choose the container of ``transform`` outputs.

        Parameters
        ----------
        transform : {"default", "pandas", "polars"} or None
            ``"default"``: numpy arrays; ``"pandas"``/``"polars"``: data frames with
            :meth:`get_feature_names_out` as columns. None leaves the setting unchanged.

        Returns
        -------
        self
        """
        if transform is None:
            return self
        if transform not in ("default", "pandas", "polars"):
            raise ValueError(
                f"output config must be 'default', 'pandas' or 'polars'; got {transform!r}"
            )
        if transform == "polars":
            try:
                import polars  # noqa: F401
            except ImportError as exc:
                raise ImportError("set_output(transform='polars') needs polars") from exc
        self._sklearn_output_config = {"transform": transform}
        return self

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """Output feature names: ``"regionextractor0"``, ``"regionextractor1"``, ...

        Returns
        -------
        ndarray of object, shape (n_elements_,)
        """
        del input_features
        check_is_fitted(self)
        prefix = type(self).__name__.lower()
        return np.asarray([f"{prefix}{i}" for i in range(self.n_elements_)], dtype=object)

    def _wrap(self, signals: np.ndarray):
        config = self._output_config()
        if config in (None, "default"):
            return signals
        names = list(self.get_feature_names_out())
        if config == "pandas":
            import pandas as pd

            return pd.DataFrame(signals, columns=names)
        import polars as pl

        return pl.DataFrame(signals, schema=names)

    def fit_transform(self, imgs, y=None, confounds=None, sample_mask=None):
        """``fit(imgs)`` then ``transform(imgs, confounds, sample_mask)``."""
        return self.fit(imgs, y).transform(imgs, confounds=confounds, sample_mask=sample_mask)

    def transform(self, imgs, confounds=None, sample_mask=None):
        """Region signals of one run, or of each run of a list of 4D runs.

        Parameters
        ----------
        imgs : 3D/4D Niimg-like, list of 3D Niimg-like (one run), or list of 4D Niimg-like
        confounds : array, DataFrame, path, or list of those, optional
            For one run: regressors (several sources in a list are stacked). For a list of
            runs: a list with one entry per run.
        sample_mask : array or list of arrays, optional
            Volumes to keep (indices or booleans); one per run for a list of runs.

        Returns
        -------
        ndarray of shape (n_volumes, n_regions) -- (n_regions,) for a 3D image -- or a list
        of those for a list of runs (data frames after ``set_output``).
        """
        check_is_fitted(self)
        if isinstance(self.standardize, bool):
            warnings.warn(
                "boolean values for 'standardize' will be deprecated in nilearn 0.15.0.\n"
                "Use 'zscore_sample' instead of 'True' or use 'None' instead of 'False'.",
                FutureWarning,
                stacklevel=2,
            )
        if _is_list_of_4d(imgs):
            n = len(imgs)
            confs = _per_run(confounds, n, "confounds")
            masks = _per_run(sample_mask, n, "sample_mask")
            runs = [load_img(i, name="imgs") for i in imgs]
            # Every run's inputs are checked before the first run is read.
            for run, conf, mask in zip(runs, confs, masks, strict=True):
                self._check_cleaning_inputs(bold_info(run).shape[3], conf, mask)
            return [
                self._transform_run(i, c, s)
                for i, c, s in zip(runs, confs, masks, strict=True)
            ]
        return self._transform_run(imgs, confounds, sample_mask)

    def _check_cleaning_inputs(self, n_volumes: int, confounds, sample_mask) -> None:
        """Raise before any BOLD data are read if cleaning would fail after extraction.

        Cut-offs at or above Nyquist are refused here (nilearn lowers them with a warning).
        Everything else is checked by running the cleaning itself on an all-zero signal of the
        run's length: the same code gives the same errors (confounds of the wrong length or
        with NaN, a sample mask out of range, a filter without ``t_r``, ...) for the cost of
        one column.
        """

        clean_args = getattr(self, "clean_args_", None) or {}
        # Butterworth only: the cosine filter ignores low_pass, filter=False ignores both.
        if clean_args.get("filter", "butterworth") == "butterworth" and self.t_r is not None:
            if (
                self.low_pass is not None
                and self.high_pass is not None
                and self.high_pass >= self.low_pass
            ):
                raise ValueError(
                    f"'high_pass' ({self.high_pass} Hz) must be lower than 'low_pass' "
                    f"({self.low_pass} Hz)."
                )
            nyquist = 0.5 / self.t_r
            for name in ("high_pass", "low_pass"):
                cutoff = getattr(self, name)
                if cutoff is not None and cutoff >= nyquist:
                    raise ValueError(
                        f"'{name}' ({cutoff} Hz) must be below the Nyquist frequency "
                        f"({nyquist} Hz for t_r={self.t_r} s)."
                    )
        with warnings.catch_warnings():
            # The real call warns; this one must not warn twice.
            warnings.simplefilter("ignore")
            self._clean(np.zeros((n_volumes, 1)), confounds, sample_mask)

    def _clean(self, signals: np.ndarray, confounds, sample_mask) -> np.ndarray:
        """The cleaning step (detrend, filters, confounds, standardization) with this
        estimator's options."""
        from bids_regionx.core.signal import clean

        return clean(
            signals,
            detrend=self.detrend,
            standardize=self.standardize,
            standardize_confounds=self.standardize_confounds,
            t_r=self.t_r,
            low_pass=self.low_pass,
            high_pass=self.high_pass,
            confounds=confounds,
            sample_mask=sample_mask,
            **(getattr(self, "clean_args_", None) or {}),
        )

    def _transform_run(self, imgs, confounds, sample_mask):
        img = load_img(imgs, name="imgs")
        if 0 in img.shape:
            raise ValueError("The image is empty.")
        return self._extract_and_clean(
            img, confounds, sample_mask, high_variance=self.high_variance_confounds
        )

    def transform_single_imgs(self, imgs, confounds=None, sample_mask=None):
        """Region signals of one 3D/4D image (no high-variance confounds added).

        Returns
        -------
        ndarray, shape (n_volumes, n_regions), or (n_regions,) for a 3D image without an
        output configuration.
        """
        check_is_fitted(self)
        img = load_img(imgs, name="imgs")
        return self._extract_and_clean(img, confounds, sample_mask, high_variance=False)

    def _extract_and_clean(self, img, confounds, sample_mask, *, high_variance: bool):
        """Extraction then cleaning of one run, reading it one block of volumes at a time."""
        from bids_regionx.core.high_variance import HighVarianceConfounds

        info = bold_info(img)
        if high_variance and info.is_3d:
            # nilearn raises the same error (from inside its high-variance confounds).
            raise DimensionError(3, 4, name="imgs (with high_variance_confounds=True)")
        self._check_cleaning_inputs(info.shape[3], confounds, sample_mask)
        maps_img, mask_img, prepare = self._transform_grid(img)
        if not self.allow_overlap:
            _check_overlap(get_data(maps_img))
        # Data resampled onto the maps first take the resampled dtype (int32 -> float32).
        source = info.dtype if prepare is None else _continuous_resampled_dtype(info.dtype)
        fit_dtype = _lstsq_dtype(source, self.smoothing_fwhm)
        plan = self._plan(maps_img, mask_img, fit_dtype)
        # Signals stay float64 through cleaning and take the reference's dtype at the end:
        # rounding them to float32 first would add the reference's float32 error (which
        # standardization amplifies by the baseline-to-fluctuation ratio) without matching it.
        # High-variance confounds (float64, from the raw run as passed, like nilearn's): their
        # statistics are gathered while the run is read for extraction, then a second
        # sequential pass reads the selected voxels.
        hv = HighVarianceConfounds(info.shape[:3], info.shape[3]) if high_variance else None
        signals = extract_signals(img, plan, prepare=prepare,
                                  on_block=None if hv is None else hv.add)
        if hv is not None:
            # Placed before the user's confounds, as nilearn does.
            stacked = [hv.confounds(img)]
            if confounds is not None:
                stacked += list(confounds) if isinstance(confounds, (list, tuple)) else [confounds]
            confounds = stacked
        signals = self._clean(signals, confounds, sample_mask)
        signals = signals.astype(fit_dtype, copy=False)
        if info.is_3d and self._output_config() is None:
            signals = signals.squeeze()
        target = _target_dtype(info.dtype, self.dtype)
        if target is not None:
            signals = signals.astype(target)
        return self._wrap(signals)

    def _transform_grid(self, img):
        """Maps, mask and a block-preparation function for the grid of ``img``."""
        maps_img, mask_img, prepare = self.maps_img_, self.mask_img_, None
        target = self.resampling_target
        if target is None:
            images = {"maps": maps_img, "data": img}
            if mask_img is not None:
                images["mask"] = mask_img
            check_same_fov(**images)
        elif target == "data":
            if not imgs_same_fov(img, maps_img):
                warnings.warn(
                    "Resampling maps at transform time...\nTo avoid this warning, make sure "
                    "to pass the images you want to transform to fit() first, or directly "
                    "use fit_transform().",
                    stacklevel=3,
                )
                maps_img = _resample_maps(maps_img, img.affine, img.shape[:3])
            if mask_img is not None and not imgs_same_fov(img, mask_img):
                warnings.warn(
                    "Resampling mask at transform time...\nTo avoid this warning, make sure "
                    "to pass the images you want to transform to fit() first, or directly "
                    "use fit_transform().",
                    stacklevel=3,
                )
                mask_img = resample_img(mask_img, img.affine, img.shape[:3],
                                        interpolation="nearest")
        elif not imgs_same_fov(img, maps_img):
            if target == "maps":
                warnings.warn(
                    "Resampling images at transform time...\nTo avoid this warning, make sure "
                    "to resample the images you want to transform to the shape of the maps or "
                    "set resampling_target to 'data'.",
                    stacklevel=3,
                )
            prepare = _data_resampler(img, maps_img)
        return maps_img, mask_img, prepare

    def _plan(self, maps_img, mask_img, fit_dtype) -> ExtractionPlan:
        key = (
            tuple(maps_img.shape),
            maps_img.affine.tobytes(),
            None if mask_img is None else (tuple(mask_img.shape), mask_img.affine.tobytes()),
            np.dtype(fit_dtype).str,
        )
        if not hasattr(self, "_plans"):
            self._plans = {}
        if key not in self._plans:
            mask = None if mask_img is None else get_data(mask_img).astype(bool)
            self._plans[key] = plan_extraction(
                get_data(maps_img),
                maps_img.affine,
                mask=mask,
                smoothing_fwhm=self.smoothing_fwhm or None,
                rcond=float(np.finfo(fit_dtype).eps),
                keep_masked_maps=self.keep_masked_maps,
            )
        return self._plans[key]

    # ------------------------------------------------------------------------------------------
    # inverse transform

    def inverse_transform(self, region_signals):
        """Voxel data from region signals: each region map weighted by its signal.

        Parameters
        ----------
        region_signals : array-like or data frame, shape (n_regions,) or (n, n_regions)

        Returns
        -------
        nibabel.Nifti1Image
            3D for 1D input, else 4D with ``n`` volumes, on ``maps_img_``'s grid.
        """
        from sklearn.utils import check_array

        check_is_fitted(self)
        if hasattr(region_signals, "to_numpy"):
            region_signals = region_signals.to_numpy().squeeze()
        signals = np.atleast_1d(region_signals)
        if signals.ndim > 2:
            # Checked before scikit-learn's check_array, whose message names neither the
            # method nor the expected shape.
            raise ValueError(
                "Input to 'inverse_transform' has wrong shape.\n"
                f"Expected ({self.n_elements_},) or (n_samples, {self.n_elements_}).\n"
                f"Got {signals.shape}."
            )
        if signals.dtype == bool:
            # nilearn casts to self.dtype and crashes on "auto"; "auto" of a discrete input is
            # int32 anyway.
            requested = np.int32 if self.dtype is None or _is_auto(self.dtype) else self.dtype
            target = np.dtype(requested)
            warnings.warn(f"Casting boolean input to {target}", stacklevel=2)
            signals = signals.astype(target)
        signals = check_array(signals, ensure_2d=False)
        expected = (self.n_elements_,) if signals.ndim == 1 else (signals.shape[0],
                                                                  self.n_elements_)
        if signals.ndim > 2 or signals.shape != expected:
            raise ValueError(
                "Input to 'inverse_transform' has wrong shape.\n"
                f"Expected {expected}.\nGot {signals.shape}."
            )
        maps = get_data(self.maps_img_)
        if self.mask_img_ is not None:
            mask = get_data(self.mask_img_).astype(bool)
            if mask.shape != maps.shape[:3]:
                raise ValueError("Images have incompatible shapes.")
            if not np.allclose(self.mask_img_.affine, self.maps_img_.affine,
                               atol=1000 * np.finfo(np.float32).eps):
                raise ValueError("Images have different affine matrices.")
            maps = maps * mask[..., np.newaxis]
        support = np.any(maps != 0, axis=3)
        values = np.dot(signals, maps[support].T)
        # (x, y, z, n) for 2D signals, (x, y, z) for 1D
        out_shape = maps.shape[:3] + signals.shape[:-1]
        data = np.zeros(out_shape, dtype=values.dtype, order="F")
        data[support] = values.T
        target = _target_dtype(signals.dtype, self.dtype) or signals.dtype
        data = _downcast_int64(data.astype(target))
        img = nib.Nifti1Image(data, self.maps_img_.affine)
        # The header keeps the requested dtype even when int64 data were downcast (as nilearn:
        # saving writes the requested dtype).
        img.set_data_dtype(target)
        return img

    # ------------------------------------------------------------------------------------------
    # reports

    def generate_report(self, displayed_maps=10, engine="matplotlib", title=None):
        """An HTML report of the regions, as nilearn's masker report (no script, no network).

        Parameters
        ----------
        displayed_maps : int, "all", list of int or ndarray of int, default=10
            Which maps of ``maps_img_`` (the regions) to show: the first n, all, or these
            indices (in this order). Unavailable ones are left out with a warning.
        engine : {"matplotlib"}
        title : str, optional
            Report title (default: the class name).

        Returns
        -------
        bids_regionx.reports.estimator.HTMLReport
            With ``save_as_html``, ``open_in_browser`` and ``_repr_html_`` (notebooks).

        Raises
        ------
        TypeError
            ``displayed_maps`` is of another type (after ``fit`` with ``reports=True``).

        Notes
        -----
        The report's warnings (not fitted, reports disabled, maps not available, no image given
        to ``fit``...) are listed in it and raised as ``UserWarning``. With ``reports=False``,
        ``fit`` keeps nothing for the report.
        """
        from bids_regionx.reports.estimator import build_report

        return build_report(self, displayed_maps=displayed_maps, engine=engine, title=title)

    def __sklearn_tags__(self):
        """scikit-learn tags: a transformer whose ``X`` is a NIfTI image, not an array.

        ``input_tags.niimg_like`` is nilearn's marker for image estimators (it replaces the
        pre-1.6 ``_more_tags`` ``X_types``, which scikit-learn >= 1.6 rejects on its own).
        ``two_d_array`` stays True, as in nilearn, so scikit-learn's array-based checks still
        run; those that pass arrays are listed as expected failures in the tests.
        """
        tags = super().__sklearn_tags__()
        tags.input_tags = _ImageInputTags()
        return tags


# ----------------------------------------------------------------------------------------------
# helpers


def _per_run(value, n: int, name: str) -> list:
    if value is None:
        return [None] * n
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise ValueError(f"'{name}' must be a list with one entry per image ({n} images)")
    return list(value)


def _with_data_in_memory(img) -> nib.Nifti1Image:
    """``img`` with its data read into an array (same values, layout, affine and header)."""
    if isinstance(img.dataobj, np.ndarray):
        return img
    return img.__class__(get_data(img), img.affine, header=img.header)


def _middle_volume(img) -> nib.Nifti1Image:
    if len(img.shape) == 3:
        return img
    return img.slicer[..., img.shape[3] // 2]


def _resample_maps(maps_img, affine, shape) -> nib.Nifti1Image:
    """Regions onto another grid (linear), refusing a result with no map left."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Resampling binary images")
        out = resample_img(maps_img, affine, shape, interpolation="linear")
    if not np.any(get_data(out)):
        raise ValueError("No map left after resampling maps_img.")
    return out


def _data_resampler(img, maps_img):
    """Block function putting BOLD volumes on the maps' grid (cubic spline, as the reference).

    The reference clips resampled values to the range of the whole run, so that range is
    read first.
    """
    from bids_regionx.core.bold import iter_blocks

    source = bold_info(img).dtype
    resampled = _continuous_resampled_dtype(source)
    if resampled != source:
        # nilearn's warning, once per run as it resamples the whole run in one call.
        warnings.warn(f"Casting data from {source.name} to {resampled.name}", stacklevel=5)
    # Kept as the data's own scalars (as nilearn): a Python float cannot clip a uint8 block
    # in place.
    low, high = 0, 0
    for _, block in iter_blocks(img):
        low = min(low, np.nanmin(block))
        high = max(high, np.nanmax(block))

    def prepare(block: np.ndarray) -> np.ndarray:
        if block.dtype.kind == "f" and block.dtype.itemsize < 8:
            # float64 like the rest of our pipeline (nilearn resamples float32 runs in
            # float32). Integer runs keep nilearn's output dtypes: uint8 stays uint8.
            block = block.astype(np.float64)
        out = resample_data(block, img.affine, maps_img.affine, maps_img.shape[:3],
                            interpolation="continuous", clip=False)
        return np.clip(out, low, high, out=out)

    return prepare


def _check_overlap(maps: np.ndarray) -> None:
    """Raise if two maps are >= eps at one voxel (the maps themselves are not changed).

    The reference zeroes values below eps and then counts values > 0, so a value of exactly
    eps counts as overlapping.
    """
    if maps.dtype.kind == "f":
        positive = maps >= np.finfo(maps.dtype).eps
    else:
        positive = maps > 0
    if np.any(positive.sum(axis=3) > 1):
        raise ValueError(
            "Overlap detected in the maps. The overlap may be due to the atlas itself or "
            "possibly introduced by resampling."
        )


def _continuous_resampled_dtype(src: np.dtype) -> np.dtype:
    """dtype of BOLD data after the reference's cubic-spline resampling (spec §2.3): signed
    integers become float32 (float64 for 64-bit), anything else is kept."""
    src = np.dtype(src)
    if src.kind == "i":
        return np.dtype(np.float64 if src.itemsize == 8 else np.float32)
    return src


def _lstsq_dtype(src: np.dtype, smoothing_fwhm) -> np.dtype:
    """Precision of the reference's least squares for data of dtype ``src`` (spec trap 2)."""
    src = np.dtype(src)
    if smoothing_fwhm is not None and src.kind in "iub":
        src = np.dtype(np.float64 if src.itemsize == 8 else np.float32)
    return np.result_type(np.float32, src if src.kind != "b" else np.uint8)


def _is_auto(requested) -> bool:
    return isinstance(requested, str) and requested == "auto"


def _downcast_int64(data: np.ndarray) -> np.ndarray:
    """64-bit integer image data as int32 when the values fit, with nilearn's warnings."""
    if data.dtype not in (np.int64, np.uint64):
        return data
    info = np.iinfo(np.int32)
    if data.size == 0 or (info.min <= data.min() and data.max() <= info.max):
        warnings.warn(
            "Data array used to create a new image contains 64-bit ints. This is likely due "
            "to creating the array with numpy and passing `int` as the `dtype`. Many tools "
            "such as FSL and SPM cannot deal with int64 in Nifti images, so for compatibility "
            "the data has been converted to int32.",
            stacklevel=3,
        )
        return data.astype(np.int32)
    warnings.warn(
        "Data array used to create a new image contains 64-bit ints, and some values too "
        "large to store in 32-bit ints. The resulting image thus contains 64-bit ints, which "
        "may cause some compatibility issues with some other tools or an error when saving "
        "the image to a Nifti file.",
        stacklevel=3,
    )
    return data


def _target_dtype(src: np.dtype, requested) -> np.dtype | None:
    """Output dtype of ``transform`` (spec §6.4)."""
    if requested is None:
        return None
    if isinstance(requested, str) and requested == "auto":
        return np.dtype(np.int32 if np.dtype(src).kind == "i" else np.float32)
    return np.dtype(requested)
