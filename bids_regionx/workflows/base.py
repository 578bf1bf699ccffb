"""Top-level participant workflow: regions once per maps image, then every run."""

from __future__ import annotations

import json
import re
from collections import defaultdict

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_regionx.interfaces.bids import WriteRunOutputs
from bids_regionx.interfaces.regions import ResampleRegions
from bids_regionx.interfaces.signals import CombineRuns, Connectivity
from bids_regionx.workflows.regions import init_regions_wf
from bids_regionx.workflows.run import init_run_wf, writer_options


def node_name(text: str) -> str:
    """A valid nipype node name from an arbitrary label."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_")


def grid_key(run) -> tuple:
    """Runs with equal keys share one resampling of the regions."""
    return (tuple(run.shape[:3]), tuple(round(v, 6) for row in run.affine for v in row))


def combine_groups(runs) -> dict[tuple, list]:
    """Runs concatenated by ``--combine-runs``: same subject, session, task and space.

    Only groups whose runs carry a ``run`` entity are combined; a single run without one is
    already "one run per task" and keeps its own outputs.
    """
    groups: dict[tuple, list] = defaultdict(list)
    for run in runs:
        if run.entities.get("run") is None:
            continue
        ents = {k: v for k, v in run.entities.items() if k not in ("run",) and v is not None}
        groups[tuple(sorted(ents.items()))].append(run)
    return dict(sorted(groups.items()))


def init_bids_regionx_wf(settings, runs, maps_specs, *, name: str = "bids_regionx_wf"):
    """Participant-level workflow.

    Parameters
    ----------
    settings : bids_regionx.config.Settings
    runs : list of bids_regionx.io.queries.RunInputs
        Usable runs of the selected participants.
    maps_specs : list of bids_regionx.io.maps.MapsSpec
    name : str

    Returns
    -------
    nipype.pipeline.engine.Workflow
        Region extraction runs once per maps image (its output is shared by all runs); the
        regions are resampled once per distinct BOLD grid.
    """
    workflow = pe.Workflow(name=name)
    workflow.base_dir = str(settings.execution.work_dir)
    for spec in maps_specs:
        regions_wf = init_regions_wf(spec, settings, name=f"regions_{node_name(spec.label)}_wf")
        grids: dict[tuple, pe.Node] = {}
        timeseries: dict[str, tuple] = {}
        for run in runs:
            key = grid_key(run)
            if key not in grids:
                grids[key] = pe.Node(
                    ResampleRegions(
                        reference_file=str(run.bold),
                        resampling_target=settings.regions.resampling_target,
                        allow_overlap=settings.regions.allow_overlap,
                    ),
                    name=f"resample_{node_name(spec.label)}_grid{len(grids)}",
                )
                workflow.connect(regions_wf, "outputnode.regions_file", grids[key],
                                 "regions_file")
            run_wf = init_run_wf(run, spec, settings,
                                 name=f"{node_name(run.key)}_{node_name(spec.label)}_wf")
            workflow.connect([
                (grids[key], run_wf, [("regions_file", "inputnode.regions_file")]),
                (regions_wf, run_wf, [("outputnode.names", "inputnode.names")]),
            ])  # fmt: skip
            timeseries[run.key] = (run_wf, run)
        if settings.connectivity.combine_runs:
            for members in combine_groups([r for _, r in timeseries.values()]).values():
                _add_combined(workflow, members, timeseries, spec, settings)
    return workflow


def _add_combined(workflow, members, timeseries, spec, settings) -> None:
    """Concatenate the used runs of one subject/session/task and compute its connectomes."""
    first = members[0]
    label = node_name("_".join(f"{k}-{v}" for k, v in sorted(first.entities.items())
                               if k != "run" and v is not None))
    merge = pe.Node(niu.Merge(len(members)), name=f"merge_{label}_{node_name(spec.label)}")
    # Summaries are defined for every run (dropped or not), so they stay aligned with members.
    summaries = pe.Node(niu.Merge(len(members)),
                        name=f"summaries_{label}_{node_name(spec.label)}")
    for i, run in enumerate(members, start=1):
        run_wf, _ = timeseries[run.key]
        workflow.connect([
            (run_wf, merge, [("outputnode.timeseries_file", f"in{i}")]),
            (run_wf, summaries, [("outputnode.summary_file", f"in{i}")]),
        ])  # fmt: skip
    combine = pe.Node(CombineRuns(), name=f"combine_{label}_{node_name(spec.label)}")
    conn = pe.Node(
        Connectivity(
            measures=[m for m in settings.connectivity.measures if m != "tangent"],
            estimator=settings.connectivity.cov_estimator,
            fisher_z=settings.connectivity.fisher_z,
        ),
        name=f"connectivity_{label}_{node_name(spec.label)}",
    )
    entities = first.output_entities(spec)
    entities.pop("run", None)
    write = pe.Node(
        WriteRunOutputs(
            output_dir=str(settings.output_dir),
            entities=json.dumps(entities, sort_keys=True),
            bold_file=str(first.bold),
            bids_dir=str(settings.fmriprep_dir),
            atlas_label=spec.label,
            t_r=float(first.t_r),
            combined_from=[str(r.bold) for r in members],
            **writer_options(spec, settings),
        ),
        name=f"write_{label}_{node_name(spec.label)}",
        run_without_submitting=True,
    )
    workflow.connect([
        (merge, combine, [("out", "timeseries_files")]),
        (summaries, write, [("out", "summary_files")]),
        (combine, conn, [("timeseries_file", "timeseries_file")]),
        (combine, write, [("timeseries_file", "timeseries_file")]),
        (conn, write, [("relmat_files", "relmat_files"), ("stats", "stats"),
                       ("fisherz", "fisherz"), ("skipped", "skipped_measures")]),
    ])  # fmt: skip
