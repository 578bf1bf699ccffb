"""Per-run workflow: extraction with denoising, connectivity, outputs."""

from __future__ import annotations

import json

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_regionx.interfaces.bids import WriteRunOutputs
from bids_regionx.interfaces.signals import Connectivity, ExtractRunSignals


def cleaning_options(settings, t_r: float) -> dict:
    """Fields of a run's :class:`~bids_regionx.core.run_signals.CleaningOptions`, as JSON."""
    d = settings.denoise
    return {
        "t_r": float(t_r),
        "standardize": None if d.standardize in (None, "none") else d.standardize,
        "standardize_confounds": bool(d.standardize_confounds),
        "detrend": bool(d.detrend),
        "low_pass": d.low_pass,
        "high_pass": d.high_pass,
        "smoothing_fwhm": settings.regions.smoothing_fwhm or None,
        "high_variance_confounds": bool(d.high_variance_confounds),
        "clean_args": dict(d.clean_args),
        "min_coverage": float(d.min_coverage),
        "min_time": float(d.min_time),
    }


def regions_uri(maps_spec, output_dir) -> str:
    """BIDS URI of the regions table in the output dataset (on the maps' space and ``res``)."""
    from bids_regionx.io.derivatives import bids_uri, output_path

    path = output_path(output_dir, "atlas_regions", space=maps_spec.space, atlas=maps_spec.label,
                       seg="regions", res=maps_spec.res, suffix="probseg", extension=".tsv")
    return bids_uri("", path.relative_to(output_dir))


def writer_options(maps_spec, settings) -> dict:
    """Inputs of every ``WriteRunOutputs`` node that come from the maps and the settings."""
    return {
        "regions_uri": regions_uri(maps_spec, settings.output_dir),
        "dtype": settings.denoise.dtype or "",
    }


def init_run_wf(run, maps_spec, settings, *, name: str = "run_wf") -> pe.Workflow:
    """Region time series, connectomes and their derivatives for one BOLD run.

    Parameters
    ----------
    run : bids_regionx.io.queries.RunInputs
    maps_spec : bids_regionx.io.maps.MapsSpec
    settings : bids_regionx.config.Settings
    name : str

    Inputs
    ------
    regions_file
        Regions on the run's grid.
    names
        Region names.

    Outputs
    -------
    timeseries_file
        Cleaned region time series (undefined when the run was dropped).
    summary_file
        Counts, strategy and options (JSON).
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["regions_file", "names"]),
                        name="inputnode")
    outputnode = pe.Node(
        niu.IdentityInterface(fields=["timeseries_file", "summary_file"]), name="outputnode"
    )
    extract = pe.Node(
        ExtractRunSignals(
            bold_file=str(run.bold),
            confounds_file=str(run.confounds),
            strategy=settings.denoise.strategy,
            strategy_overrides=json.dumps(settings.denoise.strategy_overrides(), sort_keys=True),
            options=json.dumps(cleaning_options(settings, run.t_r), sort_keys=True),
        ),
        name="extract_signals",
        mem_gb=1.0,
    )
    if run.mask is not None:
        extract.inputs.mask_file = str(run.mask)
    if run.confounds_json is not None:
        extract.inputs.confounds_json = str(run.confounds_json)
    conn = pe.Node(
        Connectivity(
            measures=[m for m in settings.connectivity.measures if m != "tangent"],
            estimator=settings.connectivity.cov_estimator,
            fisher_z=settings.connectivity.fisher_z,
        ),
        name="connectivity",
    )
    write = pe.Node(
        WriteRunOutputs(
            output_dir=str(settings.output_dir),
            entities=json.dumps(run.output_entities(maps_spec), sort_keys=True),
            bold_file=str(run.bold),
            bids_dir=str(settings.fmriprep_dir),
            atlas_label=maps_spec.label,
            t_r=float(run.t_r),
            **writer_options(maps_spec, settings),
        ),
        name="write_outputs",
        run_without_submitting=True,
    )
    workflow.connect([
        (inputnode, extract, [("regions_file", "regions_file"), ("names", "names")]),
        (extract, conn, [("timeseries_file", "timeseries_file")]),
        (extract, write, [("timeseries_file", "timeseries_file"),
                          ("design_file", "design_file"),
                          ("outliers_file", "outliers_file"),
                          ("coverage_file", "coverage_file"),
                          ("summary_file", "summary_file")]),
        (conn, write, [("relmat_files", "relmat_files"), ("stats", "stats"),
                       ("fisherz", "fisherz"), ("skipped", "skipped_measures")]),
        (extract, outputnode, [("timeseries_file", "timeseries_file"),
                               ("summary_file", "summary_file")]),
    ])  # fmt: skip
    return workflow
