"""The participant level: inputs, workflow, execution, crash collection, reports."""

from __future__ import annotations

import datetime
import logging
import os
import sys
import uuid
from pathlib import Path

logger = logging.getLogger("bids_regionx")


def new_run_id() -> str:
    """A sortable, unique id for one invocation (``YYYYmmdd-HHMMSS_<uuid8>``)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stamp}_{uuid.uuid4().hex[:8]}"


def save_settings(settings, run_id: str, subjects) -> list[Path]:
    """Write the resolved settings as TOML in the work dir and in each subject's log folder."""
    text = settings.to_toml()
    targets = [Path(settings.execution.work_dir) / run_id / "config.toml"]
    targets += [Path(settings.output_dir) / f"sub-{s}" / "log" / run_id / "config.toml"
                for s in sorted(subjects)]
    for path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return targets


def _plugin(settings):
    """Nipype plugin name and arguments from the execution settings."""
    execution = settings.execution
    args = dict(execution.plugin_args)
    if execution.plugin == "MultiProc":
        args.setdefault("n_procs", execution.nprocs or len(os.sched_getaffinity(0)))
        if execution.mem_gb:
            args.setdefault("memory_gb", execution.mem_gb)
        args.setdefault("raise_insufficient", False)
    return execution.plugin, args


def configure_nipype(workflow, settings, crash_dir: Path) -> None:
    """Execution settings: crash files kept (as text), resumable work dir, no update checks."""
    from nipype import logging as nipype_logging

    crash_dir.mkdir(parents=True, exist_ok=True)
    level = {0: "WARNING", 1: "INFO"}.get(settings.execution.verbosity, "DEBUG")
    for name in ("nipype.workflow", "nipype.interface", "nipype.utils"):
        nipype_logging.getLogger(name).setLevel(level)
    workflow.config["execution"] = {
        "crashdump_dir": str(crash_dir),
        "crashfile_format": "txt",
        "stop_on_first_crash": settings.execution.stop_on_first_crash,
        "remove_unnecessary_outputs": False,
        "parameterize_dirs": False,
        "check_version": False,
        # nipype sleeps between polls of its job queue (2 s by default); most nodes here take
        # well under a second.
        "poll_sleep_duration": 0.2 if settings.execution.plugin in ("Linear", "MultiProc")
        else 2,
    }
    if settings.execution.resource_monitor:
        from nipype import config as nipype_config

        nipype_config.enable_resource_monitor()
    workflow.config["monitoring"] = {"enabled": settings.execution.resource_monitor}


def crashed_nodes(crash_dir: Path) -> list[tuple[str, str]]:
    """``(node, one-line error)`` for each crash file written during this invocation."""
    out = []
    for path in sorted(crash_dir.glob("crash-*.txt")):
        text = path.read_text(errors="replace")
        node = ""
        for line in text.splitlines():
            if line.startswith("Node:"):
                node = line.split(":", 1)[1].strip()
                break
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        error = next((ln for ln in reversed(lines) if "Error" in ln or "Exception" in ln),
                     lines[-1] if lines else "unknown error")
        out.append((node, error.strip()))
    return out


def run_participant(settings) -> int:
    """Run the participant level; return the exit code (0 ok, 1 a run failed)."""
    from bids_regionx.io import derivatives
    from bids_regionx.io.maps import collect_maps
    from bids_regionx.io.queries import collect_runs

    maps_specs = collect_maps(settings)
    runs = collect_runs(settings, maps_space=maps_specs[0].space)
    usable = [r for r in runs if not getattr(r, "problem", None)]
    problems = [r for r in runs if getattr(r, "problem", None)]
    derivatives.prepare_output_dir(settings)
    run_id = new_run_id()
    subjects = sorted({r.entities["subject"] for r in runs})
    save_settings(settings, run_id, subjects)

    if settings.reports.boilerplate_only:
        from bids_regionx.reports.boilerplate import write_boilerplate

        write_boilerplate(settings, maps_specs)
        return 0
    failed = [(r.key, r.problem) for r in problems]
    if not settings.reports.reports_only and usable:
        from bids_regionx.workflows.base import init_bids_regionx_wf

        workflow = init_bids_regionx_wf(settings, usable, maps_specs)
        crash_dir = Path(settings.execution.work_dir) / run_id / "crash"
        configure_nipype(workflow, settings, crash_dir)
        if settings.execution.write_graph:
            workflow.write_graph(graph2use="colored", format="svg", simple_form=True)
        plugin, plugin_args = _plugin(settings)
        try:
            workflow.run(plugin=plugin, plugin_args=plugin_args)
        except RuntimeError as exc:
            if not list(crash_dir.glob("crash-*")):
                raise
            logger.debug("workflow did not finish cleanly: %s", exc)
        failed += crashed_nodes(crash_dir)
    for key, error in failed:
        print(f"bids_regionx: run failed: {key}: {error}", file=sys.stderr)
    report_failed = False
    if settings.reports.write_reports or settings.reports.reports_only:
        report_failed = _write_reports(settings, maps_specs, subjects, failed)
    if not settings.reports.reports_only:
        try:
            from bids_regionx.reports.boilerplate import write_boilerplate

            write_boilerplate(settings, maps_specs)
        except ImportError:
            pass
    if failed or report_failed:
        return 1
    print(f"bids_regionx: outputs in {settings.output_dir}", file=sys.stderr)
    return 0


def _write_reports(settings, maps_specs, subjects, failed) -> bool:
    """Per-subject HTML reports; a report failure is recorded and never touches outputs."""
    try:
        from bids_regionx.reports.participant import write_participant_report
    except ImportError:
        return False
    broken = False
    for subject in subjects:
        try:
            write_participant_report(settings, maps_specs, subject, failed=failed)
        except Exception as exc:  # a report must never take the outputs down with it
            broken = True
            print(f"bids_regionx: report failed: sub-{subject}: {exc}", file=sys.stderr)
    return broken
