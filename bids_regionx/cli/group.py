"""The group level: aggregate the participant outputs of an output dir (never recompute them).

``bids_regionx bids_dir output_dir group [--participant-label ...] [--connectivity tangent]
[--group-unit run|subject]`` reads what the participant level wrote and writes, under
``output_dir/group/``:

- ``atlas-<label>_qc.tsv`` (+ ``.json`` column descriptions): one row per run found, per atlas;
- per task and atlas realisation, for every measure the participant level computed: the group
  mean (``desc-mean``; for correlations the mean of Fisher z back-transformed, whose mean of z
  is ``desc-fisherz``) and the units contributing to each edge (``desc-count``);
- with ``--connectivity tangent``: the tangent-space reference (``stat-tangent_desc-reference``)
  and every unit's tangent connectome under ``group/sub-<label>/``;

and the report ``output_dir/group.html``.

The options come from the record the participant level left (``.bids_regionx/options.json``):
nothing needs re-typing. Options that change outputs given on the group command line (or in a
``--config-file``) must equal the recorded ones, else exit 64 naming each difference.

Exit codes: 0 every selected participant's outputs were aggregated; 1 group outputs were written
but something is missing or was refused (participants of ``bids_dir`` or of
``--participant-label`` without outputs, participants whose outputs were made with other options,
used runs with missing or unreadable outputs, a group statistic that could not be computed, a
report that failed), each named on stderr; 18 no run outputs match the selection; 64 group
options differ from the recorded ones; 66 the output dir has no participant outputs; 73 they were
made by another release series.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from bids_regionx.errors import CantCreateError, NoInputError, NoMatchingRunsError, UsageError

logger = logging.getLogger("bids_regionx")

#: ``stat-`` label of every measure (participant measures and the group-only tangent).
STAT_LABELS = {
    "correlation": "pearsoncorrelation",
    "partial correlation": "partialcorrelation",
    "covariance": "covariance",
    "precision": "precision",
    "tangent": "tangent",
}
MEASURE_NAMES = {
    "pearsoncorrelation": "Pearson correlation",
    "partialcorrelation": "partial correlation",
    "covariance": "covariance",
    "precision": "precision (inverse covariance)",
    "tangent": "tangent-space connectivity",
}
#: Measures averaged as Fisher z.
FISHER_STATS = ("pearsoncorrelation", "partialcorrelation")
#: Entities of a group key, in order.
_KEY_NAMES = ("task", "space", "atlas", "seg", "res", "den")
#: Columns that identify a run (the QC table's sort order).
_ID_COLUMNS = ("participant_id", "session_id", "task", "acq", "ce", "rec", "dir", "run", "echo",
               "space", "res", "den")
#: Optional entity columns of the QC table (file-name key -> column), shown when any run has one.
_OPTIONAL_COLUMNS = {"acq": "acq", "ce": "ce", "rec": "rec", "dir": "dir", "echo": "echo"}
QC_COLUMNS = {
    "participant_id": ("Participant (sub-<label>).", None),
    "session_id": ("Session (ses-<label>); n/a without sessions.", None),
    "task": ("Task label.", None),
    "acq": ("Acquisition label.", None),
    "ce": ("Contrast-enhancing agent label.", None),
    "rec": ("Reconstruction label.", None),
    "dir": ("Phase-encoding direction label.", None),
    "run": ("Run label, as in the file names; n/a for a run without one.", None),
    "echo": ("Echo label.", None),
    "space": ("Template space of the run's outputs.", None),
    "res": ("Resolution label of the run's outputs.", None),
    "den": ("Density label of the run's outputs.", None),
    "n_volumes": ("Volumes in the BOLD run.", "volumes"),
    "n_volumes_kept": ("Volumes left in the region time series after censoring.", "volumes"),
    "n_dummy": ("Volumes removed at the start as non-steady-state.", "volumes"),
    "n_censored_fd": ("Volumes censored for framewise displacement above the threshold.",
                      "volumes"),
    "n_censored_dvars": ("Volumes censored for standardised DVARS above the threshold.",
                         "volumes"),
    "n_censored_motion": ("Volumes censored for motion (FD or DVARS; a volume over both "
                          "thresholds counts once).", "volumes"),
    "n_short_segment": ("Volumes removed because they were left in segments shorter than the "
                        "minimum segment length.", "volumes"),
    "kept_time": ("Duration of the kept volumes.", "s"),
    "mean_fd": ("Mean framewise displacement of the run.", "mm"),
    "max_fd": ("Maximum framewise displacement of the run.", "mm"),
    "n_regions": ("Regions of the atlas.", "regions"),
    "n_regions_na": ("Regions set to n/a in this run (coverage below --min-coverage).",
                     "regions"),
    "regions_na": ("Names of the regions set to n/a, comma-separated; n/a when none.", None),
    "used": ("Whether the run entered the group connectomes (1) or not (0).", None),
    "reason": ("Why the run was not used; n/a when it was.", None),
}
_OUTLIER_KEYS = {
    "n_volumes": "NumberOfVolumes",
    "n_volumes_kept": "NumberOfVolumesKept",
    "n_dummy": "NumberOfVolumesDiscardedByNonsteadyStatesDetector",
    "n_censored_fd": "NumberOfVolumesCensoredForFD",
    "n_censored_dvars": "NumberOfVolumesCensoredForDVARS",
    "n_censored_motion": "NumberOfVolumesDiscardedByMotionScrubbing",
    "n_short_segment": "NumberOfVolumesDiscardedAsShortSegments",
    "kept_time": "KeptTime",
    "mean_fd": "MeanFramewiseDisplacement",
    "max_fd": "MaxFramewiseDisplacement",
}


# --------------------------------------------------------------------------------------------
# Results handed to the report
# --------------------------------------------------------------------------------------------
@dataclass
class GroupConnectome:
    """One group connectome (a task x atlas realisation x measure) and its files."""

    task: str | None
    space: str
    atlas: str
    seg: str
    res: str | None
    den: str | None
    stat: str
    names: tuple[str, ...]
    mean: np.ndarray
    count: np.ndarray
    fisherz: np.ndarray | None
    n_runs: int
    participants: list[str]
    files: list[Path] = field(default_factory=list)


@dataclass
class GroupResult:
    """Everything the group level found and wrote (the report's input)."""

    output_dir: Path
    unit: str
    measures: list[str]
    recorded: dict[str, Any]
    participants: list[str]
    missing: list[str]
    refused: dict[str, str]
    problems: list[str]
    qc: dict[str, Any]  # atlas label -> DataFrame
    qc_files: dict[str, Path]
    regions: list[Any]
    connectomes: list[GroupConnectome]
    unverified: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------
def run_group(settings, *, argv: Sequence[str] | None = None) -> int:
    """Run the group level; return the exit code (see the module docstring).

    Parameters
    ----------
    settings : bids_regionx.config.Settings
    argv : sequence of str, optional
        The command line, to tell which options were typed (an option typed with its default
        value must still match the recorded value). Without it, options that differ from their
        defaults and the keys of a ``--config-file`` count as given.
    """
    from bids_regionx.io.derivatives import read_recorded_options

    output_dir = settings.output_dir
    recorded = read_recorded_options(output_dir)
    if recorded is None:
        raise NoInputError(
            f"output_dir {output_dir}: no participant outputs (no .bids_regionx/options.json); "
            "run the participant level into it first"
        )
    check_release_series(recorded, output_dir)
    check_group_options(settings, recorded["OutputOptions"], argv)
    result = aggregate(settings, recorded)
    status = 1 if (result.missing or result.refused or result.problems) else 0
    for line in summary_lines(result):
        print(line, file=sys.stderr)
    if settings.reports.write_reports or settings.reports.reports_only:
        try:
            from bids_regionx.reports.group_report import write_group_report

            report = write_group_report(result)
            print(f"bids_regionx: group report {report}", file=sys.stderr)
        except Exception as exc:  # a report never takes the group outputs down with it
            print(f"bids_regionx: report failed: group.html: {exc}", file=sys.stderr)
            if settings.execution.verbosity:
                logger.exception("group report")
            status = 1
    if status == 0:
        print(f"bids_regionx: group outputs in {output_dir / 'group'}", file=sys.stderr)
    return status


def summary_lines(result: GroupResult) -> list[str]:
    """The stderr lines naming whatever was missing, refused or failed."""
    lines = []
    if result.missing:
        lines.append(
            "bids_regionx: missing participant outputs: "
            + ", ".join(f"sub-{s}" for s in result.missing)
            + f" (in bids_dir or --participant-label, nothing in {result.output_dir})"
        )
    for subject, reason in sorted(result.refused.items()):
        lines.append(f"bids_regionx: refused participant outputs: sub-{subject}: {reason}")
    lines += [f"bids_regionx: group: {problem}" for problem in result.problems]
    return lines


# --------------------------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------------------------
def check_release_series(recorded: dict, output_dir: Path) -> None:
    """Refuse (73) outputs made by another release series of bids_regionx."""
    from bids_regionx import __version__
    from bids_regionx.io.derivatives import _release_series

    version = str(recorded.get("Version", ""))
    if _release_series(version) != _release_series(__version__):
        raise CantCreateError(
            f"output_dir {output_dir} was made by bids_regionx {version}, this is "
            f"{__version__} (another release series); run the group level with {version}"
        )


def given_output_options(settings, argv: Sequence[str] | None) -> set[str]:
    """``"section.field"`` keys of the output options the user gave for this run.

    An option counts as given when it differs from its default, was typed on the command line
    (``argv``), or is set in the ``--config-file``.
    """
    current = settings.output_options()
    defaults = _with_default_outputs(settings).output_options()
    given = {key for key, value in current.items() if value != defaults.get(key)}
    if argv is not None:
        from bids_regionx.cli.parser import given_options

        given |= given_options(argv)
    config_file = settings.execution.config_file
    if config_file is not None:
        given |= _config_file_keys(Path(config_file))
    return given & set(current)


def _with_default_outputs(settings):
    """``settings`` with every output option at its default (the rest, e.g. paths, kept)."""
    import dataclasses

    from bids_regionx.config import SECTIONS

    def default(spec):
        if spec.default is not dataclasses.MISSING:
            return spec.default
        return spec.default_factory()

    sections = {
        name: dataclasses.replace(
            getattr(settings, name),
            **{spec.name: default(spec) for spec in fields(cls) if spec.metadata["output"]},
        )
        for name, cls in SECTIONS.items()
    }
    return dataclasses.replace(settings, **sections)


def _config_file_keys(path: Path) -> set[str]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return set()  # the parser already reported an unreadable file
    return {
        f"{section}.{str(name).replace('-', '_')}"
        for section, table in data.items()
        if isinstance(table, dict)
        for name in table
    }


def _option_flags() -> dict[str, str]:
    from bids_regionx.config import SECTIONS

    return {
        f"{section}.{spec.name}": spec.metadata["option"]
        for section, cls in SECTIONS.items()
        for spec in fields(cls)
    }


def check_group_options(settings, recorded: dict[str, Any], argv: Sequence[str] | None) -> None:
    """Refuse (64) output options given for the group run that differ from the recorded ones.

    ``--connectivity`` is a selection at the group level: its participant measures must have
    been computed by the participant level (``tangent`` is the group's own).
    """
    current = settings.output_options()
    flags = _option_flags()
    differences = []
    for key in sorted(given_output_options(settings, argv)):
        value, old = current[key], recorded.get(key)
        if key == "connectivity.measures":
            extra = [m for m in value if m not in (old or [])]
            if extra:
                differences.append(
                    f"{flags[key]} ({key}): {', '.join(extra)} not computed by the participant "
                    f"level (it computed {', '.join(old or []) or 'none'})"
                )
            continue
        if value != old:
            differences.append(
                f"{flags[key]} ({key}): {json.dumps(value)} given, outputs made with "
                f"{json.dumps(old)}"
            )
    if differences:
        raise UsageError(
            f"the participant outputs in {settings.output_dir} were made with other options: "
            + "; ".join(differences)
            + ". The group level reads the recorded options: leave these out or give the "
            "recorded values"
        )


def participant_differences(output_dir: Path, subject: str, recorded: dict) -> str | None:
    """Why a participant's outputs cannot be aggregated with the others, or None.

    Every participant run leaves its settings in ``sub-<label>/log/<run_id>/config.toml``; the
    output options of each must equal those recorded for the output dir.

    Returns
    -------
    str or None
        ``"made with other options (regions.threshold: 1.0 vs 2.0)"``, ``""`` when no record
        could be read (not verifiable), None when every record matches.
    """
    from bids_regionx.config import Settings, diff_output_options
    from bids_regionx.io.participant_outputs import option_records

    records = option_records(output_dir, subject)
    readable = 0
    for path in records:
        try:
            options = Settings.from_toml(
                path.read_text(encoding="utf-8"), base_dir=path.parent
            ).output_options()
        except Exception as exc:  # a damaged record: say so, do not guess
            logger.warning("%s: cannot read the participant's options (%s)", path, exc)
            continue
        readable += 1
        differences = diff_output_options(recorded, options)
        if differences:
            shown = "; ".join(differences)
            return (
                f"made with other options than the output dir records ({shown}; recorded vs "
                f"{path.relative_to(output_dir)})"
            )
    return None if readable else ""


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------
def _natural(text: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


def aggregate(settings, recorded: dict) -> GroupResult:
    """Read the participant outputs, write the group outputs; return what the report shows.

    Raises
    ------
    NoMatchingRunsError
        No run outputs for the selection and no participant missing either.
    """
    from bids_regionx.io.participant_outputs import (
        bold_participants,
        collect_runs,
        find_regions,
    )

    output_dir = settings.output_dir
    options = recorded["OutputOptions"]
    selection = settings.selection
    labels = list(selection.participant_labels) or None
    unit = settings.connectivity.group_unit
    measures = [m for m in options.get("connectivity.measures", []) if m in STAT_LABELS]
    if "tangent" in settings.connectivity.measures:
        measures.append("tangent")

    runs = collect_runs(
        output_dir, subjects=labels, sessions=selection.session_labels, tasks=selection.task_ids
    )
    found = sorted({run.subject for run in runs})
    expected = set(labels) if labels else set(
        bold_participants(
            settings.fmriprep_dir, sessions=selection.session_labels, tasks=selection.task_ids
        )
    )
    missing = sorted(expected - set(found), key=_natural)
    if not runs and not missing:
        raise NoMatchingRunsError(
            f"output_dir {output_dir}: no participant outputs match the selection"
            + _selection_text(selection)
        )
    refused, unverified = {}, []
    for subject in found:
        reason = participant_differences(output_dir, subject, options)
        if reason:
            refused[subject] = reason
        elif reason == "":
            unverified.append(subject)
    if unverified:
        logger.warning(
            "no readable record of the options of %s; their outputs are used as they are",
            ", ".join(f"sub-{s}" for s in unverified),
        )

    regions = find_regions(output_dir)
    result = GroupResult(
        output_dir=output_dir,
        unit=unit,
        measures=measures,
        recorded=recorded,
        participants=found,
        missing=missing,
        refused=refused,
        problems=[],
        qc={},
        qc_files={},
        regions=regions,
        connectomes=[],
        unverified=unverified,
    )
    stats = [STAT_LABELS[m] for m in measures if m != "tangent"]
    units = _qc_and_units(result, runs, stats)
    for key in sorted(units, key=lambda k: tuple(v or "" for v in k)):
        _group_connectomes(result, key, units[key], measures, settings, options)
    return result


def _selection_text(selection) -> str:
    parts = []
    for name, values in (
        ("--participant-label", selection.participant_labels),
        ("--session-label", selection.session_labels),
        ("--task-id", selection.task_ids),
    ):
        if values:
            parts.append(f"{name} {' '.join(values)}")
    return f" ({'; '.join(parts)})" if parts else ""


@dataclass
class _Unit:
    """A used run of one atlas realisation: where its connectomes and time series are."""

    run: Any
    outputs: Any
    names: tuple[str, ...]


def _regions_for(regions, space, atlas, seg, res):
    for item in regions:
        if (item.space, item.atlas, item.seg, item.res) == (space, atlas, seg, res):
            return item
    return None


def _qc_and_units(result: GroupResult, runs, stats: list[str]) -> dict[tuple, list[_Unit]]:
    """Write one QC table per atlas label; return the used runs per group key.

    Group key: ``(task, space, atlas, seg, res, den)``.
    """
    import pandas as pd

    from bids_regionx.io import derivatives as deriv
    from bids_regionx.io.participant_outputs import read_json, read_tsv

    atlases = sorted(
        {r.atlas for r in result.regions} | {k[1] for run in runs for k in run.atlases}
    )
    outliers = {}
    for run in runs:
        try:
            outliers[run.name] = read_json(run.outliers)
        except ValueError as exc:
            outliers[run.name] = None
            result.problems.append(str(exc))
    units: dict[tuple, list[_Unit]] = defaultdict(list)
    for atlas in atlases:
        rows = []
        for run in runs:
            keys = [k for k in run.atlases if k[1] == atlas] or [None]
            for key in keys:
                row, unit = _qc_row(result, run, outliers[run.name], key, stats, read_json,
                                    read_tsv)
                rows.append(row)
                if unit is not None:
                    units[(run.task, *key)].append(unit)
        frame = _qc_frame(rows, pd)
        path = deriv.output_path(
            result.output_dir, "group_qc", atlas=atlas, suffix="qc", extension=".tsv"
        )
        deriv.write_tsv(path, frame)
        deriv.write_json(path.with_suffix(".json"), _qc_sidecar(frame))
        result.qc[atlas] = frame
        result.qc_files[atlas] = path
    return units


def _qc_row(result, run, meta, key, stats, read_json, read_tsv):
    """One QC row, and the run as a group unit when it is used."""
    outputs = run.atlases.get(key) if key is not None else None
    space, atlas, seg, res, den = key if key is not None else (None,) * 5
    row: dict[str, Any] = {
        "participant_id": f"sub-{run.subject}",
        "session_id": f"ses-{run.session}" if run.session else None,
        "task": run.task,
        **{col: run.entities.get(k) for k, col in _OPTIONAL_COLUMNS.items()},
        "run": run.entities.get("run"),
        "space": space,
        "res": res,
        "den": den,
    }
    meta = meta or {}
    for column, name in _OUTLIER_KEYS.items():
        row[column] = meta.get(name)
    regions = _regions_for(result.regions, space, atlas, seg, res) if key else None
    names = regions.names if regions is not None else None
    na = _regions_na(outputs, meta, read_json, read_tsv)
    row["n_regions"] = len(names) if names is not None else None
    row["n_regions_na"] = len(na) if na is not None else None
    row["regions_na"] = ",".join(na) if na else None

    status = meta.get("RunStatus")
    reason, problem = None, None
    if not meta:
        reason = problem = f"{run.outliers.name}: unreadable"
    elif run.subject in result.refused:
        reason = "participant " + result.refused[run.subject]
    elif status == "dropped":
        reason = meta.get("DropReason") or "dropped by the participant level"
    elif status != "used":
        reason = problem = f"unknown RunStatus {status!r} in {run.outliers.name}"
    else:
        lacking = []
        if outputs is None or outputs.timeseries is None:
            lacking.append("region time series")
        lacking += [
            f"stat-{stat} relmat"
            for stat in stats
            if outputs is None or (stat, None) not in outputs.relmats
        ]
        if lacking:
            reason = problem = f"missing outputs: {', '.join(lacking)}"
        elif names is None:
            reason = problem = (
                f"no regions table for atlas-{atlas} space-{space}"
                + (f" res-{res}" if res else "") + " in atlases/"
            )
    row["used"] = 0 if reason else 1
    row["reason"] = reason
    if problem:
        where = f"{run.name}" + (f" (atlas-{atlas})" if atlas else "")
        result.problems.append(f"run outputs unusable: {where}: {problem}")
    unit = _Unit(run, outputs, names) if row["used"] else None
    return row, unit


def _regions_na(outputs, meta, read_json, read_tsv) -> list[str] | None:
    """Regions set to n/a: the time series sidecar, else the coverage table, else outliers."""
    if outputs is not None and outputs.timeseries is not None:
        sidecar = outputs.timeseries.with_suffix(".json")
        try:
            value = read_json(sidecar).get("RegionsSetToNA")
            if isinstance(value, list):
                return [str(v) for v in value]
        except ValueError:
            pass
    if outputs is not None and outputs.coverage is not None:
        try:
            table = read_tsv(outputs.coverage)
            if {"name", "used"} <= set(table.columns):
                return [str(n) for n, u in zip(table["name"], table["used"], strict=True)
                        if u == 0]
        except ValueError:
            pass
    value = meta.get("RegionsSetToNA")
    return [str(v) for v in value] if isinstance(value, list) else None


def _qc_frame(rows: list[dict], pd):
    columns = [
        c for c in QC_COLUMNS
        if c not in ("acq", "ce", "rec", "dir", "echo", "res", "den")
        or any(row.get(c) is not None for row in rows)
    ]
    identity = [c for c in _ID_COLUMNS if c in columns]
    rows = sorted(rows, key=lambda r: tuple(_natural(str(r.get(c) or "")) for c in identity))
    frame = pd.DataFrame({c: pd.Series([r.get(c) for r in rows], dtype=object) for c in columns})
    for column in ("kept_time", "mean_fd", "max_fd"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(np.float64)
    return frame


def _qc_sidecar(frame) -> dict:
    sidecar = {}
    for column in frame.columns:
        description, units = QC_COLUMNS[column]
        entry: dict[str, Any] = {"Description": description}
        if units:
            entry["Units"] = units
        if column == "used":
            entry["Levels"] = {"1": "used", "0": "not used (see reason)"}
        sidecar[column] = entry
    return sidecar


# --------------------------------------------------------------------------------------------
# Group connectomes
# --------------------------------------------------------------------------------------------
def _group_connectomes(result, key, units, measures, settings, options) -> None:
    from bids_regionx.core.group import group_mean
    from bids_regionx.io.participant_outputs import read_matrix

    task, space, atlas, seg, res, den = key
    names = units[0].names
    where = " ".join(
        f"{k}-{v}" for k, v in zip(_KEY_NAMES, key, strict=True) if v
    )
    for measure in measures:
        stat = STAT_LABELS[measure]
        if measure == "tangent":
            _tangent(result, key, units, settings, options, where)
            continue
        matrices, kept = [], []
        for u in units:
            try:
                matrices.append(read_matrix(u.outputs.relmats[(stat, None)], names)[0])
                kept.append(u)
            except ValueError as exc:
                result.problems.append(f"{where} stat-{stat}: {exc} (left out)")
        if not matrices:
            continue
        groups = [u.run.subject for u in kept] if result.unit == "subject" else None
        try:
            mean = group_mean(
                matrices,
                transform="fisher_z" if stat in FISHER_STATS else "none",
                groups=groups,
            )
        except ValueError as exc:
            result.problems.append(f"{where} stat-{stat}: {exc}")
            continue
        connectome = GroupConnectome(
            task=task, space=space, atlas=atlas, seg=seg, res=res, den=den, stat=stat,
            names=names, mean=mean.mean, count=mean.count, fisherz=mean.fisherz,
            n_runs=len(kept), participants=sorted({u.run.subject for u in kept}, key=_natural),
        )
        sources = [_uri(result, u.outputs.relmats[(stat, None)]) for u in kept]
        base = _meta_base(result, stat, names, key, connectome, sources)
        connectome.files += _write_matrix(result, key, stat, "mean", mean.mean, names, {
            **base,
            "Description": _mean_description(stat, result.unit, connectome),
            "FisherZ": False,
            "ValidDiagonal": stat not in FISHER_STATS,
        })
        if mean.fisherz is not None:
            connectome.files += _write_matrix(result, key, stat, "fisherz", mean.fisherz, names, {
                **base,
                "Description": f"Group mean of the Fisher z-transformed {MEASURE_NAMES[stat]} "
                               f"(arctanh) over {_units_text(result.unit, connectome)}; the "
                               "diagonal is n/a.",
                "FisherZ": True,
                "ValidDiagonal": False,
            })
        connectome.files += _write_matrix(result, key, stat, "count", mean.count, names, {
            **base,
            "Description": f"Number of {result.unit}s contributing to each edge of the group "
                           f"{MEASURE_NAMES[stat]} (regions set to n/a leave a {result.unit} out "
                           "of their edges); the diagonal counts the "
                           f"{result.unit}s in which the region is present.",
            "Weighted": True,
            "ValidDiagonal": True,
        })
        result.connectomes.append(connectome)


def _tangent(result, key, units, settings, options, where) -> None:
    from bids_regionx.core.group import group_tangent
    from bids_regionx.io import derivatives as deriv
    from bids_regionx.io.participant_outputs import read_tsv

    task, space, atlas, seg, res, den = key
    names = units[0].names
    series, kept = [], []
    for u in units:
        try:
            frame = read_tsv(u.outputs.timeseries)
            if tuple(str(c) for c in frame.columns) != tuple(names):
                raise ValueError(f"{u.outputs.timeseries}: its regions are not those of the atlas")
            series.append(frame.to_numpy(dtype=np.float64))
            kept.append(u)
        except ValueError as exc:
            result.problems.append(f"{where} stat-tangent: {exc} (left out)")
    groups = [u.run.subject for u in kept] if result.unit == "subject" else None
    estimator = options.get("connectivity.cov_estimator", "empirical")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tangent = group_tangent(series, estimator=estimator, groups=groups)
    except (ValueError, FloatingPointError) as exc:
        hint = ""
        if estimator == "empirical" and "positive definite" in str(exc):
            hint = ("; with --cov-estimator empirical every run needs more volumes than regions, "
                    "else the participant outputs must be made with --cov-estimator ledoit_wolf")
        result.problems.append(f"{where} stat-tangent: cannot compute it ({exc}{hint})")
        return
    for warning in caught:  # e.g. the geometric mean stopped before its tolerance, as nilearn's
        logger.warning("%s stat-tangent: %s", where, warning.message)
    connectome = GroupConnectome(
        task=task, space=space, atlas=atlas, seg=seg, res=res, den=den, stat="tangent",
        names=names, mean=tangent.reference, count=tangent.count, fisherz=None,
        n_runs=len(kept), participants=sorted({u.run.subject for u in kept}, key=_natural),
    )
    sources = [_uri(result, u.outputs.timeseries) for u in kept]
    base = _meta_base(result, "tangent", names, key, connectome, sources)
    base["CovarianceEstimator"] = estimator
    reference = tangent.reference
    reference_files = _write_matrix(result, key, "tangent", "reference", reference, names, {
        **base,
        "Description": "Reference point of the tangent space: the geometric (Riemannian) mean "
                       f"of the covariance matrices of the {_units_text(result.unit, connectome)}"
                       + (" (each subject's covariance is the geometric mean of its runs')"
                          if result.unit == "subject" else "")
                       + "; units of covariance.",
        "ValidDiagonal": True,
    })
    connectome.files += reference_files
    connectome.files += _write_matrix(result, key, "tangent", "count", tangent.count, names, {
        **base,
        "Description": f"Number of {result.unit}s entering each edge of the tangent space "
                       "(regions set to n/a in any run are left out for everyone: 0).",
        "ValidDiagonal": True,
    })
    reference_uri = _uri(result, reference_files[0])
    for unit_label, matrix in zip(tangent.units, tangent.connectomes, strict=True):
        members = [u for i, u in enumerate(kept) if (groups[i] if groups else i) == unit_label]
        entities = _unit_entities(members, result.unit)
        path = deriv.output_path(
            result.output_dir, "group_unit_relmat", **entities, space=space, atlas=atlas,
            seg=seg, res=res, den=den, stat="tangent", suffix="relmat", extension=".tsv",
        )
        meta = {
            "Description": "Tangent-space connectivity: logm(W C W) with C this "
                           f"{result.unit}'s covariance and W the inverse square root of the "
                           "group reference (nilearn's ConnectivityMeasure(kind='tangent')). "
                           "It depends on the group the reference was computed from.",
            "RelationshipMeasure": MEASURE_NAMES["tangent"],
            "FisherZ": False,
            "Weighted": True,
            "Directed": False,
            "ValidDiagonal": True,
            "StorageFormat": "Full",
            "AveragingUnit": result.unit,
            "CovarianceEstimator": estimator,
            "Reference": reference_uri,
            "Sources": [_uri(result, u.outputs.timeseries) for u in members],
            "NodeFiles": base["NodeFiles"],
        }
        connectome.files += _write_one(path, matrix, names, meta)
    result.connectomes.append(connectome)


def _unit_entities(members, unit: str) -> dict[str, str]:
    """Entities naming a tangent unit: the run's own, or the subject's (+ task)."""
    if unit == "subject":
        run = members[0].run
        return {"subject": run.subject, "task": run.task}
    return members[0].run.pybids_entities()


def _units_text(unit: str, connectome: GroupConnectome) -> str:
    n_subjects = len(connectome.participants)
    if unit == "subject":
        return f"{n_subjects} subjects (each subject's runs averaged first)"
    return f"{connectome.n_runs} runs of {n_subjects} subjects"


def _mean_description(stat: str, unit: str, connectome: GroupConnectome) -> str:
    over = _units_text(unit, connectome)
    if stat in FISHER_STATS:
        return (
            f"Group mean {MEASURE_NAMES[stat]}: Fisher z (arctanh, |r| clipped at 1 - 1e-7) "
            f"averaged edge by edge over {over}, back-transformed with tanh; n/a where no "
            f"{unit} has a value."
        )
    return (
        f"Group mean {MEASURE_NAMES[stat]}: arithmetic mean edge by edge over {over}; n/a "
        f"where no {unit} has a value."
    )


def _meta_base(result, stat, names, key, connectome, sources) -> dict:
    return {
        "Description": "",
        "RelationshipMeasure": MEASURE_NAMES[stat],
        "FisherZ": False,
        "Weighted": True,
        "Directed": False,
        "ValidDiagonal": False,
        "StorageFormat": "Full",
        "AveragingUnit": result.unit,
        "NumberOfRuns": connectome.n_runs,
        "NumberOfSubjects": len(connectome.participants),
        "Participants": [f"sub-{s}" for s in connectome.participants],
        "Sources": sources,
        "NodeFiles": _node_files(result, key),
    }


def _node_files(result, key) -> list[str]:
    task, space, atlas, seg, res, den = key
    regions = _regions_for(result.regions, space, atlas, seg, res)
    return [_uri(result, regions.table)] if regions is not None else []


def _uri(result, path: Path) -> str:
    from bids_regionx.io.derivatives import bids_uri

    return bids_uri("", Path(path).relative_to(result.output_dir))


def _write_matrix(result, key, stat, desc, matrix, names, meta) -> list[Path]:
    from bids_regionx.io import derivatives as deriv

    task, space, atlas, seg, res, den = key
    path = deriv.output_path(
        result.output_dir, "group_relmat", task=task, space=space, atlas=atlas, seg=seg,
        res=res, den=den, stat=stat, desc=desc, suffix="relmat", extension=".tsv",
    )
    return _write_one(path, matrix, names, meta)


def _write_one(path: Path, matrix: np.ndarray, names, meta) -> list[Path]:
    import pandas as pd

    from bids_regionx.io import derivatives as deriv

    frame = pd.DataFrame(matrix, index=pd.Index(list(names), name="Node"), columns=list(names))
    return [
        deriv.write_tsv(path, frame, index=True),
        deriv.write_json(path.with_name(path.name[: -len(".tsv")] + ".json"), meta),
    ]
