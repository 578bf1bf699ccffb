"""Command-line parser: ``argv`` -> :class:`~bids_regionx.config.Settings`.

``build_parser()`` describes every option (BIDS-Apps positionals plus the NiPreps habits) and has
no side effects, so documentation and the Boutiques descriptor can be generated from it.
``parse_args(argv)`` turns a command line into a validated ``Settings``, merging a
``--config-file`` underneath (options given on the command line win) and reporting every invalid
value at once.

Errors never end the process here: they raise :class:`~bids_regionx.errors.UsageError` (exit
64) or :class:`~bids_regionx.errors.UnknownAnalysisLevelError` (exit 17) for ``main`` to report;
argparse's own exit status 2 is never used. Only ``--help`` and ``--version`` exit, with status 0.

This module imports the standard library only.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from bids_regionx import __version__
from bids_regionx.config import (
    ANALYSIS_LEVELS,
    CONNECTIVITY_MEASURES,
    COV_ESTIMATORS,
    DTYPES,
    EXTRACTORS,
    GROUP_UNITS,
    PLUGINS,
    RESAMPLING_TARGETS,
    SECTIONS,
    STANDARDIZE_CHOICES,
    THRESHOLDING_STRATEGIES,
    InvalidSettingsError,
    Settings,
    builtin_denoise_strategies,
    coerce_mapping,
    read_bids_filter_file,
)
from bids_regionx.errors import NoInputError, UnknownAnalysisLevelError, UsageError

__all__ = ["build_parser", "given_options", "parse_args"]

logger = logging.getLogger("bids_regionx.cli")

_PROG = "bids_regionx"
_LEVEL_DEST = "analysis_level"
# Every accepted spelling; "partial_correlation" is the shell-friendly one.
_MEASURE_SPELLINGS = (*CONNECTIVITY_MEASURES, "partial_correlation")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show defaults, except empty ones, with sequences as they are typed."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        default = action.default
        if (
            "%(default)" in help_text
            or default is None
            or default is argparse.SUPPRESS
            or (isinstance(default, (list, tuple, Mapping)) and not default)
            or not action.option_strings
        ):
            return help_text
        if isinstance(default, (list, tuple)):
            default = " ".join(str(item) for item in default)
        # argparse %-formats help strings, so a literal % in a default must be doubled.
        return f"{help_text} (default: {str(default).replace('%', '%%')})"


class _ArgumentParser(argparse.ArgumentParser):
    """Raise instead of exiting; accept ``_`` for ``-`` in every long option name."""

    def parse_known_args(
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if args is None:
            args = sys.argv[1:]
        return super().parse_known_args(_hyphenate_options(args), namespace)

    def error(self, message: str) -> NoReturn:
        if message.startswith(f"argument {_LEVEL_DEST}:"):
            raise UnknownAnalysisLevelError(message)
        raise UsageError(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if status == 0:  # --help and --version
            super().exit(status, message)
        raise UsageError((message or f"exit status {status}").strip())


def _hyphenate_options(args: Sequence[str]) -> list[str]:
    """Spell long option names with hyphens (``--participant_label`` -> ``--participant-label``).

    Values are left alone, including the part after ``=`` and everything after ``--``.
    """
    normalised = []
    args = list(args)
    for index, arg in enumerate(args):
        if arg == "--":
            return normalised + args[index:]
        if arg.startswith("--"):
            name, sep, value = arg.partition("=")
            arg = name.replace("_", "-") + sep + value
        normalised.append(arg)
    return normalised


def _default(dest: str) -> Any:
    """The Settings default of ``"section.field"``, so help and behaviour cannot drift apart."""
    section, name = dest.split(".")
    spec = next(spec for spec in dataclasses.fields(SECTIONS[section]) if spec.name == name)
    if spec.default is not dataclasses.MISSING:
        return spec.default
    return None


def _add(group: Any, *flags: str, dest: str, **kwargs: Any) -> argparse.Action:
    # "extend" appends to the default, so multi-valued options start from None, not ().
    kwargs.setdefault("default", None if kwargs.get("action") == "extend" else _default(dest))
    return group.add_argument(*flags, dest=dest, **kwargs)


def _add_flag(group: Any, flag: str, *, dest: str, help: str) -> argparse.Action:
    """A boolean with a ``--no-`` form, so a config file value can be overridden both ways."""
    return _add(group, flag, dest=dest, action=argparse.BooleanOptionalAction, help=help)


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser (pure: no side effects; standard library only).

    Option values land in ``"section.field"`` destinations named after
    :class:`~bids_regionx.config.Settings` fields; use :func:`parse_args` to get a ``Settings``.

    Returns
    -------
    argparse.ArgumentParser
        Its ``error``/``exit`` raise :class:`~bids_regionx.errors.UsageError` (exit 64) or
        :class:`~bids_regionx.errors.UnknownAnalysisLevelError` (exit 17) instead of exiting.
    """
    parser = _ArgumentParser(
        prog=_PROG,
        description=(
            "Split 4D maps (ICA components, probabilistic atlases) into regions and extract "
            "denoised region time series and connectomes from fMRIPrep derivatives."
        ),
        epilog=(
            "Every long option may also be spelled with underscores (e.g. --participant_label). "
            "Exit codes: 0 success, 1 a run failed, 16 not a valid BIDS dataset, 17 unknown "
            "analysis level, 18 no BOLD run matched, 64 usage error, 65 bad input data, "
            "66 input missing or unreadable, 73 cannot create output."
        ),
        formatter_class=_HelpFormatter,
        allow_abbrev=False,  # abbreviations would break whenever an option is added
    )
    parser.add_argument(
        "bids_dir",
        help="fMRIPrep derivatives dataset (DatasetType derivative), or a raw BIDS dataset "
        "together with -d fmriprep=PATH",
    )
    parser.add_argument(
        "output_dir", help="derivatives dataset to write; must be outside bids_dir"
    )
    parser.add_argument(
        _LEVEL_DEST,
        choices=ANALYSIS_LEVELS,
        help="participant: regions, time series, connectomes and reports per subject; "
        "group: aggregate participant outputs",
    )
    _add_selection_options(parser.add_argument_group("selecting data"))
    _add_maps_options(parser.add_argument_group("maps"))
    _add_region_options(parser.add_argument_group("region extraction"))
    _add_denoise_options(parser.add_argument_group("denoising and cleaning"))
    _add_connectivity_options(parser.add_argument_group("connectivity"))
    _add_execution_options(parser.add_argument_group("execution"))
    _add_report_options(parser.add_argument_group("reports and boilerplate"))
    return parser


