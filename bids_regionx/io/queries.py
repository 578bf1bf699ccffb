"""The BOLD runs of an fMRIPrep dataset and the files each one needs.

:func:`collect_runs` indexes the fMRIPrep derivatives with pybids, selects the preprocessed BOLD
runs (participants, sessions, tasks, space, ``--bids-filter-file``) and pairs each with its brain
mask, confounds table and sidecars, as declared in ``bids_regionx/data/io_spec.json``.

Decisions
---------
- **One layout, on the fMRIPrep dataset only.** ``settings.fmriprep_dir`` is ``bids_dir`` when
  that is a derivatives dataset, or ``-d fmriprep=PATH`` next to a raw ``bids_dir``. The raw
  dataset is never indexed: nothing is read from it.
- **The index never lives in an input.** With ``--bids-database-dir DIR`` the index is kept in
  ``DIR`` and reused as is by later calls (build it once, share it across SLURM array tasks;
  delete it to re-index). Without it, the index is rebuilt in memory on every call, restricted
  to the selected participants and to ``func/`` folders (cheap, never stale), and saved under
  ``<work_dir>/bids_db/<dataset>-<hash>/`` for inspection. Either way the file is first written
  to a temporary folder and then renamed into place, so a concurrent reader never sees a
  half-built index. ``bids_dir`` may be mounted read-only.
- **A broken run does not stop the others.** A run whose confounds are missing, whose sidecar
  is unreadable or has no ``RepetitionTime``, or whose BOLD header cannot be read, is returned
  with :attr:`RunInputs.problem` set (a one-line message naming the file) so the workflow can
  process the other runs, report this one and exit with code 1. ``strict=True`` raises the
  corresponding :class:`~bids_regionx.errors.DataError` (65) or
  :class:`~bids_regionx.errors.NoInputError` (66) instead. A missing brain mask is not a problem
  (``mask`` is None); the workflow decides what that means.
- **Headers only.** Only NIfTI headers are read (shape, affine); ``read_headers=False`` skips
  even that, for trees whose images are placeholders.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from bids_regionx.config import QUERY_ANY, QUERY_NONE, FrozenMap, Settings
from bids_regionx.errors import (
    CantCreateError,
    DataError,
    NoInputError,
    NoMatchingRunsError,
    UsageError,
)
from bids_regionx.io.derivatives import file_lock

__all__ = [
    "DEFAULT_SPACE",
    "RUN_ENTITIES",
    "SOURCE_ENTITIES",
    "RunInputs",
    "collect_runs",
    "database_dir",
    "io_spec",
    "open_layout",
]

logger = logging.getLogger("bids_regionx.io")

#: Entities that identify a run and its outputs, in BIDS order.
RUN_ENTITIES = (
    "subject",
    "session",
    "task",
    "acquisition",
    "ceagent",
    "reconstruction",
    "direction",
    "run",
    "echo",
    "space",
    "res",
    "den",
)
#: The run's own entities (without the template ones): what its outputs are named from.
SOURCE_ENTITIES = RUN_ENTITIES[:9]
_PREFIXES = {
    "subject": "sub",
    "session": "ses",
    "task": "task",
    "acquisition": "acq",
    "ceagent": "ce",
    "reconstruction": "rec",
    "direction": "dir",
    "run": "run",
    "echo": "echo",
    "space": "space",
    "res": "res",
    "den": "den",
}
_INDEX_FILE = "layout_index.sqlite"
#: ``problem_kind`` values and the exception each one raises in strict mode.
_MISSING, _INVALID = "missing", "invalid"


@functools.lru_cache(maxsize=1)
def io_spec() -> dict[str, Any]:
    """The input queries, as declared in ``bids_regionx/data/io_spec.json``.

    Returns
    -------
    dict
        ``queries`` (``bold``, ``mask``, ``confounds``), ``sidecars``, ``index`` and
        ``defaults``; treat it as read-only (it is cached).
    """
    text = (resources.files("bids_regionx") / "data" / "io_spec.json").read_text("utf-8")
    return json.loads(text)


#: Template space used when neither ``--space`` nor the maps name one.
DEFAULT_SPACE: str = io_spec()["defaults"]["space"]


@dataclass(frozen=True)
class RunInputs:
    """One preprocessed BOLD run and the files that go with it.

    Attributes
    ----------
    entities : FrozenMap
        The run's entities among :data:`RUN_ENTITIES` that are present, as the labels written in
        the file name (strings: ``run`` keeps its zero padding, e.g. ``"01"``).
    bold : Path
        The preprocessed BOLD series (``desc-preproc_bold``).
    mask : Path or None
        Its brain mask (``desc-brain_mask``), if fMRIPrep wrote one.
    confounds : Path or None
        The confounds table (``desc-confounds_timeseries.tsv``, or ``_regressors.tsv`` before
        fMRIPrep 20.x); None only for a run with a :attr:`problem`.
    confounds_json : Path or None
        The confounds sidecar (CompCor metadata), if present.
    bold_json : Path or None
        The BOLD sidecar that gave ``RepetitionTime`` (the nearest one, by BIDS inheritance).
    t_r : float or None
        Repetition time in s (``--t-r`` when given, else the sidecar's ``RepetitionTime``).
    n_volumes : int or None
        Number of volumes (None when headers were not read, or for a broken BOLD file).
    shape : tuple of int or None
        Shape of the BOLD image, ``(x, y, z, n_volumes)``.
    affine : tuple of tuple of float or None
        Voxel-to-mm affine, 4 rows of 4 (a tuple so that runs are hashable).
    key : str
        Stable, unique name of the run: its entities as in a BIDS file name
        (``sub-01_ses-1_task-rest_run-1_space-MNI152NLin2009cAsym``).
    problem : str or None
        Why the run cannot be processed (one line, naming the file), or None.
    problem_kind : {"missing", "invalid"} or None
        Whether the problem is a missing input (exit code 66) or bad data (65).
    """

    entities: FrozenMap
    bold: Path
    mask: Path | None
    confounds: Path | None
    confounds_json: Path | None
    bold_json: Path | None
    t_r: float | None
    n_volumes: int | None
    shape: tuple[int, ...] | None
    affine: tuple[tuple[float, ...], ...] | None
    key: str
    problem: str | None = None
    problem_kind: str | None = None

    @property
    def subject(self) -> str:
        """Subject label, without ``sub-``."""
        return self.entities["subject"]

    def source_entities(self) -> dict[str, str]:
        """The entities its outputs are named from (no ``space``, ``res``, ``den``).

        Returns
        -------
        dict of str to str
            In BIDS order, e.g. ``{"subject": "01", "task": "rest", "run": "1"}``.
        """
        return {name: self.entities[name] for name in SOURCE_ENTITIES if name in self.entities}

    def output_entities(self, maps_spec) -> dict[str, str]:
        """Entities of this run's outputs for one maps image.

        Its own entities, the space (the maps' when the BOLD has none), the ``atlas`` and
        ``seg`` labels, and its ``res``/``den``.
        """
        entities = {k: v for k, v in self.source_entities().items() if v}
        entities.update(
            space=self.entities.get("space") or maps_spec.space,
            atlas=maps_spec.label,
            seg="regions",
        )
        for key in ("res", "den"):
            if self.entities.get(key):
                entities[key] = self.entities[key]
        return entities

    def raise_for_problem(self) -> None:
        """Raise the error behind :attr:`problem`, if any.

        Raises
        ------
        NoInputError
            An input file is missing (exit code 66).
        DataError
            An input file is malformed (exit code 65).
        """
        if self.problem is None:
            return
        if self.problem_kind == _MISSING:
            raise NoInputError(self.problem)
        raise DataError(self.problem)


# --------------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------------
def database_dir(settings: Settings) -> Path:
    """Folder of the pybids index for these settings.

    Parameters
    ----------
    settings : Settings
        ``--bids-database-dir`` when given; else a folder under the work dir named after the
        dataset and a hash of what is indexed (the dataset path and the participants).

    Returns
    -------
    Path
    """
    explicit = settings.selection.bids_database_dir
    if explicit is not None:
        return explicit
    root = settings.fmriprep_dir
    identity = json.dumps(
        {
            "root": str(root),
            "participants": sorted(settings.selection.participant_labels),
            "spec": io_spec()["version"],
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:12]
    return settings.execution.work_dir / "bids_db" / f"{root.name}-{digest}"


def open_layout(settings: Settings):
    """A pybids layout of the fMRIPrep dataset, with its index outside every input.

    Parameters
    ----------
    settings : Settings
        The dataset is ``settings.fmriprep_dir``; see the module notes for where the index is.

    Returns
    -------
    bids.BIDSLayout
        Derivatives configuration (``desc``, ``res``, ``den``... are entities), no metadata
        indexed (sidecars are read directly, which is faster).

    Raises
    ------
    UsageError
        ``--bids-database-dir`` holds the index of another dataset.
    CantCreateError
        The index folder cannot be written.
    """
    root = settings.fmriprep_dir
    db_dir = database_dir(settings)
    try:
        db_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CantCreateError(f"pybids index folder {db_dir}: cannot create it ({exc})") from None
    if settings.selection.bids_database_dir is None:
        # A private index: only the selected participants, rebuilt in memory on every call and
        # saved for inspection (concurrent callers write equivalent files, renamed atomically).
        layout = _index(root, _ignore_patterns(settings.selection.participant_labels))
        _save_index(layout, db_dir)
        return layout
    # A shared index covers every participant so that every array task can use it.
    with _index_lock(db_dir):
        if not (db_dir / _INDEX_FILE).is_file():
            _save_index(_index(root, _ignore_patterns(())), db_dir)
    layout = _load_index(root, db_dir)
    indexed_root = Path(layout.root).resolve()
    if indexed_root != root.resolve():
        raise UsageError(
            f"--bids-database-dir {db_dir} holds the index of {indexed_root}, not of {root}; "
            "give another folder or delete it to re-index"
        )
    return layout


def _ignore_patterns(participant_labels: Sequence[str]) -> list[re.Pattern]:
    patterns = [re.compile(text) for text in io_spec()["index"]["ignore"]]
    if participant_labels:
        alternatives = "|".join(re.escape(label) for label in sorted(participant_labels))
        # Everything named sub-<other label> (folders and files such as sub-02.html).
        patterns.append(re.compile(rf"^/sub-(?!(?:{alternatives})(?:[/_.]|$))"))
    return patterns


def _index_lock(db_dir: Path):
    # Beside the index folder, so that it never mixes with what pybids writes.
    return file_lock(db_dir.parent / f".{db_dir.name}.lock", what=f"pybids index {db_dir}")


def _index(root: Path, ignore: list[re.Pattern]):
    """Index ``root`` in memory (much faster than committing every record to a file)."""
    from bids import BIDSLayout, BIDSLayoutIndexer

    indexer = BIDSLayoutIndexer(validate=False, ignore=ignore, index_metadata=False)
    return BIDSLayout(
        root, validate=False, is_derivative=True, config=["bids", "derivatives"], indexer=indexer
    )


def _save_index(layout, db_dir: Path) -> None:
    """Save the index into ``db_dir``: written aside, then renamed over any previous one."""
    tmp = db_dir / f".tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    import sqlite3

    try:
        layout.save(str(tmp), replace_connection=False)
        os.replace(tmp / _INDEX_FILE, db_dir / _INDEX_FILE)
    except (OSError, sqlite3.Error) as exc:  # sqlite: "database or disk is full"
        raise CantCreateError(f"pybids index {db_dir}: cannot write it ({exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_index(root: Path, db_dir: Path):
    from bids import BIDSLayout

    # pybids replaces ``root`` by the one stored in the index: the caller compares them.
    return BIDSLayout(root, validate=False, database_path=db_dir, is_derivative=True)


# --------------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------------
def _spec_value(value: Any) -> Any:
    """io_spec values: JSON null means "entity absent"."""
    from bids.layout import Query

    if value is None:
        return Query.NONE
    return list(value) if isinstance(value, (list, tuple)) else value


def _filter_value(value: Any) -> Any:
    """--bids-filter-file values: the QUERY_NONE/QUERY_ANY markers of the settings."""
    from bids.layout import Query

    if isinstance(value, (list, tuple)):
        return [_filter_value(item) for item in value]
    if value == QUERY_NONE:
        return Query.NONE
    if value == QUERY_ANY:
        return Query.ANY
    return value


def _query(layout, name: str, user: Mapping[str, Any], *, extra: Mapping[str, Any] = (), **over):
    """Files of query ``name``: the spec's entities, then ``over``, the user's, then ``extra``."""
    spec = io_spec()["queries"][name]
    query = {key: _spec_value(value) for key, value in spec["entities"].items()}
    query.update({key: _spec_value(value) for key, value in over.items()})
    query.update({key: _filter_value(value) for key, value in user.items()})
    query.update(dict(extra))
    return layout.get(return_type="object", **query)


def _labels(entities: Mapping[str, Any]) -> dict[str, str]:
    """Entity values as file-name labels (pybids' PaddedInt keeps the padding in ``str``)."""
    return {key: str(value) for key, value in entities.items()}


def _match_key(entities: Mapping[str, str], ignore: Iterable[str]) -> tuple:
    skip = set(ignore)
    return tuple(sorted((k, v) for k, v in entities.items() if k not in skip))


def _natural_key(text: str) -> tuple:
    # run-2 before run-10 when labels are not zero-padded.
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def _pick(candidates: list[tuple[Path, dict[str, str]]], preference: Mapping[str, list]):
    """The preferred file of several matches, or None when the preference cannot decide."""

    def rank(item: tuple[Path, dict[str, str]]) -> tuple:
        ents = item[1]
        return tuple(
            order.index(ents[key]) if ents.get(key) in order else len(order)
            for key, order in preference.items()
        )

    ranked = sorted(candidates, key=lambda item: (rank(item), str(item[0])))
    if len(ranked) > 1 and rank(ranked[0]) == rank(ranked[1]):
        return None
    return ranked[0]


def _companions(
    layout,
    name: str,
    bolds: Sequence[tuple[Path, dict[str, str]]],
    user: Mapping[str, Any],
    subjects: Sequence[str],
) -> dict[Path, Path | str | None]:
    """Pair each BOLD with its ``name`` file (mask, confounds).

    Returns
    -------
    dict
        BOLD path -> the matching file, None when there is none, or a message when several
        files match and the spec's preference cannot choose.
    """
    spec = io_spec()["queries"][name]
    ignore = spec["match_ignore"]
    preference = spec.get("preference", {})
    wanted = {bold: _match_key(ents, ignore) for bold, ents in bolds}
    found: dict[Path, Path | str | None] = dict.fromkeys(wanted)
    extra = {"subject": list(subjects)} if subjects else {}
    for over in [{}, *spec.get("alternatives", [])]:
        pending = {bold: key for bold, key in wanted.items() if found[bold] is None}
        if not pending:
            break
        by_key: dict[tuple, list] = defaultdict(list)
        for bids_file in _query(layout, name, user, extra=extra, **over):
            ents = _labels(bids_file.get_entities())
            by_key[_match_key(ents, ignore)].append((Path(bids_file.path), ents))
        for bold, key in pending.items():
            candidates = by_key.get(key)
            if not candidates:
                continue
            chosen = _pick(candidates, preference)
            found[bold] = (
                chosen[0]
                if chosen is not None
                else f"several {name} files match: "
                + ", ".join(sorted(path.name for path, _ in candidates))
            )
    return found


# --------------------------------------------------------------------------------------------
# Sidecars and headers
# --------------------------------------------------------------------------------------------
def _split_name(name: str) -> tuple[set[str], str]:
    """``sub-01_task-rest_bold.json`` -> ({"sub-01", "task-rest"}, "bold")."""
    stem = name.split(".", 1)[0]
    parts = stem.split("_")
    return {part for part in parts[:-1] if "-" in part}, parts[-1]


def _sidecar_chain(path: Path, root: Path, *, inheritance: bool) -> list[Path]:
    """JSON sidecars applying to ``path``, farthest first (BIDS inheritance principle)."""
    pairs, suffix = _split_name(path.name)
    own = path.with_name(path.name.split(".", 1)[0] + ".json")
    if not inheritance:
        return [own] if own.is_file() else []
    chain = []
    folder = path.parent
    while True:
        level = []
        for candidate in sorted(folder.glob(f"*_{suffix}.json")):
            cand_pairs, cand_suffix = _split_name(candidate.name)
            if cand_suffix == suffix and cand_pairs <= pairs:
                level.append(candidate)
        # Fewer entities = more general = applied first at the same level.
        chain = sorted(level, key=lambda p: len(_split_name(p.name)[0])) + chain
        if folder == root or root not in folder.parents:
            break
        folder = folder.parent
    return chain


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NoInputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NoInputError(f"{path}: cannot read it ({exc})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    return data


def _repetition_time(bold: Path, root: Path, override: float | None) -> tuple[float, Path | None]:
    """``(t_r, sidecar)``: ``--t-r`` wins; else the nearest sidecar's ``RepetitionTime``."""
    own = bold.with_name(bold.name.split(".", 1)[0] + ".json")
    if override is not None:
        return override, own if own.is_file() else None
    # fMRIPrep writes a sidecar beside every BOLD: read it first, walk up only if needed.
    if own.is_file() and "RepetitionTime" in (meta := _read_json(own)):
        return _check_t_r(meta["RepetitionTime"], own), own
    chain = _sidecar_chain(bold, root, inheritance=io_spec()["sidecars"]["bold"]["inheritance"])
    if not chain:
        raise NoInputError(
            f"{bold.name}: no JSON sidecar, so no RepetitionTime (add the sidecar or give --t-r)"
        )
    t_r, source = None, chain[-1]
    for sidecar in chain:  # farthest first: the nearest value wins
        meta = _read_json(sidecar)
        if "RepetitionTime" in meta:
            t_r, source = meta["RepetitionTime"], sidecar
    if t_r is None:
        raise DataError(f"{chain[-1]}: no RepetitionTime (fix the sidecar or give --t-r)")
    return _check_t_r(t_r, source), source


def _check_t_r(t_r: Any, source: Path) -> float:
    if isinstance(t_r, bool) or not isinstance(t_r, (int, float)) or not t_r > 0:
        raise DataError(f"{source}: RepetitionTime must be a positive number of s, got {t_r!r}")
    return float(t_r)


def _header(bold: Path) -> tuple[tuple[int, ...], tuple[tuple[float, ...], ...]]:
    """Shape and affine of a 4D NIfTI, from its header only."""
    import nibabel as nib

    try:
        if bold.stat().st_size == 0:
            raise DataError(f"{bold}: the file is empty (0 bytes)")
        img = nib.load(bold)
    except FileNotFoundError:
        raise NoInputError(f"{bold}: no such file") from None
    except DataError:
        raise
    except Exception as exc:  # nibabel raises many types for a corrupt header
        raise DataError(f"{bold}: cannot read the NIfTI header ({exc})") from None
    shape = tuple(int(n) for n in img.shape)
    if len(shape) != 4:
        raise DataError(f"{bold}: a {len(shape)}D image, expected a 4D BOLD series")
    if shape[3] < 2:
        raise DataError(
            f"{bold}: {shape[3]} volume(s), expected a BOLD series of several volumes"
        )
    affine = tuple(tuple(float(v) for v in row) for row in img.affine)
    return shape, affine


def _check_mask_grid(mask: Path, bold: Path, shape, affine) -> None:
    """Warn when a brain mask is not on its BOLD run's grid (it is then resampled to it)."""
    import nibabel as nib
    import numpy as np

    try:
        img = nib.load(mask)
        mask_shape, mask_affine = tuple(int(n) for n in img.shape[:3]), img.affine
    except FileNotFoundError:
        raise NoInputError(f"{mask}: no such file") from None
    except Exception as exc:  # nibabel raises many types for a corrupt header
        raise DataError(f"{mask}: cannot read the NIfTI header ({exc})") from None
    if mask_shape != tuple(shape[:3]):
        how = f"shape {'x'.join(map(str, mask_shape))} vs {'x'.join(map(str, shape[:3]))}"
    elif not np.allclose(mask_affine, affine, atol=1e-4):
        how = "same shape, another affine"
    else:
        return
    logger.warning(
        "%s: not on the grid of %s (%s); it is resampled to the BOLD grid (nearest neighbour)",
        mask.name,
        bold.name,
        how,
    )


# --------------------------------------------------------------------------------------------
# collect_runs
# --------------------------------------------------------------------------------------------
def collect_runs(
    settings: Settings,
    *,
    maps_space: str | None = None,
    read_headers: bool = True,
    strict: bool = False,
) -> list[RunInputs]:
    """Select the preprocessed BOLD runs and pair each with its mask, confounds and sidecars.

    Parameters
    ----------
    settings : Settings
        Selection (``--participant-label``, ``--session-label``, ``--task-id``, ``--space``,
        ``--bids-filter-file``, ``--bids-database-dir``), ``--t-r`` and the work dir.
    maps_space : str, optional
        Space of the maps; the BOLD space when ``--space`` is not given (default
        :data:`DEFAULT_SPACE`). A ``space`` in the ``bold`` filter wins over it.
    read_headers : bool
        Read each BOLD header for ``n_volumes``, ``shape`` and ``affine`` (default). False leaves
        them None (for trees of placeholder images).
    strict : bool
        Raise on the first run with a problem instead of returning it.

    Returns
    -------
    list of RunInputs
        Sorted by BOLD path (numbers in natural order); runs with a :attr:`~RunInputs.problem`
        included unless ``strict``.

    Raises
    ------
    UsageError
        Unknown ``--participant-label`` (all listed), or filters that select several BOLD files
        for one run.
    NoMatchingRunsError
        No BOLD run matched; the message lists the filters used and what the dataset holds.
    DataError, NoInputError
        With ``strict=True``, the first run's problem.
    """
    _check_participants(settings)
    layout = open_layout(settings)
    query = _bold_query(settings, maps_space)
    user = settings.selection.bids_filters
    bolds = [
        (Path(f.path), _labels(f.get_entities()))
        for f in _query(layout, "bold", user.get("bold", {}), extra=query)
    ]
    bolds = _one_file_per_run(bolds)
    if not bolds:
        raise NoMatchingRunsError(_no_match_message(layout, settings, query))
    _check_unique_outputs(bolds)
    subjects = sorted({ents["subject"] for _, ents in bolds})
    masks = _companions(layout, "mask", bolds, user.get("mask", {}), subjects)
    confounds = _companions(layout, "confounds", bolds, user.get("confounds", {}), subjects)
    root = Path(layout.root)
    runs = [
        _make_run(
            bold,
            ents,
            mask=masks[bold],
            confounds=confounds[bold],
            root=root,
            t_r=settings.denoise.t_r,
            read_headers=read_headers,
        )
        for bold, ents in sorted(bolds, key=lambda item: _natural_key(str(item[0])))
    ]
    _warn_empty_participants(settings, runs)
    if strict:
        for run in runs:
            run.raise_for_problem()
    return runs


def _check_participants(settings: Settings) -> None:
    labels = settings.selection.participant_labels
    root = settings.fmriprep_dir
    unknown = [label for label in labels if not (root / f"sub-{label}").is_dir()]
    if unknown:
        raise UsageError(
            f"--participant-label: no sub-<label> folder in {root} for {', '.join(unknown)}"
        )


def _bold_query(settings: Settings, maps_space: str | None) -> dict[str, Any]:
    """The command-line selection, as pybids entities (a bold filter's space wins over the
    maps' space, never over ``--space``)."""
    selection = settings.selection
    query: dict[str, Any] = {}
    user_space = "space" in selection.bids_filters.get("bold", {})
    if selection.space is not None:
        query["space"] = selection.space
        if maps_space is not None and maps_space != selection.space:
            # Allowed (e.g. MNI152NLin6Asym maps on MNI152NLin2009cAsym data), but the maps are
            # only resampled to the BOLD grid, never transformed between templates.
            logger.warning(
                "--space %s differs from the maps' space %s: the maps are resampled, not "
                "transformed between templates",
                selection.space,
                maps_space,
            )
    elif not user_space:
        query["space"] = maps_space or DEFAULT_SPACE
    for entity, values in (
        ("subject", selection.participant_labels),
        ("session", selection.session_labels),
        ("task", selection.task_ids),
    ):
        if values:
            query[entity] = list(values)
    return query


def _one_file_per_run(bolds: list[tuple[Path, dict[str, str]]]) -> list:
    """Keep one file when a run exists as both ``.nii.gz`` and ``.nii`` (spec preference)."""
    preference = io_spec()["queries"]["bold"].get("preference", {})
    groups: dict[tuple, list] = defaultdict(list)
    for bold, ents in bolds:
        groups[_match_key(ents, ["extension"])].append((bold, ents))
    kept = []
    for candidates in groups.values():
        chosen = _pick(candidates, preference)
        kept.extend([chosen] if chosen is not None else candidates)
    return kept


def _check_unique_outputs(bolds: list[tuple[Path, dict[str, str]]]) -> None:
    """Two BOLD files with the same run entities would write the same outputs."""
    groups: dict[tuple, list[Path]] = defaultdict(list)
    for bold, ents in bolds:
        groups[tuple((k, ents[k]) for k in RUN_ENTITIES if k in ents)].append(bold)
    clashes = [sorted(paths) for paths in groups.values() if len(paths) > 1]
    if clashes:
        shown = "; ".join(" and ".join(p.name for p in paths) for paths in clashes[:3])
        raise UsageError(
            f"several BOLD files for one run ({shown}): narrow the 'bold' query of "
            "--bids-filter-file (e.g. by desc or res)"
        )


def _make_run(
    bold: Path,
    ents: dict[str, str],
    *,
    mask: Path | str | None,
    confounds: Path | str | None,
    root: Path,
    t_r: float | None,
    read_headers: bool,
) -> RunInputs:
    entities = FrozenMap((k, ents[k]) for k in RUN_ENTITIES if k in ents)
    key = "_".join(f"{_PREFIXES[k]}-{v}" for k, v in entities.items())
    problems: list[tuple[str, str]] = []
    if isinstance(mask, str):
        problems.append((_INVALID, f"{bold.name}: {mask}"))
        mask = None
    confounds_json = None
    if isinstance(confounds, str):
        problems.append((_INVALID, f"{bold.name}: {confounds}"))
        confounds = None
    elif confounds is None:
        problems.append(
            (
                _MISSING,
                f"{bold.name}: no confounds table (desc-confounds_timeseries.tsv) for this run",
            )
        )
    else:
        sidecars = _sidecar_chain(confounds, root, inheritance=False)
        confounds_json = sidecars[-1] if sidecars else None
    run_t_r, bold_json = None, None
    try:
        run_t_r, bold_json = _repetition_time(bold, root, t_r)
    except (DataError, NoInputError) as exc:
        problems.append((_kind(exc), str(exc)))
    shape = affine = None
    if read_headers:
        try:
            shape, affine = _header(bold)
        except (DataError, NoInputError) as exc:
            problems.append((_kind(exc), str(exc)))
    if mask is not None and shape is not None:
        try:
            _check_mask_grid(mask, bold, shape, affine)
        except (DataError, NoInputError) as exc:
            problems.append((_kind(exc), str(exc)))
    if mask is None and not problems:
        logger.warning("%s: no brain mask found; the run is processed without one", bold.name)
    kind, problem = problems[0] if problems else (None, None)
    return RunInputs(
        entities=entities,
        bold=bold,
        mask=mask,
        confounds=confounds,
        confounds_json=confounds_json,
        bold_json=bold_json,
        t_r=run_t_r,
        n_volumes=shape[3] if shape else None,
        shape=shape,
        affine=affine,
        key=key,
        problem=problem,
        problem_kind=kind,
    )


def _kind(exc: Exception) -> str:
    return _MISSING if isinstance(exc, NoInputError) else _INVALID


def _warn_empty_participants(settings: Settings, runs: Sequence[RunInputs]) -> None:
    found = {run.subject for run in runs}
    for label in settings.selection.participant_labels:
        if label not in found:
            logger.warning("sub-%s: no BOLD run matched the selection", label)


def _no_match_message(layout, settings: Settings, query: Mapping[str, Any]) -> str:
    """Say which filters were used and what the dataset holds instead."""
    used = [f"{key} {_show(value)}" for key, value in query.items()]
    bold_filter = settings.selection.bids_filters.get("bold", {})
    if bold_filter:
        used.append(f"--bids-filter-file bold {json.dumps(dict(bold_filter), sort_keys=True)}")
    available = _query(layout, "bold", {})
    found = []
    for entity in ("space", "task", "session"):
        values = sorted({str(f.get_entities().get(entity)) for f in available} - {"None"})
        if values:
            found.append(f"{entity} {', '.join(values)}")
    where = settings.fmriprep_dir
    summary = "; ".join(found) if found else "no desc-preproc BOLD series at all"
    hint = ""
    spaces = {str(f.get_entities().get("space")) for f in available}
    if settings.selection.space is None and "space" in query and query["space"] not in spaces:
        # The space came from the maps and no run has it: say how to use the others.
        hint = (
            f" (space {query['space']} is the maps' space; give --space with one of the "
            "dataset's spaces to resample the maps onto those runs)"
        )
    return (
        f"no preprocessed BOLD run in {where} matched ({'; '.join(used) or 'no filters'}); "
        f"the dataset has: {summary}{hint}"
    )


def _show(value: Any) -> str:
    return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
