"""Interfaces writing BIDS-Derivatives: the atlas of regions and each run's outputs.

They run every time (``always_run``) but write atomically and only when the content changes,
so a rerun reproduces the output dir byte for byte and a killed run never leaves a partial file.
"""

from __future__ import annotations

import json

import nibabel as nib
import pandas as pd
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from bids_regionx import __version__
from bids_regionx.io import derivatives as deriv

_STAT_NAMES = {
    "pearsoncorrelation": "Pearson correlation",
    "partialcorrelation": "partial correlation",
    "covariance": "covariance",
    "precision": "precision (inverse covariance)",
}


def _read_tsv(path: str, **kwargs) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False, **kwargs)


class _AtlasInput(BaseInterfaceInputSpec):
    output_dir = traits.Str(mandatory=True)
    atlas = traits.Str(mandatory=True)
    space = traits.Str(mandatory=True)
    res = traits.Str("", usedefault=True)
    source_file = traits.Str(mandatory=True, desc="the maps file given by the user")
    map_names = traits.List(traits.Str, mandatory=True)
    maps_used_file = File(exists=True, mandatory=True)
    regions_file = File(exists=True, mandatory=True)
    table_file = File(exists=True, mandatory=True)


class _AtlasOutput(TraitedSpec):
    regions_file = traits.Str(desc="the regions in the output dataset")
    table_file = traits.Str()
    out_files = OutputMultiObject(traits.Str)


class WriteAtlas(SimpleInterface):
    """The maps as used and the extracted regions, as a nested BIDS-Atlas dataset."""

    input_spec = _AtlasInput
    output_spec = _AtlasOutput
    always_run = True

    def _run_interface(self, runtime):
        out = self.inputs.output_dir
        ents = {"space": self.inputs.space, "atlas": self.inputs.atlas}
        if self.inputs.res:
            ents["res"] = self.inputs.res
        table = _read_tsv(self.inputs.table_file)
        maps_path = deriv.output_path(out, "atlas_maps", suffix="probseg", extension=".nii.gz",
                                      **ents)
        regions_path = deriv.output_path(out, "atlas_regions", seg="regions", suffix="probseg",
                                         extension=".nii.gz", **ents)
        files = [
            deriv.write_nifti(maps_path, nib.load(self.inputs.maps_used_file)),
            deriv.write_json(maps_path.with_name(maps_path.name.replace(".nii.gz", ".json")), {
                "Description": "The maps image as used by bids_regionx (non-finite values set "
                               "to 0; zero outside the mask, if one was given).",
                "LabelMap": list(self.inputs.map_names),
                "Sources": [self.inputs.source_file],
                "SpatialReference": self.inputs.space,
            }),
            deriv.write_tsv(maps_path.with_name(maps_path.name.replace(".nii.gz", ".tsv")),
                            pd.DataFrame({"index": range(1, len(self.inputs.map_names) + 1),
                                          "name": list(self.inputs.map_names)})),
            deriv.write_nifti(regions_path, nib.load(self.inputs.regions_file)),
            deriv.write_json(regions_path.with_name(regions_path.name.replace(".nii.gz", ".json")),
                             {
                "Description": "Regions extracted from the maps (one region per volume; values "
                               "from the parent map, 0 elsewhere).",
                "LabelMap": list(table["name"]),
                "Sources": [deriv.bids_uri("", maps_path.relative_to(out))],
                "SpatialReference": self.inputs.space,
            }),
            deriv.write_tsv(regions_path.with_name(regions_path.name.replace(".nii.gz", ".tsv")),
                            table),
        ]
        files.append(deriv.write_atlas_description(out, self.inputs.atlas, version=__version__))
        self._results["regions_file"] = str(regions_path)
        self._results["table_file"] = str(files[5])
        self._results["out_files"] = [str(f) for f in files]
        return runtime


class _RunOutputsInput(BaseInterfaceInputSpec):
    output_dir = traits.Str(mandatory=True)
    entities = traits.Str(mandatory=True, desc="JSON: entities of the run's outputs")
    bold_file = traits.Str(mandatory=True)
    bids_dir = traits.Str(mandatory=True, desc="the preprocessed dataset (for BIDS URIs)")
    atlas_label = traits.Str(mandatory=True)
    t_r = traits.Float(mandatory=True)
    combined_from = traits.List(traits.Str, desc="BOLD runs concatenated into this output")
    timeseries_file = traits.Any(desc="region time series (undefined for a dropped run)")
    design_file = File(exists=True)
    outliers_file = File(exists=True)
    coverage_file = File(exists=True)
    summary_file = File(exists=True)
    relmat_files = traits.Any(desc="relationship matrices (a list, or one path)")
    stats = traits.Any(desc="stat- label of each matrix")
    fisherz = traits.Any(desc="whether each matrix holds Fisher z values")


