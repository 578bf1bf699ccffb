"""Reading the participant outputs of an output dir (what the group level aggregates).

Files are found by name (``docs/outputs.md``), without pybids: an output dir of thousands of
participants is listed with a few ``glob`` calls. A *run* is one ``*_outliers.json`` (the
participant level writes one for every run it saw, dropped runs included); its other outputs
share its source entities and add ``space``/``atlas``/``seg``/``res``/``den``. Outputs of
``--combine-runs`` (no ``run-`` where the runs have one) belong to no run and are not read.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ATLAS_KEYS",
    "SOURCE_KEYS",
    "AtlasOutputs",
    "Regions",
    "RunOutputs",
    "bold_participants",
    "collect_runs",
    "find_regions",
    "option_records",
    "parse_name",
    "read_json",
    "read_matrix",
    "read_tsv",
]

#: File-name keys of a BOLD run's own entities, in BIDS order, and their pybids names.
SOURCE_KEYS = {
    "sub": "subject",
    "ses": "session",
    "task": "task",
    "acq": "acquisition",
    "ce": "ceagent",
    "rec": "reconstruction",
    "dir": "direction",
    "run": "run",
    "echo": "echo",
}
#: Keys that tell one atlas realisation on one grid from another (besides the source).
ATLAS_KEYS = ("space", "atlas", "seg", "res", "den")
_ENTITY_RE = re.compile(r"^([a-zA-Z]+)-([a-zA-Z0-9]+)$")
_BOLD_RE = re.compile(r"_bold\.nii(\.gz)?$")


@dataclass(frozen=True)
class ParsedName:
    """A BIDS-like file name: ordered ``key -> label`` entities, suffix and extension."""

    entities: dict[str, str]
    suffix: str
    extension: str


def parse_name(name: str) -> ParsedName | None:
    """Split ``sub-01_task-rest_run-1_outliers.json`` into entities, suffix and extension.

    Returns None for a name that is not ``key-label_..._suffix.ext`` (hidden temporary files,
    figures folders, anything else).
    """
    if name.startswith("."):
        return None
    stem, dot, rest = name.partition(".")
    if not dot:
        return None
    parts = stem.split("_")
    entities: dict[str, str] = {}
    for part in parts[:-1]:
        match = _ENTITY_RE.match(part)
        if match is None or match.group(1) in entities:
            return None
        entities[match.group(1)] = match.group(2)
    if "-" in parts[-1] or not parts[-1]:
        return None
    return ParsedName(entities, parts[-1], "." + rest)


@dataclass
class AtlasOutputs:
    """The outputs of one run for one atlas realisation (``space``/``atlas``/``seg``/...)."""

    timeseries: Path | None = None
    coverage: Path | None = None
    #: ``(stat, desc or None) -> path`` of each relmat TSV.
    relmats: dict[tuple[str, str | None], Path] = field(default_factory=dict)


@dataclass
class RunOutputs:
    """Everything the participant level wrote for one BOLD run.

    Attributes
    ----------
    entities : dict
        Source entities by file-name key (``sub``, ``ses``, ``task``, ``run``...), BIDS order.
    outliers : Path
        The ``*_outliers.json`` that defines the run.
    atlases : dict
        ``(space, atlas, seg, res, den)`` (None for absent entities) -> :class:`AtlasOutputs`.
    """

    entities: dict[str, str]
    outliers: Path
    atlases: dict[tuple, AtlasOutputs] = field(default_factory=dict)

    @property
    def subject(self) -> str:
        return self.entities["sub"]

    @property
    def session(self) -> str | None:
        return self.entities.get("ses")

    @property
    def task(self) -> str | None:
        return self.entities.get("task")

    @property
    def name(self) -> str:
        """``sub-01_[ses-1_]task-rest[_run-1]``: the run's source prefix."""
        return "_".join(f"{k}-{v}" for k, v in self.entities.items())

    def pybids_entities(self) -> dict[str, str]:
        """Source entities with pybids names, for :func:`~.derivatives.output_path`."""
        return {SOURCE_KEYS[k]: v for k, v in self.entities.items()}


@dataclass(frozen=True)
class Regions:
    """The regions table of one atlas realisation in ``atlases/`` (names in volume order)."""

    space: str
    atlas: str
    seg: str
    res: str | None
    table: Path
    names: tuple[str, ...]
    frame: Any = field(compare=False, repr=False)


def _source_and_atlas(entities: Mapping[str, str]) -> tuple[dict[str, str], tuple] | None:
    source = {k: v for k, v in entities.items() if k in SOURCE_KEYS}
    if "sub" not in source:
        return None
    return source, tuple(entities.get(k) for k in ATLAS_KEYS)


def _func_files(output_dir: Path, subjects: Iterable[str] | None) -> list[Path]:
    roots = (
        [output_dir / f"sub-{label}" for label in subjects]
        if subjects is not None
        else sorted(p for p in output_dir.glob("sub-*") if p.is_dir())
    )
    files: list[Path] = []
    for root in roots:
        files += root.glob("func/*")
        files += root.glob("ses-*/func/*")
    return sorted(files)


