"""Interfaces writing BIDS-Derivatives: the atlas of regions and each run's outputs.

They run every time (``always_run``) but write atomically and only when the content changes,
so a rerun reproduces the output dir byte for byte and a killed run never leaves a partial file.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

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
    source_file = traits.Str(
        mandatory=True, desc="the maps file given by the user, as a BIDS URI (or a path)"
    )
    description_file = traits.Str(
        "", usedefault=True, desc="the source atlas-<label>_description.json, if any"
    )
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
        with deriv.staged_writes():  # every file of the atlas, or none of them
            return self._write(runtime)

    def _write(self, runtime):
        out = self.inputs.output_dir
        ents = {"space": self.inputs.space, "atlas": self.inputs.atlas}
        if self.inputs.res:
            ents["res"] = self.inputs.res
        table = _read_tsv(self.inputs.table_file)
        maps_path = deriv.output_path(out, "atlas_maps", suffix="probseg", extension=".nii.gz",
                                      **ents)
        regions_path = deriv.output_path(out, "atlas_regions", seg="regions", suffix="probseg",
                                         extension=".nii.gz", **ents)
        maps_img = nib.load(self.inputs.maps_used_file)
        maps_meta = {
            "Description": "The maps image as used by bids_regionx (non-finite values set "
                           "to 0; zero outside the mask, if one was given).",
            "LabelMap": list(self.inputs.map_names),
            "Sources": [self.inputs.source_file],
            "SpatialReference": self.inputs.space,
        }
        if self.inputs.res:
            zooms = "x".join(f"{float(z):g}" for z in maps_img.header.get_zooms()[:3])
            maps_meta["Resolution"] = f"res-{self.inputs.res}: voxels of {zooms} mm"
        files = [
            deriv.write_nifti(maps_path, maps_img),
            deriv.write_json(maps_path.with_name(maps_path.name.replace(".nii.gz", ".json")),
                             maps_meta),
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
        # Name, License, Authors... of the source atlas are carried over when it has them.
        source = (SimpleNamespace(description_file=Path(self.inputs.description_file))
                  if self.inputs.description_file else None)
        files.append(deriv.write_atlas_description(out, self.inputs.atlas, version=__version__,
                                                   maps_spec=source))
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
    summary_files = traits.List(
        traits.Any, desc="with combined_from: the summary of each run, in the same order"
    )
    regions_uri = traits.Str(
        "", usedefault=True, desc="BIDS URI of the regions table (default: from the entities)"
    )
    dtype = traits.Enum("", "auto", "float32", "float64", usedefault=True,
                        desc="dtype of the written time series ('': as computed, float64)")
    timeseries_file = traits.Any(desc="region time series (undefined for a dropped run)")
    design_file = File(exists=True)
    outliers_file = File(exists=True)
    coverage_file = File(exists=True)
    summary_file = File(exists=True)
    relmat_files = traits.Any(desc="relationship matrices (a list, or one path)")
    stats = traits.Any(desc="stat- label of each matrix")
    fisherz = traits.Any(desc="whether each matrix holds Fisher z values")
    skipped_measures = traits.Any(desc="connectivity measures not computed, with the reason")


class _RunOutputsOutput(TraitedSpec):
    out_files = OutputMultiObject(traits.Str)


class WriteRunOutputs(SimpleInterface):
    """Time series, coverage, design matrix, censoring mask and connectomes of one run."""

    input_spec = _RunOutputsInput
    output_spec = _RunOutputsOutput
    always_run = True

    def _run_interface(self, runtime):
        # Every file of the run, or none: never a time series without its sidecar.
        with deriv.staged_writes():
            return self._write(runtime)

    def _write(self, runtime):
        out = self.inputs.output_dir
        ents = json.loads(self.inputs.entities)
        source_ents = {k: v for k, v in ents.items()
                       if k not in ("space", "atlas", "seg", "res", "den")}
        summary = (json.loads(Path(self.inputs.summary_file).read_text())
                   if isdefined(self.inputs.summary_file) else {})
        if self._combined() and isdefined(self.inputs.summary_files):
            summary = _combined_summary([_read_summary(p) for p in self.inputs.summary_files])
        sources = self._sources(summary)
        regions_uri = self.inputs.regions_uri or self._regions_uri(ents)
        files = []
        design = None
        if isdefined(self.inputs.design_file):
            path = deriv.output_path(out, "design", suffix="design", extension=".tsv",
                                     **source_ents)
            design = _read_design(self.inputs.design_file)
            summary["confound_regressors"] = list(design.columns)
            # A strategy without regressors (``none``) removes nothing: no design file.
            if design.shape[1]:
                files += [deriv.write_tsv(path, design),
                          deriv.write_json(_sidecar(path),
                                           _design_meta(summary, design, sources))]
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
            series = self._as_dtype(_read_tsv(ts))
            files += [deriv.write_tsv(path, series),
                      deriv.write_json(_sidecar(path), self._timeseries_meta(
                          summary, sources, regions_uri, len(series)))]
            ts_uri = deriv.bids_uri("", path.relative_to(out))
            # A one-element output list arrives from nipype unwrapped.
            for matrix, stat, z in zip(_as_list(self.inputs.relmat_files),
                                       _as_list(self.inputs.stats), _as_list(self.inputs.fisherz),
                                       strict=True):
                extra = {"desc": "fisherz"} if z else {}
                rpath = deriv.output_path(out, "relmat", stat=stat, suffix="relmat",
                                          extension=".tsv", **ents, **extra)
                files += [deriv.write_tsv(rpath, _read_tsv(matrix, index_col=0), index=True),
                          deriv.write_json(_sidecar(rpath), _relmat_meta(
                              stat, z, summary, ts_uri, regions_uri, len(series)))]
        self._results["out_files"] = [str(f) for f in files]
        return runtime

    def _combined(self) -> bool:
        return isdefined(self.inputs.combined_from) and bool(self.inputs.combined_from)

    def _sources(self, summary) -> list[str]:
        bolds = [self.inputs.bold_file]
        if self._combined():
            # Only the runs that went into the concatenation (dropped runs did not).
            used = summary.get("used_runs")
            bolds = [b for i, b in enumerate(self.inputs.combined_from)
                     if used is None or i in used]
        return [deriv.source_uri(self.inputs.bids_dir, b) for b in bolds]

    def _as_dtype(self, series: pd.DataFrame) -> pd.DataFrame:
        """The time series in the ``--dtype`` asked for (``auto``: float32 for float32 BOLD)."""
        dtype = self.inputs.dtype
        if dtype == "auto":
            bold_dtype = nib.load(self.inputs.bold_file).get_data_dtype()
            dtype = "float32" if bold_dtype.kind != "f" or bold_dtype.itemsize <= 4 \
                else "float64"
        return series.astype(dtype) if dtype else series

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
        skipped = _as_list(self.inputs.skipped_measures)
        meta = {
            **({"ConnectivityNotComputed": skipped} if skipped else {}),
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
        if self._combined():
            meta["CombinedRuns"] = len(summary.get("used_runs", self.inputs.combined_from))
            meta["Description"] = ("Region time series of several runs, each z-scored over time "
                                   "and then concatenated.")
        return meta


def _read_design(path: str) -> pd.DataFrame:
    """A design matrix; a strategy without regressors gives a file without columns."""
    try:
        return _read_tsv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def _read_summary(path) -> dict:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _combined_summary(summaries: list[dict]) -> dict:
    """The summary of a concatenation: counts summed over the runs used, regions n/a in any.

    ``used_runs`` lists the positions of the runs that were used (not dropped).
    """
    used = [i for i, s in enumerate(summaries) if not s.get("dropped")]
    runs = [summaries[i] for i in used]
    first = runs[0] if runs else (summaries[0] if summaries else {})
    combined: dict = {"strategy": first.get("strategy", {}), "options": first.get("options", {}),
                      "used_runs": used, "dropped": None if runs else "every run was dropped"}
    for key in ("n_volumes", "n_kept", "n_dummy", "n_motion", "n_fd", "n_dvars",
                "n_short_segment"):
        values = [s.get(key) for s in runs]
        combined[key] = sum(values) if values and None not in values else None
    weights = [(s.get("mean_fd"), s.get("n_volumes")) for s in runs]
    if weights and all(fd is not None and n for fd, n in weights):
        total = sum(n for _, n in weights)
        combined["mean_fd"] = sum(fd * n for fd, n in weights) / total
    names: dict = {}
    for s in runs:
        names.update(dict.fromkeys(s.get("confound_regressors", [])))
    combined["confound_regressors"] = list(names)
    missing: dict = {}
    for s in runs:
        missing.update(dict.fromkeys(s.get("regions_na", [])))
    combined["regions_na"] = list(missing)
    return combined


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