class _RunOutputsOutput(TraitedSpec):
    out_files = OutputMultiObject(traits.Str)


class WriteRunOutputs(SimpleInterface):
    """Time series, coverage, design matrix, censoring mask and connectomes of one run."""

    input_spec = _RunOutputsInput
    output_spec = _RunOutputsOutput
    always_run = True

    def _run_interface(self, runtime):
        out = self.inputs.output_dir
        ents = json.loads(self.inputs.entities)
        source_ents = {k: v for k, v in ents.items()
                       if k not in ("space", "atlas", "seg", "res", "den")}
        summary = (json.loads(open(self.inputs.summary_file).read())
                   if isdefined(self.inputs.summary_file) else {})
        sources = self._sources()
        regions_uri = self._regions_uri(ents)
        files = []
        design = None
        if isdefined(self.inputs.design_file):
            path = deriv.output_path(out, "design", suffix="design", extension=".tsv",
                                     **source_ents)
            design = _read_tsv(self.inputs.design_file)
            summary["confound_regressors"] = list(design.columns)
            files += [deriv.write_tsv(path, design),
                      deriv.write_json(_sidecar(path), _design_meta(summary, design, sources))]
        if isdefined(self.inputs.outliers_file):
            path = deriv.output_path(out, "outliers", suffix="outliers", extension=".tsv",
                                     **source_ents)
            files += [deriv.write_tsv(path, _read_tsv(self.inputs.outliers_file)),
                      deriv.write_json(_sidecar(path), _outliers_meta(summary, sources))]
        if isdefined(self.inputs.coverage_file):
            path = deriv.output_path(out, "coverage", stat="coverage", suffix="bold",
                                     extension=".tsv", **ents)
            files += [deriv.write_tsv(path, _read_tsv(self.inputs.coverage_file)),
                      deriv.write_json(_sidecar(path), {
                          "Description": "Fraction of each region's weight (|value|) inside "
                                         "the run's brain mask.",
                          "MinimumCoverage": summary.get("options", {}).get("min_coverage"),
                          "Sources": sources + [regions_uri]})]
        ts = self.inputs.timeseries_file
        if isdefined(ts) and ts:
            path = deriv.output_path(out, "region_timeseries", stat="mean",
                                     suffix="timeseries", extension=".tsv", **ents)
            series = _read_tsv(ts)
            files += [deriv.write_tsv(path, series),
                      deriv.write_json(_sidecar(path), self._timeseries_meta(
                          summary, sources, regions_uri, len(series)))]
            ts_uri = deriv.bids_uri("", path.relative_to(out))
            # A one-element output list arrives from nipype unwrapped.
            for matrix, stat, z in zip(_as_list(self.inputs.relmat_files),
                                       _as_list(self.inputs.stats), _as_list(self.inputs.fisherz)):
                extra = {"desc": "fisherz"} if z else {}
                rpath = deriv.output_path(out, "relmat", stat=stat, suffix="relmat",
                                          extension=".tsv", **ents, **extra)
                files += [deriv.write_tsv(rpath, _read_tsv(matrix, index_col=0), index=True),
                          deriv.write_json(_sidecar(rpath), _relmat_meta(
                              stat, z, summary, ts_uri, regions_uri, len(series)))]
        self._results["out_files"] = [str(f) for f in files]
        return runtime

    def _sources(self) -> list[str]:
        bolds = self.inputs.combined_from if isdefined(self.inputs.combined_from) and \
            self.inputs.combined_from else [self.inputs.bold_file]
        return [deriv.source_uri(self.inputs.bids_dir, b) for b in bolds]

    def _regions_uri(self, ents) -> str:
        atlas_ents = {"space": ents["space"], "atlas": ents["atlas"]}
        if ents.get("res"):
            atlas_ents["res"] = ents["res"]
        path = deriv.output_path(self.inputs.output_dir, "atlas_regions", seg="regions",
                                 suffix="probseg", extension=".tsv", **atlas_ents)
        return deriv.bids_uri("", path.relative_to(self.inputs.output_dir))

    def _timeseries_meta(self, summary, sources, regions_uri, n_rows) -> dict:
        options = summary.get("options", {})
        strategy = summary.get("strategy", {})
        meta = {
            "Description": "Denoised region time series: least squares of the BOLD data on the "
                           "region maps, then confound regression and cleaning.",
            "SamplingFrequency": 1.0 / self.inputs.t_r,
            "RepetitionTime": self.inputs.t_r,
            "NumberOfVolumes": n_rows,
            "Sources": sources + [regions_uri],
            "NodeFiles": [regions_uri],
            "DenoisingStrategy": strategy.get("name"),
            "ConfoundRegressors": summary.get("confound_regressors", []),
            "NumberOfVolumesDiscardedByNonsteadyStatesDetector": summary.get("n_dummy"),
            "NumberOfVolumesDiscardedByMotionScrubbing": summary.get("n_motion"),
            "NumberOfVolumesDiscardedAsShortSegments": summary.get("n_short_segment"),
            "MeanFramewiseDisplacement": summary.get("mean_fd"),
            "RegionsSetToNA": summary.get("regions_na", []),
            "MinimumCoverage": options.get("min_coverage"),
            "SmoothingFWHM": options.get("smoothing_fwhm"),
            "Standardize": options.get("standardize"),
            "StandardizeConfounds": options.get("standardize_confounds"),
            "Detrend": options.get("detrend"),
            "LowPass": options.get("low_pass"),
            "HighPass": options.get("high_pass"),
            "CleanArguments": options.get("clean_args", {}),
        }
        if self.inputs.combined_from:
            meta["CombinedRuns"] = len(self.inputs.combined_from)
            meta["Description"] = ("Region time series of several runs, each z-scored over time "
                                   "and then concatenated.")
        return meta