def _add_selection_options(group: Any) -> None:
    _add(
        group,
        "--participant-label",
        dest="selection.participant_labels",
        nargs="+",
        action="extend",
        metavar="LABEL",
        help="participants to process (the sub- prefix is optional); default: all",
    )
    _add(
        group,
        "--session-label",
        dest="selection.session_labels",
        nargs="+",
        action="extend",
        metavar="LABEL",
        help="sessions to process (ses- prefix optional); default: all",
    )
    _add(
        group,
        "-t",
        "--task-id",
        dest="selection.task_ids",
        nargs="+",
        action="extend",
        metavar="TASK",
        help="tasks to process (task- prefix optional); default: all",
    )
    _add(
        group,
        "--space",
        dest="selection.space",
        metavar="SPACE",
        help="template space of the BOLD runs; default: the maps' space "
        "(MNI152NLin2009cAsym for plain NIfTI maps)",
    )
    _add(
        group,
        "--bids-filter-file",
        dest="selection.bids_filter_file",
        metavar="FILE",
        help='JSON refining the "bold", "mask" and "confounds" queries with BIDS entities; '
        'null means the entity must be absent, "*" that any value matches',
    )
    _add(
        group,
        "--bids-database-dir",
        dest="selection.bids_database_dir",
        metavar="DIR",
        help="where to keep the pybids index (never inside bids_dir); default: in the work dir",
    )
    _add(
        group,
        "-d",
        "--datasets",
        dest="selection.datasets",
        nargs="+",
        action="extend",
        metavar="NAME=PATH",
        help="other datasets: fmriprep=PATH (when bids_dir is raw BIDS), atlases=PATH "
        "(a BIDS-Atlas dataset, with --atlas)",
    )


