"""Nipype interfaces for the per-run steps: extraction with denoising, connectivity, combining."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
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

from bids_regionx.core.combine import combine_runs
from bids_regionx.core.connectivity import connectivity, fisher_z
from bids_regionx.core.denoise import load_strategy
from bids_regionx.core.masks import mask_on_grid
from bids_regionx.core.run_signals import CleaningOptions, region_signals_for_run
from bids_regionx.interfaces.utils import blas_single_thread, node_path, write_json

#: Relationship-matrix file label of each connectivity measure (the ``stat-`` entity).
STAT_LABELS = {
    "correlation": "pearsoncorrelation",
    "partial correlation": "partialcorrelation",
    "covariance": "covariance",
    "precision": "precision",
}


def read_timeseries(path: str) -> pd.DataFrame:
    """A region time-series TSV (``n/a`` = NaN)."""
    return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False)


def _write_tsv(frame: pd.DataFrame, path: str, index: bool = False) -> str:
    frame.to_csv(path, sep="\t", index=index, na_rep="n/a", lineterminator="\n")
    return path


class _ExtractInput(BaseInterfaceInputSpec):
    bold_file = File(exists=True, mandatory=True)
    mask_file = File(exists=True, desc="the run's brain mask")
    confounds_file = File(exists=True, mandatory=True)
    confounds_json = File(exists=True)
    regions_file = File(exists=True, mandatory=True, desc="regions on the run's grid")
    names = traits.List(traits.Str, mandatory=True)
    strategy = traits.Str(mandatory=True, desc="built-in strategy name or path to a file")
    strategy_overrides = traits.Str("{}", usedefault=True, desc="JSON of censoring overrides")
    options = traits.Str(mandatory=True, desc="JSON of CleaningOptions fields")


class _ExtractOutput(TraitedSpec):
    timeseries_file = File(desc="cleaned region time series (absent when the run is dropped)")
    design_file = File(exists=True)
    outliers_file = File(exists=True)
    coverage_file = File(exists=True)
    summary_file = File(exists=True, desc="counts, strategy and options (JSON)")
    dropped = traits.Str(desc="why the run was not used ('' when used)")


class ExtractRunSignals(SimpleInterface):
    """Time-series extraction with confound regression and cleaning, for one BOLD run."""

    input_spec = _ExtractInput
    output_spec = _ExtractOutput

    def _run_interface(self, runtime):
        from bids_regionx.core.denoise import read_confounds

        strategy = load_strategy(self.inputs.strategy).with_overrides(
            **json.loads(self.inputs.strategy_overrides)
        )
        options = CleaningOptions(**json.loads(self.inputs.options))
        bold = nib.load(self.inputs.bold_file)
        regions = nib.load(self.inputs.regions_file)
        meta_path = self.inputs.confounds_json if isdefined(self.inputs.confounds_json) else None
        confounds, meta = read_confounds(self.inputs.confounds_file, meta_path)
        brain = None
        if isdefined(self.inputs.mask_file):
            brain = mask_on_grid(nib.load(self.inputs.mask_file), bold.affine, bold.shape)
        with blas_single_thread():
            result = region_signals_for_run(
                bold,
                regions,
                list(self.inputs.names),
                confounds,
                strategy,
                options,
                confounds_meta=meta,
                brain_mask=brain,
                confounds_source=self.inputs.confounds_file,
            )
        if result.timeseries is not None:
            self._results["timeseries_file"] = _write_tsv(
                result.timeseries, node_path(runtime, "timeseries.tsv")
            )
        self._results["design_file"] = _write_tsv(result.design, node_path(runtime, "design.tsv"))
        self._results["outliers_file"] = _write_tsv(
            result.outliers, node_path(runtime, "outliers.tsv")
        )
        self._results["coverage_file"] = _write_tsv(
            result.coverage, node_path(runtime, "coverage.tsv")
        )
        summary = {
            **result.summary,
            "confound_regressors": [str(c) for c in result.design.columns],
            "dropped": result.dropped,
            "strategy": strategy.to_dict(),
            "options": json.loads(self.inputs.options),
        }
        self._results["summary_file"] = write_json(node_path(runtime, "summary.json"), summary)
        self._results["dropped"] = result.dropped or ""
        return runtime


class _ConnectivityInput(BaseInterfaceInputSpec):
    timeseries_file = File(exists=True, desc="region time series; none: no output")
    measures = traits.List(traits.Enum(*STAT_LABELS), mandatory=True)
    estimator = traits.Enum("empirical", "ledoit_wolf", usedefault=True)
    fisher_z = traits.Bool(False, usedefault=True)


class _ConnectivityOutput(TraitedSpec):
    relmat_files = OutputMultiObject(File(exists=True))
    stats = OutputMultiObject(traits.Str, desc="stat- label of each file")
    fisherz = OutputMultiObject(traits.Bool, desc="whether each file holds Fisher z values")
    skipped = traits.List(traits.Str, desc="measures not computed, with the reason")


class Connectivity(SimpleInterface):
    """Relationship matrices (``relmat``) of a region time series, one per measure."""

    input_spec = _ConnectivityInput
    output_spec = _ConnectivityOutput

    def _run_interface(self, runtime):
        files, stats, zs, skipped = [], [], [], []
        if isdefined(self.inputs.timeseries_file):
            ts = read_timeseries(self.inputs.timeseries_file)
            names = list(ts.columns)
            with blas_single_thread():
                for measure in self.inputs.measures:
                    try:
                        matrix = connectivity(
                            ts.to_numpy(), kind=measure, estimator=self.inputs.estimator
                        )
                    except ValueError as exc:
                        # One measure that cannot be computed (e.g. a singular covariance for
                        # precision) must not cost the run its time series and other measures.
                        skipped.append(f"{measure}: {exc}")
                        continue
                    stat = STAT_LABELS[measure]
                    files.append(_write_relmat(matrix, names, node_path(runtime, f"{stat}.tsv")))
                    stats.append(stat)
                    zs.append(False)
                    if self.inputs.fisher_z and measure in ("correlation", "partial correlation"):
                        zmat = fisher_z(matrix)
                        files.append(
                            _write_relmat(zmat, names, node_path(runtime, f"{stat}_z.tsv"))
                        )
                        stats.append(stat)
                        zs.append(True)
        self._results["relmat_files"] = files
        self._results["stats"] = stats
        self._results["fisherz"] = zs
        self._results["skipped"] = skipped
        return runtime


def _write_relmat(matrix: np.ndarray, names: list[str], path: str) -> str:
    frame = pd.DataFrame(matrix, index=pd.Index(names, name="Node"), columns=names)
    return _write_tsv(frame, path, index=True)


class _CombineInput(BaseInterfaceInputSpec):
    timeseries_files = traits.List(
        traits.Any, mandatory=True, desc="one per run; undefined for dropped runs"
    )


class _CombineOutput(TraitedSpec):
    timeseries_file = File(desc="combined series (absent when every run was dropped)")
    n_runs = traits.Int


class CombineRuns(SimpleInterface):
    """z-score each cleaned run and concatenate them (``--combine-runs``)."""

    input_spec = _CombineInput
    output_spec = _CombineOutput

    def _run_interface(self, runtime):
        runs = [read_timeseries(p) for p in self.inputs.timeseries_files if isdefined(p) and p]
        self._results["n_runs"] = len(runs)
        if runs:
            self._results["timeseries_file"] = _write_tsv(
                combine_runs(runs), node_path(runtime, "timeseries.tsv")
            )
        return runtime