def _as_list(value) -> list:
    if not isdefined(value) or value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _sidecar(path):
    name = path.name
    for ext in (".nii.gz", ".tsv"):
        if name.endswith(ext):
            return path.with_name(name[: -len(ext)] + ".json")
    raise ValueError(f"no sidecar name for {path}")


def _design_meta(summary, design, sources) -> dict:
    strategy = summary.get("strategy", {})
    return {
        "Description": "Confound regressors removed from the region time series (before "
                       "censoring), selected by the denoising strategy.",
        "DenoisingStrategy": strategy.get("name"),
        "StrategyDescription": strategy.get("description"),
        "ConfoundRegressors": list(design.columns),
        "Sources": sources,
    }


def _outliers_meta(summary, sources) -> dict:
    strategy = summary.get("strategy", {})
    censoring = strategy.get("censoring") or {}
    return {
        "Description": "Volumes left out of the time series (1) and why.",
        "RunStatus": "dropped" if summary.get("dropped") else "used",
        "DropReason": summary.get("dropped"),
        "NumberOfVolumes": summary.get("n_volumes"),
        "NumberOfVolumesKept": summary.get("n_kept"),
        "NumberOfVolumesDiscardedByNonsteadyStatesDetector": summary.get("n_dummy"),
        "NumberOfVolumesDiscardedByMotionScrubbing": summary.get("n_motion"),
        "NumberOfVolumesCensoredForFD": summary.get("n_fd"),
        "NumberOfVolumesCensoredForDVARS": summary.get("n_dvars"),
        "NumberOfVolumesDiscardedAsShortSegments": summary.get("n_short_segment"),
        "MeanFramewiseDisplacement": summary.get("mean_fd"),
        "MaxFramewiseDisplacement": summary.get("max_fd"),
        "FramewiseDisplacementThreshold": censoring.get("fd_threshold"),
        "DVARSThreshold": censoring.get("dvars_threshold"),
        "MinimumSegmentLength": censoring.get("min_segment"),
        "KeptTime": summary.get("kept_time_s"),
        "RegionsSetToNA": summary.get("regions_na", []),
        "Sources": sources,
    }


def _relmat_meta(stat, z, summary, ts_uri, regions_uri, n_rows) -> dict:
    return {
        "Description": f"{_STAT_NAMES[stat]} between region time series"
                       + (" (Fisher z-transformed)" if z else "") + ".",
        "RelationshipMeasure": _STAT_NAMES[stat],
        "FisherZ": bool(z),
        "Weighted": True,
        "Directed": False,
        "ValidDiagonal": stat in ("covariance", "precision"),
        "StorageFormat": "Full",
        "NumberOfVolumes": n_rows,
        "Sources": [ts_uri],
        "NodeFiles": [regions_uri],
    }