def collect_runs(
    output_dir: str | os.PathLike,
    *,
    subjects: Iterable[str] | None = None,
    sessions: Iterable[str] = (),
    tasks: Iterable[str] = (),
) -> list[RunOutputs]:
    """Find every run the participant level wrote, with its per-atlas outputs.

    Parameters
    ----------
    output_dir : path
    subjects : iterable of str, optional
        Participant labels to read (default: every ``sub-*`` folder).
    sessions, tasks : iterable of str
        Keep only these sessions / tasks (empty: all).

    Returns
    -------
    list of RunOutputs
        Sorted by source name.
    """
    output_dir = Path(output_dir)
    sessions, tasks = set(sessions), set(tasks)
    files = _func_files(output_dir, subjects)
    runs: dict[tuple, RunOutputs] = {}
    parsed = []
    for path in files:
        name = parse_name(path.name)
        if name is None:
            continue
        split = _source_and_atlas(name.entities)
        if split is None:
            continue
        source, atlas_key = split
        if sessions and source.get("ses") not in sessions:
            continue
        if tasks and source.get("task") not in tasks:
            continue
        key = (path.parent, tuple(source.items()))
        if name.suffix == "outliers" and name.extension == ".json":
            runs[key] = RunOutputs(entities=source, outliers=path)
        else:
            parsed.append((key, atlas_key, name, path))
    for key, atlas_key, name, path in parsed:
        run = runs.get(key)
        if run is None or name.extension != ".tsv" or atlas_key[1] is None:
            continue  # combined runs, design/outliers tables, sidecars
        outputs = run.atlases.setdefault(atlas_key, AtlasOutputs())
        stat = name.entities.get("stat")
        if name.suffix == "timeseries" and stat == "mean":
            outputs.timeseries = path
        elif name.suffix == "bold" and stat == "coverage":
            outputs.coverage = path
        elif name.suffix == "relmat" and stat:
            outputs.relmats[(stat, name.entities.get("desc"))] = path
    return sorted(runs.values(), key=lambda r: (r.subject, r.name, str(r.outliers)))


def find_regions(output_dir: str | os.PathLike) -> list[Regions]:
    """Every regions table in the nested ``atlases/`` dataset.

    Returns
    -------
    list of Regions
        Sorted by (atlas, space, res).
    """
    found = []
    for path in sorted(Path(output_dir).glob("atlases/tpl-*/tpl-*_probseg.tsv")):
        name = parse_name(path.name)
        if name is None or "seg" not in name.entities or "atlas" not in name.entities:
            continue
        frame = read_tsv(path)
        if "name" not in frame.columns:
            raise ValueError(f"{path}: no 'name' column")
        found.append(
            Regions(
                space=name.entities["tpl"],
                atlas=name.entities["atlas"],
                seg=name.entities["seg"],
                res=name.entities.get("res"),
                table=path,
                names=tuple(str(n) for n in frame["name"]),
                frame=frame,
            )
        )
    return sorted(found, key=lambda r: (r.atlas, r.space, r.res or ""))


def bold_participants(
    bids_dir: str | os.PathLike,
    *,
    subjects: Iterable[str] | None = None,
    sessions: Iterable[str] = (),
    tasks: Iterable[str] = (),
) -> list[str]:
    """Participants of an fMRIPrep (or raw) dataset that have at least one BOLD run.

    Parameters
    ----------
    bids_dir : path
    subjects : iterable of str, optional
        Only look at these labels (default: every ``sub-*`` folder).
    sessions, tasks : iterable of str
        Count only BOLD runs of these sessions / tasks (empty: all).

    Returns
    -------
    list of str
        Sorted labels (without ``sub-``).
    """
    sessions, tasks = set(sessions), set(tasks)
    labels = []
    for path in _func_files(Path(bids_dir), subjects):
        if not _BOLD_RE.search(path.name):
            continue
        name = parse_name(path.name)
        if name is None or "sub" not in name.entities:
            continue
        if sessions and name.entities.get("ses") not in sessions:
            continue
        if tasks and name.entities.get("task") not in tasks:
            continue
        labels.append(name.entities["sub"])
    return sorted(set(labels))


def option_records(output_dir: str | os.PathLike, subject: str) -> list[Path]:
    """The ``config.toml`` of every participant run of ``subject`` (``sub-<label>/log/*/``)."""
    return sorted((Path(output_dir) / f"sub-{subject}" / "log").glob("*/config.toml"))


# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------
def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON object; ValueError naming the file when it cannot be read or is not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read it ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def read_tsv(path: str | os.PathLike, **kwargs):
    """A BIDS TSV as a DataFrame (``n/a`` is NaN, nothing else is)."""
    import pandas as pd

    try:
        return pd.read_csv(
            path, sep="\t", na_values=["n/a"], keep_default_na=False, **kwargs
        )
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read it ({exc})") from None


def read_matrix(path: str | os.PathLike, names: tuple[str, ...] | None = None):
    """A relmat TSV (``Node`` column + one column per region) as a float array.

    Parameters
    ----------
    path : path
    names : tuple of str, optional
        Expected region names, in order; a mismatch is an error naming the file.

    Returns
    -------
    matrix : ndarray, shape (n_regions, n_regions)
    names : tuple of str

    Raises
    ------
    ValueError
        Unreadable, not square, rows and columns named differently, or other regions.
    """
    import numpy as np

    frame = read_tsv(path, dtype={"Node": str})
    if frame.columns[0] != "Node":
        raise ValueError(f"{path}: the first column must be 'Node'")
    rows = tuple(str(n) for n in frame["Node"])
    cols = tuple(str(c) for c in frame.columns[1:])
    if rows != cols:
        raise ValueError(f"{path}: row and column regions differ")
    if names is not None and rows != tuple(names):
        raise ValueError(f"{path}: its regions are not those of the atlas ({len(rows)} vs "
                         f"{len(names)} regions, or other names/order)")
    try:
        matrix = frame.iloc[:, 1:].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: non-numeric values ({exc})") from None
    return matrix, rows