def _add_maps_options(group: Any) -> None:
    _add(
        group,
        "--maps",
        dest="maps.files",
        nargs="+",
        action="extend",
        metavar="PATH",
        help="4D NIfTI maps to split into regions (a 3D image is one map)",
    )
    _add(
        group,
        "--maps-label",
        dest="maps.labels",
        nargs="+",
        action="extend",
        metavar="LABEL",
        help="one BIDS label per --maps file (the atlas- entity of outputs)",
    )
    _add(
        group,
        "--maps-labels-tsv",
        dest="maps.labels_tsv",
        nargs="+",
        action="extend",
        metavar="PATH",
        help="one TSV per --maps file naming each map (index, name columns)",
    )
    _add(
        group,
        "--atlas",
        dest="maps.atlas",
        metavar="LABEL",
        help="use atlas LABEL from -d atlases=PATH, or else from the local TemplateFlow cache "
        "(TEMPLATEFLOW_HOME; never downloaded)",
    )
    _add(
        group,
        "--mask",
        dest="maps.mask",
        metavar="PATH",
        help="restrict region extraction to this mask",
    )


def _add_region_options(group: Any) -> None:
    _add(
        group,
        "--min-region-size",
        dest="regions.min_region_size",
        type=float,
        metavar="MM3",
        help="drop regions of this volume or less (mm³)",
    )
    _add(
        group,
        "--threshold",
        dest="regions.threshold",
        type=float,
        metavar="VALUE",
        help="ratio_n_voxels: ratio (> 0) of one map's voxel count kept across maps; "
        "img_value: map value; percentile: percentile (0-100)",
    )
    _add(
        group,
        "--thresholding-strategy",
        dest="regions.thresholding_strategy",
        choices=THRESHOLDING_STRATEGIES,
        help="how --threshold is interpreted",
    )
    _add_flag(
        group,
        "--two-sided",
        dest="regions.two_sided",
        help="threshold |value| (img_value and percentile)",
    )
    _add(
        group,
        "--extractor",
        dest="regions.extractor",
        choices=EXTRACTORS,
        help="split each map at its local maxima or into connected components",
    )
    _add(
        group,
        "--smoothing-fwhm",
        dest="regions.smoothing_fwhm",
        type=float,
        metavar="MM",
        help="FWHM (mm) of the smoothing used to find peaks and applied to the BOLD; 0 for none",
    )
    _add(
        group,
        "--resampling-target",
        dest="regions.resampling_target",
        choices=RESAMPLING_TARGETS,
        help="grid that maps, mask and BOLD are resampled to",
    )
    _add_flag(
        group,
        "--allow-overlap",
        dest="regions.allow_overlap",
        help="allow regions to overlap (--no-allow-overlap makes them disjoint)",
    )


def _add_denoise_options(group: Any) -> None:
    strategies = ", ".join(builtin_denoise_strategies()) or "(none installed)"
    _add(
        group,
        "--denoise-strategy",
        dest="denoise.strategy",
        metavar="NAME|FILE",
        help=f"confound strategy: a built-in name ({strategies}) or a strategy JSON file",
    )
    _add(
        group,
        "--fd-threshold",
        dest="denoise.fd_threshold",
        type=float,
        metavar="MM",
        help="censor volumes with framewise displacement above this (mm); default: the strategy's",
    )
    _add(
        group,
        "--dvars-threshold",
        dest="denoise.dvars_threshold",
        type=float,
        metavar="VALUE",
        help="censor volumes with standardised DVARS above this; default: the strategy's",
    )
    _add(
        group,
        "--dummy-scans",
        dest="denoise.dummy_scans",
        metavar="N|auto",
        help="drop N initial volumes, or 'auto' for fMRIPrep's non-steady-state outliers; "
        "default: the strategy's",
    )
    _add(
        group,
        "--min-time",
        dest="denoise.min_time",
        type=float,
        metavar="SECONDS",
        help="drop runs with less uncensored data than this (s); 0 keeps every run",
    )
    _add(
        group,
        "--min-coverage",
        dest="denoise.min_coverage",
        type=float,
        metavar="FRACTION",
        help="regions with less of their volume inside a run's brain mask are n/a (0-1)",
    )
    _add(
        group,
        "--standardize",
        dest="denoise.standardize",
        choices=STANDARDIZE_CHOICES,
        help="standardisation of the region time series",
    )
    _add_flag(
        group,
        "--standardize-confounds",
        dest="denoise.standardize_confounds",
        help="z-score the confounds before regression",
    )
    _add_flag(
        group,
        "--high-variance-confounds",
        dest="denoise.high_variance_confounds",
        help="add the 5 highest-variance voxel time series as confounds",
    )
    _add_flag(group, "--detrend", dest="denoise.detrend", help="remove linear trends")
    _add(
        group,
        "--low-pass",
        dest="denoise.low_pass",
        type=float,
        metavar="HZ",
        help="low-pass cut-off (Hz); default: none",
    )
    _add(
        group,
        "--high-pass",
        dest="denoise.high_pass",
        type=float,
        metavar="HZ",
        help="high-pass cut-off (Hz); default: none",
    )
    _add(
        group,
        "--t-r",
        dest="denoise.t_r",
        type=float,
        metavar="SECONDS",
        help="repetition time (s); default: each run's RepetitionTime",
    )
    _add(
        group,
        "--clean-args",
        dest="denoise.clean_args",
        metavar="JSON",
        help="extra signal-cleaning arguments as a JSON object, e.g. "
        "'{\"butterworth__order\": 3}'",
    )
    _add(
        group,
        "--dtype",
        dest="denoise.dtype",
        choices=DTYPES,
        help="dtype of the extracted signals; default: as computed",
    )


