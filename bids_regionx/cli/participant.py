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
    from bids_regionx.io.derivatives import write_text

    for path in targets:
        write_text(path, text, shared=False)  # atomic: never a truncated config.toml
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
    # Without -v a failure is one line per run (printed by run_participant from the crash
    # files), so nipype's own error reports and tracebacks are silenced; -v shows them.
    level = {0: "CRITICAL", 1: "INFO"}.get(settings.execution.verbosity, "DEBUG")
    for name in ("nipype.workflow", "nipype.interface", "nipype.utils"):
        nipype_logging.getLogger(name).setLevel(level)
    # nipype has its own handler: do not print every message a second time through ours.
    logging.getLogger("nipype").propagate = False
    # Also applied where nipype re-reads its config (batch jobs of the SLURM plugins).
    workflow.config["logging"] = {
        "workflow_level": level, "interface_level": level, "utils_level": level,
    }
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
    from bids_regionx.cli.failures import read_crash

    return [read_crash(path)[::2] for path in sorted(crash_dir.glob("crash-*.txt"))]


def run_participant(settings) -> int:
    """Run the participant level; return the exit code (0 ok, 1 a run failed)."""
    from bids_regionx.errors import UsageError
    from bids_regionx.io import derivatives
    from bids_regionx.io.maps import collect_maps
    from bids_regionx.io.queries import collect_runs

    if settings.regions.resampling_target in ("maps", "mask"):
        # The regions are put on each run's grid ("data"), or used as they are ("none");
        # resampling every BOLD run onto the maps' or the mask's grid is not implemented.
        raise UsageError(
            f"--resampling-target {settings.regions.resampling_target}: not supported at the "
            "participant level; use data (the default) or none"
        )
    if not settings.reports.boilerplate_only:
        # A bad strategy file is one usage error (64) now, not one failed node per run later.
        from bids_regionx.core.denoise import load_strategy

        load_strategy(settings.denoise.strategy).with_overrides(
            **settings.denoise.strategy_overrides()
        )
    maps_specs = collect_maps(settings)
    runs = collect_runs(settings, maps_space=maps_specs[0].space)
    usable = [r for r in runs if not getattr(r, "problem", None)]
    problems = [r for r in runs if getattr(r, "problem", None)]
    derivatives.prepare_output_dir(settings)
    run_id = new_run_id()
    subjects = sorted({r.entities["subject"] for r in runs})
    # Temporary files of a killed earlier run (only those no live writer holds).
    derivatives.remove_stale_temporary_files(settings.output_dir, subjects=subjects)
    save_settings(settings, run_id, subjects)

    if settings.reports.boilerplate_only:
        return 1 if _write_boilerplate(settings, maps_specs) else 0
    from bids_regionx.cli import failures

    failed = [(r.key, r.problem) for r in problems]
    crashes = []
    if not settings.reports.reports_only and usable:
        from bids_regionx.workflows.base import init_bids_regionx_wf

        workflow = init_bids_regionx_wf(settings, usable, maps_specs)
        crash_dir = Path(settings.execution.work_dir) / run_id / "crash"
        configure_nipype(workflow, settings, crash_dir)
        if settings.execution.write_graph:
            workflow.write_graph(graph2use="colored", format="svg", simple_form=True)
        plugin, plugin_args = _plugin(settings)
        try:
            with failures.work_dir_lock(settings.execution.work_dir):
                workflow.run(plugin=plugin, plugin_args=plugin_args)
        except RuntimeError as exc:
            if not list(crash_dir.glob("crash-*")):
                raise
            logger.debug("workflow did not finish cleanly: %s", exc)
        except OSError as exc:  # nipype could not write its results or crash files
            raise failures.work_dir_error(settings.execution.work_dir, exc) from exc
        crashes = failures.read_crashes(
            crash_dir, usable, maps_specs, combine_runs=settings.connectivity.combine_runs
        )
    result = failures.outcome(settings, usable, failed, crashes,
                              ran=not settings.reports.reports_only and bool(usable))
    failed = result.failed
    for line in result.lines:
        print(line, file=sys.stderr)
    if not settings.reports.reports_only:
        # What failed in this invocation, per subject, so that --reports-only shows it later.
        _record_errors(settings, subjects, failed, run_id)
    report_failed = False
    if settings.reports.write_reports or settings.reports.reports_only:
        report_failed = _write_reports(settings, maps_specs, subjects, failed,
                                       runs=runs, run_id=run_id)
    if not settings.reports.reports_only:
        report_failed = _write_boilerplate(settings, maps_specs) or report_failed
    if result.error is not None:
        raise result.error
    if result.exit_code or report_failed:
        return result.exit_code or 1
    print(f"bids_regionx: outputs in {settings.output_dir}", file=sys.stderr)
    return 0


def _record_errors(settings, subjects, failed, run_id: str) -> None:
    """``sub-<label>/log/<run_id>/errors.json``: the failures of this invocation per subject."""
    from bids_regionx.reports.participant import record_errors, subject_errors

    for subject in subjects:
        try:
            record_errors(settings.output_dir, subject, run_id, subject_errors(failed, subject))
        except Exception as exc:  # bookkeeping must not change the outcome
            logger.warning("sub-%s: could not record the errors of this run: %s", subject, exc)


def _write_reports(settings, maps_specs, subjects, failed, *, runs=None, run_id=None) -> bool:
    """Per-subject HTML reports; return whether one failed.

    A failure never touches the derivatives: it is printed, written with its traceback to
    ``sub-<label>/log/<run_id>/report-error.txt``, and the report is replaced by a page saying
    that it failed and why (exit code 1).
    """
    from bids_regionx.reports.participant import write_participant_report

    broken = False
    for subject in subjects:
        try:
            write_participant_report(settings, maps_specs, subject, runs=runs, failed=failed)
        except Exception as exc:  # a report must never take the outputs down with it
            broken = True
            print(f"bids_regionx: report failed: sub-{subject}: {exc}", file=sys.stderr)
            logger.debug("report of sub-%s failed", subject, exc_info=True)
            _record_report_failure(settings.output_dir, subject, run_id, exc)
    return broken


def _record_report_failure(output_dir, subject: str, run_id, exc: BaseException) -> None:
    import traceback

    from bids_regionx.io.derivatives import write_text
    from bids_regionx.reports.participant import write_failed_report

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    for write in (
        lambda: write_text(Path(output_dir) / f"sub-{subject}" / "log" / (run_id or "reports")
                           / "report-error.txt", text),
        lambda: write_failed_report(output_dir, subject, exc),
    ):
        try:
            write()
        except Exception as inner:  # the failure is already on stderr
            logger.warning("sub-%s: could not record the report failure: %s", subject, inner)


def _write_boilerplate(settings, maps_specs) -> bool:
    """``logs/CITATION.{md,html,bib}``; return whether it failed (printed, exit code 1)."""
    from bids_regionx.reports.boilerplate import write_boilerplate

    try:
        write_boilerplate(settings, maps_specs)
    except Exception as exc:  # like a report: never hides the outcome of the runs
        print(f"bids_regionx: boilerplate failed: {exc}", file=sys.stderr)
        logger.debug("boilerplate failed", exc_info=True)
        return True
    return False
