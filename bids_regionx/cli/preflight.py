"""Checks run after parsing and before any heavy import: fail fast with the right exit code.

Each check raises the :class:`~bids_regionx.errors.BidsRegionxError` subclass that says what is
wrong, with a one-line message naming the path or option:

- an input folder or file is missing or unreadable: ``NoInputError`` (66);
- no or invalid ``dataset_description.json``, or a raw dataset without ``-d fmriprep=PATH``:
  ``InvalidDatasetError`` (16);
- an unknown ``--participant-label``: ``UsageError`` (64), listing every unknown label;
- an output, work or index folder that cannot be written: ``CantCreateError`` (73).

Nothing is written anywhere (in particular not inside ``bids_dir``): writability is judged with
:func:`os.access` on the folder or its nearest existing ancestor. Standard library only.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from bids_regionx.config import Settings
from bids_regionx.errors import (
    CantCreateError,
    InvalidDatasetError,
    NoInputError,
    UsageError,
)

__all__ = [
    "check_bids_dir",
    "check_datasets",
    "check_input_files",
    "check_outputs",
    "check_participants",
    "run_preflight",
]

logger = logging.getLogger("bids_regionx.cli")

_DESCRIPTION = "dataset_description.json"


def run_preflight(settings: Settings) -> tuple[str, ...]:
    """Run every check, inputs first, so that nothing is judged writable for a doomed run.

    Parameters
    ----------
    settings : Settings
        Parsed settings.

    Returns
    -------
    tuple of str
        Warnings (also logged to ``bids_regionx.cli``), e.g. checks downgraded by
        ``--skip-bids-validation``.

    Raises
    ------
    NoInputError, InvalidDatasetError, UsageError, CantCreateError
        The first failing check.
    """
    warnings = [*check_bids_dir(settings), *check_datasets(settings)]
    check_input_files(settings)
    check_participants(settings)
    check_outputs(settings)
    for message in warnings:
        logger.warning(message)
    return tuple(warnings)


def check_bids_dir(settings: Settings) -> list[str]:
    """``bids_dir`` is a readable BIDS derivatives dataset, or raw with ``-d fmriprep=PATH``.

    Returns
    -------
    list of str
        The dataset checks turned into warnings by ``--skip-bids-validation``.
    """
    _check_readable_dir(settings.bids_dir, "bids_dir")
    relaxed = settings.execution.skip_bids_validation
    try:
        dataset_type = _dataset_type(settings.bids_dir, "bids_dir")
    except InvalidDatasetError as exc:
        return _relax(exc, relaxed)
    if dataset_type != "derivative" and "fmriprep" not in settings.selection.datasets:
        return _relax(
            InvalidDatasetError(
                f"bids_dir {settings.bids_dir} is a {dataset_type} dataset "
                f"(DatasetType {dataset_type!r}): pass the fMRIPrep derivatives as bids_dir, "
                "or add -d fmriprep=PATH"
            ),
            relaxed,
        )
    return []


def check_datasets(settings: Settings) -> list[str]:
    """Every ``-d NAME=PATH`` is a readable folder; ``fmriprep``/``atlases`` are datasets.

    Returns
    -------
    list of str
        The dataset checks turned into warnings by ``--skip-bids-validation``.
    """
    relaxed = settings.execution.skip_bids_validation
    warnings = []
    for name, path in settings.selection.datasets.items():
        what = f"-d {name}"
        _check_readable_dir(path, what)
        if name not in ("fmriprep", "atlases"):
            continue
        try:
            dataset_type = _dataset_type(path, what)
        except InvalidDatasetError as exc:
            warnings += _relax(exc, relaxed)
            continue
        if name == "fmriprep" and dataset_type != "derivative":
            warnings += _relax(
                InvalidDatasetError(
                    f"{what} {path}: DatasetType is {dataset_type!r}, expected 'derivative' "
                    "(fMRIPrep outputs)"
                ),
                relaxed,
            )
    return warnings


def check_input_files(settings: Settings) -> None:
    """Maps, mask, label tables, strategy and filter files exist and are readable (66)."""
    files = [("--maps", path) for path in settings.maps.files]
    files += [("--maps-labels-tsv", path) for path in settings.maps.labels_tsv]
    optional = [
        ("--mask", settings.maps.mask),
        ("--denoise-strategy", settings.denoise.strategy_path),
        ("--bids-filter-file", settings.selection.bids_filter_file),
    ]
    files += [(what, path) for what, path in optional if path is not None]
    for what, path in files:
        _check_readable_file(path, what)


def check_participants(settings: Settings) -> None:
    """Every ``--participant-label`` has a ``sub-<label>`` folder (64, listing the unknown)."""
    labels = settings.selection.participant_labels
    if not labels:
        return
    root = settings.fmriprep_dir
    unknown = [label for label in labels if not (root / f"sub-{label}").is_dir()]
    if unknown:
        found = sorted(path.name for path in root.glob("sub-*") if path.is_dir())
        shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
        raise UsageError(
            f"--participant-label: no sub-<label> folder in {root} for "
            f"{', '.join(unknown)} (found {len(found)}: {shown or 'none'})"
        )


def check_outputs(settings: Settings) -> None:
    """Output, work and index folders exist and are writable, or can be created (73).

    At the group level the output dir holds the participant outputs, so it must exist (66).
    """
    if settings.analysis_level == "group":
        _check_readable_dir(
            settings.output_dir, "output_dir (the group level reads the participant outputs)"
        )
    _check_writable_dir(settings.output_dir, "output_dir")
    _check_writable_dir(settings.execution.work_dir, "-w/--work-dir")
    if settings.selection.bids_database_dir is not None:
        _check_writable_dir(settings.selection.bids_database_dir, "--bids-database-dir")


def _relax(exc: InvalidDatasetError, relaxed: bool) -> list[str]:
    if not relaxed:
        raise exc
    return [f"{exc} (ignored: --skip-bids-validation)"]


def _dataset_type(root: Path, what: str) -> str:
    """``DatasetType`` of the dataset at ``root`` ("raw" when absent, as BIDS says)."""
    path = root / _DESCRIPTION
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidDatasetError(
            f"{what} {root}: no {_DESCRIPTION}, so it is not a BIDS dataset"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NoInputError(f"{path}: cannot read it ({_reason(exc)})") from None
    try:
        description = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidDatasetError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(description, dict):
        raise InvalidDatasetError(f"{path}: expected a JSON object")
    return str(description.get("DatasetType", "raw"))


def _check_readable_dir(path: Path, what: str) -> None:
    if not path.exists():
        raise NoInputError(f"{what} {path}: no such directory")
    if not path.is_dir():
        raise NoInputError(f"{what} {path}: not a directory")
    try:
        with os.scandir(path) as entries:
            next(entries, None)
    except OSError as exc:
        raise NoInputError(f"{what} {path}: cannot read it ({_reason(exc)})") from None


def _check_readable_file(path: Path, what: str) -> None:
    if not path.exists():
        raise NoInputError(f"{what} {path}: no such file")
    if path.is_dir():
        raise NoInputError(f"{what} {path}: is a directory, expected a file")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise NoInputError(f"{what} {path}: cannot read it ({_reason(exc)})") from None


def _check_writable_dir(path: Path, what: str) -> None:
    existing = path
    while not _exists(existing):
        existing = existing.parent
    if not existing.is_dir():
        where = "it" if existing == path else f"its ancestor {existing}"
        raise CantCreateError(f"{what} {path}: cannot create it, {where} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        if existing == path:
            raise CantCreateError(f"{what} {path}: not writable")
        raise CantCreateError(f"{what} {path}: cannot create it, {existing} is not writable")


def _exists(path: Path) -> bool:
    # A path under an unreadable folder cannot be checked; treat it as absent so that the
    # ancestor is judged instead (the root always exists, so the walk ends).
    try:
        return path.exists()
    except OSError:
        return False


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)