def _add_connectivity_options(group: Any) -> None:
    _add(
        group,
        "--connectivity",
        dest="connectivity.measures",
        nargs="+",
        choices=_MEASURE_SPELLINGS,
        metavar="MEASURE",
        help="connectivity measures: correlation, 'partial correlation' "
        "(or partial_correlation), covariance, precision; tangent at the group level only",
    )
    _add(
        group,
        "--cov-estimator",
        dest="connectivity.cov_estimator",
        choices=COV_ESTIMATORS,
        help="covariance estimator behind every measure (empirical gives Pearson's r)",
    )
    _add_flag(
        group,
        "--fisher-z",
        dest="connectivity.fisher_z",
        help="Fisher z-transform correlation-type connectomes",
    )
    _add_flag(
        group,
        "--combine-runs",
        dest="connectivity.combine_runs",
        help="z-score each cleaned run and concatenate runs per subject/session/task "
        "into one time series and connectome",
    )
    _add(
        group,
        "--group-unit",
        dest="connectivity.group_unit",
        choices=GROUP_UNITS,
        help="group level: average connectomes over runs, or within each subject first so "
        "that every subject counts once",
    )


def _add_execution_options(group: Any) -> None:
    _add(
        group,
        "-w",
        "--work-dir",
        dest="execution.work_dir",
        metavar="DIR",
        default="work",
        help="scratch and cache directory; rerun with the same one to resume",
    )
    _add(
        group,
        "--nprocs",
        "--nthreads",
        "--n-cpus",
        dest="execution.nprocs",
        type=int,
        metavar="N",
        help="maximum number of parallel processes; default: all CPUs",
    )
    _add(
        group,
        "--omp-nthreads",
        dest="execution.omp_nthreads",
        type=int,
        metavar="N",
        help="maximum threads per process; default: chosen from --nprocs",
    )
    _add(
        group,
        "--mem-gb",
        "--mem",
        dest="execution.mem_gb",
        metavar="SIZE",
        help="memory limit in GB, or with a unit: 8G, 8000M, 0.5T; default: no limit",
    )
    _add(
        group, "--plugin", dest="execution.plugin", choices=PLUGINS, help="nipype execution plugin"
    )
    _add(
        group,
        "--plugin-args",
        dest="execution.plugin_args",
        metavar="JSON",
        help="nipype plugin arguments as a JSON object, e.g. "
        '\'{"sbatch_args": "--time=1:00:00"}\'',
    )
    _add_flag(
        group,
        "--stop-on-first-crash",
        dest="execution.stop_on_first_crash",
        help="stop at the first failing node",
    )
    _add_flag(
        group,
        "--resource-monitor",
        dest="execution.resource_monitor",
        help="record memory and CPU use of every node",
    )
    _add_flag(
        group, "--write-graph", dest="execution.write_graph", help="write the workflow graph"
    )
    _add_flag(
        group,
        "--skip-bids-validation",
        dest="execution.skip_bids_validation",
        help="downgrade the dataset_description.json/DatasetType checks to warnings",
    )
    _add(
        group,
        "--config-file",
        dest="execution.config_file",
        metavar="TOML",
        help="read options from a TOML file (the layout bids_regionx saves per run); "
        "options given on the command line win",
    )
    group.add_argument(
        "-v",
        "--verbose",
        dest="execution.verbosity",
        action="count",
        default=0,
        help="more messages; repeat for more (-vv); -v also shows tracebacks",
    )
    group.add_argument("--version", action="version", version=f"{_PROG} {__version__}")


