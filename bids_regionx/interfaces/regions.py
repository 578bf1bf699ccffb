"""Nipype interfaces for region extraction: maps masking, thresholding, splitting, resampling.

Each interface reads its inputs, calls one :mod:`bids_regionx.core` function and writes its
results in the node's working directory.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from bids_regionx.core.images import get_data, new_img_like, same_fov
from bids_regionx.core.masks import binarize_mask, mask_on_grid
from bids_regionx.core.region_extraction import load_maps
from bids_regionx.core.region_table import region_table
from bids_regionx.core.regions import split_maps
from bids_regionx.core.resampling import resample_img
from bids_regionx.core.thresholding import resolve_threshold
from bids_regionx.interfaces.utils import blas_single_thread, node_path, save_nifti


class _PrepareMapsInput(BaseInterfaceInputSpec):
    maps_file = File(exists=True, mandatory=True, desc="4D maps image (or 3D: one map)")
    mask_file = File(exists=True, desc="mask restricting region extraction (any grid)")


class _PrepareMapsOutput(TraitedSpec):
    maps_file = File(exists=True, desc="the maps, finite, 4D, on their own grid")
    mask_file = File(desc="the mask on the maps' grid (uint8), if a mask was given")
    masked_maps_file = File(exists=True, desc="the maps as used: zero outside the mask")


class PrepareMaps(SimpleInterface):
    """Maps masking: load the maps, put the mask on their grid, and zero maps outside it."""

    input_spec = _PrepareMapsInput
    output_spec = _PrepareMapsOutput

    def _run_interface(self, runtime):
        import logging
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            img, data = load_maps(_as_4d(self.inputs.maps_file), name=self.inputs.maps_file)
        for warning in caught:
            if issubclass(warning.category, UserWarning):  # e.g. non-finite values set to 0:
                # shown to the user (nipype would leave it in the node's log)
                logging.getLogger("bids_regionx").warning("%s: %s", self.inputs.maps_file,
                                                          warning.message)
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                       warning.lineno)
        self._results["maps_file"] = save_nifti(
            new_img_like(img, data), node_path(runtime, "maps.nii")
        )
        masked = data
        if isdefined(self.inputs.mask_file):
            mask = mask_on_grid(binarize_mask(self.inputs.mask_file), img.affine, data.shape)
            self._results["mask_file"] = save_nifti(
                new_img_like(img, mask.astype(np.uint8), set_dtype=True),
                node_path(runtime, "mask.nii.gz"),
            )
            masked = data.copy(order="K")
            masked[~mask] = 0
        self._results["masked_maps_file"] = save_nifti(
            new_img_like(img, masked.astype(np.float32), set_dtype=True),
            node_path(runtime, "maps_used.nii.gz"),
        )
        return runtime


def _as_4d(path: str):
    img = nib.load(path)
    if len(img.shape) == 3:
        img = nib.Nifti1Image(get_data(img)[..., np.newaxis], img.affine, img.header)
    return img


class _ThresholdInput(BaseInterfaceInputSpec):
    maps_file = File(exists=True, mandatory=True)
    mask_file = File(exists=True, desc="mask on the maps' grid")
    strategy = traits.Enum("ratio_n_voxels", "img_value", "percentile", usedefault=True)
    threshold = traits.Float(1.0, usedefault=True)
    two_sided = traits.Bool(False, usedefault=True)


class _ThresholdOutput(TraitedSpec):
    thresholded_file = File(exists=True)


class ThresholdMaps(SimpleInterface):
    """Thresholding (``ratio_n_voxels``, ``img_value``, ``percentile``)."""

    input_spec = _ThresholdInput
    output_spec = _ThresholdOutput

    def _run_interface(self, runtime):
        img, data = load_maps(self.inputs.maps_file)
        mask = _optional_mask(self.inputs.mask_file)
        threshold = resolve_threshold(
            data,
            strategy=self.inputs.strategy,
            threshold=self.inputs.threshold,
            two_sided=self.inputs.two_sided,
            mask=mask,
        )
        thresholded = threshold.apply(data)
        if not np.any(thresholded):
            raise ValueError(
                f"no map value survived thresholding (--thresholding-strategy "
                f"{self.inputs.strategy}, --threshold {self.inputs.threshold:g}): lower "
                "--threshold"
            )
        self._results["thresholded_file"] = save_nifti(
            new_img_like(img, thresholded), node_path(runtime, "thresholded.nii")
        )
        return runtime


def _optional_mask(path) -> np.ndarray | None:
    return get_data(nib.load(path)).astype(bool) if isdefined(path) else None


class _SplitInput(BaseInterfaceInputSpec):
    thresholded_file = File(exists=True, mandatory=True)
    mask_file = File(exists=True, desc="mask on the maps' grid")
    extractor = traits.Enum("local_regions", "connected_components", usedefault=True)
    smoothing_fwhm = traits.Either(None, traits.Float, default=6.0, usedefault=True)
    min_region_size = traits.Float(1350.0, usedefault=True)
    map_names = traits.List(traits.Str, mandatory=True, desc="one name per map")
    n_threads = traits.Int(1, usedefault=True, nohash=True)


class _SplitOutput(TraitedSpec):
    regions_file = File(exists=True, desc="4D float32 regions, one per volume")
    table_file = File(exists=True, desc="region look-up table (TSV)")
    names = traits.List(traits.Str)


class SplitRegions(SimpleInterface):
    """Region splitting (connected components or local regions) and the region table."""

    input_spec = _SplitInput
    output_spec = _SplitOutput

    def _run_interface(self, runtime):
        img, data = load_maps(self.inputs.thresholded_file)
        fwhm = self.inputs.smoothing_fwhm
        with blas_single_thread():
            split = split_maps(
                data,
                img.affine,
                extractor=self.inputs.extractor,
                min_region_size=self.inputs.min_region_size,
                smoothing_fwhm=fwhm if fwhm else None,
                mask=_optional_mask(self.inputs.mask_file),
                n_threads=self.inputs.n_threads,
            )
        if split is None:
            raise ValueError(
                "no region survived thresholding and splitting: lower --threshold or "
                "--min-region-size"
            )
        self._results["regions_file"] = save_nifti(
            new_img_like(img, split.regions, set_dtype=True),
            node_path(runtime, "regions.nii.gz"),
        )
        table = region_table(split.regions, img.affine, split.index, self.inputs.map_names)
        path = node_path(runtime, "regions.tsv")
        table.to_csv(path, sep="\t", index=False, na_rep="n/a")
        self._results["table_file"] = path
        self._results["names"] = list(table["name"])
        return runtime


class _ResampleInput(BaseInterfaceInputSpec):
    regions_file = File(exists=True, mandatory=True)
    reference_file = File(exists=True, mandatory=True, desc="an image on the target grid")
    resampling_target = traits.Enum(
        "data", "none", usedefault=True,
        desc="data: resample to the reference grid; none: the grids must already be equal",
    )
    allow_overlap = traits.Bool(True, usedefault=True, desc="False: overlapping regions fail")


class _ResampleOutput(TraitedSpec):
    regions_file = File(exists=True)


class ResampleRegions(SimpleInterface):
    """Regions onto a BOLD grid (trilinear, as the estimator's ``resampling_target="data"``)."""

    input_spec = _ResampleInput
    output_spec = _ResampleOutput

    def _run_interface(self, runtime):
        import warnings

        regions = nib.load(self.inputs.regions_file)
        ref = nib.load(self.inputs.reference_file)
        if self.inputs.resampling_target == "none":
            if not same_fov(regions.affine, regions.shape[:3], ref.affine, ref.shape[:3]):
                raise ValueError(
                    f"{self.inputs.reference_file}: its grid differs from the maps' grid, and "
                    "--resampling-target none does not resample (use data)"
                )
            out = regions
        else:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Resampling binary images")
                out = resample_img(regions, ref.affine, ref.shape[:3], interpolation="linear")
        if not self.inputs.allow_overlap:
            values = get_data(out)
            eps = np.finfo(values.dtype).eps if values.dtype.kind == "f" else 0
            if np.any((values > eps).sum(axis=3) > 1):
                raise ValueError(
                    f"{self.inputs.reference_file}: regions overlap on this run's grid, and "
                    "--no-allow-overlap forbids it (allow it, or raise --threshold)"
                )
        if not np.any(get_data(out)):
            raise ValueError(
                f"{self.inputs.reference_file}: no region left after resampling the regions to "
                "this grid (the maps and the BOLD data do not overlap)"
            )
        self._results["regions_file"] = save_nifti(out, node_path(runtime, "regions.nii"))
        return runtime