def _add_report_options(group: Any) -> None:
    _add_flag(
        group,
        "--reports",
        dest="reports.write_reports",
        help="write the HTML reports (--no-reports skips them)",
    )
    _add_flag(
        group,
        "--reports-only",
        dest="reports.reports_only",
        help="only rebuild the reports from existing outputs",
    )
    _add_flag(
        group,
        "--boilerplate-only",
        dest="reports.boilerplate_only",
        help="only write the methods boilerplate",
    )


def parse_args(argv: Sequence[str] | None = None) -> Settings:
    """Parse a command line into validated settings.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    Settings
        Defaults, overridden by ``--config-file`` values, overridden by the command line.

    Raises
    ------
    UnknownAnalysisLevelError
        The analysis level is not ``participant`` or ``group`` (exit 17).
    UsageError
        Any other bad usage; invalid values are all listed in one message (exit 64).
    NoInputError
        The ``--config-file`` is missing or unreadable (exit 66).
    SystemExit
        With status 0, after printing ``--help`` or ``--version``.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    # The first parse prints help/version and rejects bad syntax; the second, with every
    # default suppressed, tells which options were actually typed (they beat the config file).
    build_parser().parse_args(args)
    given = vars(_parser_without_defaults().parse_args(args))

    cwd = Path.cwd()
    cli_values, problems = coerce_mapping(_nest(given), base_dir=cwd)
    file_values: dict[str, Any] = {}
    config_file = cli_values.get("execution", {}).get("config_file")
    if config_file is not None:
        file_values, file_problems = coerce_mapping(
            _read_config_file(config_file), base_dir=config_file.parent, source=config_file.name
        )
        problems = file_problems + problems
    values = _merge(file_values, cli_values)
    problems += _load_bids_filters(values, typed=given)

    try:
        settings = Settings.from_dict(values, base_dir=cwd)
    except InvalidSettingsError as exc:
        # Values that failed above were dropped, so these are the remaining (cross-field) ones.
        raise InvalidSettingsError([*problems, *exc.problems]) from None
    if problems:
        raise InvalidSettingsError(problems)
    for message in settings.warnings():
        logger.warning(message)
    return settings


def given_options(argv: Sequence[str]) -> set[str]:
    """The ``"section.field"`` destinations of the options typed in ``argv`` (not defaults).

    Parameters
    ----------
    argv : sequence of str
        A command line that :func:`parse_args` accepts.
    """
    given = vars(_parser_without_defaults().parse_args(list(argv)))
    return {dest for dest in given if "." in dest}


def _parser_without_defaults() -> argparse.ArgumentParser:
    parser = build_parser()
    for action in parser._actions:  # argparse has no public API to list them
        action.default = argparse.SUPPRESS
    return parser


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"regions.threshold": 2}`` -> ``{"regions": {"threshold": 2}}``."""
    nested: dict[str, Any] = {}
    for dest, value in flat.items():
        section, _, name = dest.rpartition(".")
        (nested.setdefault(section, {}) if section else nested)[name] = value
    return nested


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = {
        key: dict(value) if isinstance(value, dict) else value for key, value in base.items()
    }
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value
    return merged


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NoInputError(f"--config-file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NoInputError(f"--config-file {path}: cannot read it ({exc})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--config-file {path}: invalid TOML ({exc})") from None


def _load_bids_filters(values: dict[str, Any], *, typed: dict[str, Any]) -> list[str]:
    """Read the filter file into ``selection.bids_filters`` (in place); return problems.

    A file typed on the command line is always read; one named in a config file only when that
    file does not already carry the filters (as saved settings do). A missing or unreadable
    file is left to the preflight, which reports it with exit code 66.
    """
    selection = values.setdefault("selection", {})
    path = selection.get("bids_filter_file")
    if path is None:
        return []
    if "selection.bids_filter_file" not in typed and "bids_filters" in selection:
        return []
    try:
        selection["bids_filters"] = read_bids_filter_file(path)
    except OSError:
        return []
    except ValueError as exc:
        return [f"--bids-filter-file {path}: {exc}"]
    return []
