"""The maps images to split into regions: ``--maps`` files, a BIDS-Atlas dataset or TemplateFlow.

:func:`collect_maps` turns the maps options into :class:`MapsSpec` values: which file, its
template space and resolution, one name per map, and where it came from (for ``Sources`` and
``DatasetLinks``). Only NIfTI headers are read.

Sources, in the order they are tried:

1. ``--maps PATH [PATH ...]`` with ``--maps-label`` (one per file; default derived from the file
   name) and ``--maps-labels-tsv`` (one per file; default a TSV beside the image with the same
   name, or the ``LabelMap`` of its JSON sidecar, else ``map00``, ``map01``, ...).
2. ``-d atlases=PATH --atlas LABEL``: ``tpl-<space>/[...]tpl-<space>_atlas-<LABEL>[...]_probseg
   .nii.gz`` in a BIDS-Atlas dataset, with its ``.tsv``.
3. ``--atlas LABEL`` alone: the same layout in a local TemplateFlow cache (``TEMPLATEFLOW_HOME``,
   default ``~/.cache/templateflow``). Nothing is ever downloaded: a file that TemplateFlow has
   not fetched yet (an empty placeholder) is an error that says so.

``LABEL`` may name the atlas (``DiFuMo``) or the atlas and its ``desc`` glued together
(``DiFuMo64dimensions``) when the atlas has several descriptions.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bids_regionx.config import Settings
from bids_regionx.errors import DataError, NoInputError, UsageError
from bids_regionx.io.queries import DEFAULT_SPACE

__all__ = [
    "MapsSpec",
    "collect_maps",
    "default_map_names",
    "maps_label_from_name",
    "parse_entities",
    "read_map_names",
    "templateflow_home",
]

logger = logging.getLogger("bids_regionx.io")

_NIFTI_EXTENSIONS = (".nii.gz", ".nii")
_ENTITY_RE = re.compile(r"(?:^|_)([a-zA-Z]+)-([a-zA-Z0-9]+)(?=_|\.|$)")
#: How many folders up from a ``--maps`` file to look for the dataset it belongs to.
_DATASET_SEARCH_DEPTH = 3


@dataclass(frozen=True)
class MapsSpec:
    """One maps image and what is known about it.

    Attributes
    ----------
    label : str
        The ``atlas-<label>`` of every output from these maps (letters and digits, unique).
    path : Path
        The 3D or 4D NIfTI image (a 3D image is one map).
    space : str
        Template space (``tpl-``/``space-`` in the file name, else ``--space``, else
        ``MNI152NLin2009cAsym``).
    res : str or None
        ``res-`` label of the file name, if any.
    map_names : tuple of str
        One name per map, in volume order.
    n_maps : int
        Number of maps (volumes).
    source : {"maps", "atlases", "templateflow"}
        Which option the maps came from (``--maps``, ``-d atlases``, TemplateFlow).
    labels_file : Path or None
        The TSV (or JSON) the names were read from; None for the default names.
    dataset_name : str
        Name of the dataset holding the image, as used in BIDS URIs and ``DatasetLinks``
        (``maps``, ``maps2``, ... for ``--maps`` files; ``atlases``; ``templateflow``).
    dataset_root : Path
        Root of that dataset (for ``--maps`` files outside a dataset: the file's folder).
    description_file : Path or None
        The BIDS-Atlas ``atlas-<label>_description.json`` of the source dataset, if any.
    """

    label: str
    path: Path
    space: str
    res: str | None
    map_names: tuple[str, ...]
    n_maps: int
    source: str
    labels_file: Path | None = None
    dataset_name: str = "maps"
    dataset_root: Path | None = None
    description_file: Path | None = None

    @property
    def uri(self) -> str:
        """The image as a BIDS URI (``bids:<dataset_name>:<path in the dataset>``)."""
        root = self.dataset_root or self.path.parent
        return f"bids:{self.dataset_name}:{self.path.relative_to(root).as_posix()}"


def collect_maps(settings: Settings) -> list[MapsSpec]:
    """The maps images of a run, from ``--maps``, ``-d atlases`` or TemplateFlow.

    Parameters
    ----------
    settings : Settings
        ``settings.maps`` (files, labels, labels TSVs, atlas), ``settings.selection.space`` and
        ``settings.selection.datasets["atlases"]``.

    Returns
    -------
    list of MapsSpec
        In the order the files were given.

    Raises
    ------
    NoInputError
        A file is missing, or the atlas is not in the dataset/cache.
    DataError
        A file is not a 3D/4D NIfTI, is a ``dseg``, or its names table does not fit it.
    UsageError
        ``--atlas`` is ambiguous (several spaces, descriptions or cohorts).
    """
    maps = settings.maps
    space = settings.selection.space
    if maps.files:
        return _from_files(maps.files, maps.labels, maps.labels_tsv, space=space)
    if maps.atlas is None:
        return []
    atlases = settings.selection.datasets.get("atlases")
    if atlases is not None:
        return [_from_atlas_tree(atlases, maps.atlas, space=space, source="atlases")]
    home = templateflow_home()
    if home is None or not home.is_dir():
        raise NoInputError(
            f"--atlas {maps.atlas}: no -d atlases=PATH and no TemplateFlow cache "
            f"({home or 'TEMPLATEFLOW_HOME is not set'}); give a BIDS-Atlas dataset or --maps"
        )
    return [_from_atlas_tree(home, maps.atlas, space=space, source="templateflow")]


def templateflow_home() -> Path | None:
    """The local TemplateFlow cache: ``$TEMPLATEFLOW_HOME``, else ``~/.cache/templateflow``."""
    value = os.environ.get("TEMPLATEFLOW_HOME")
    if value:
        return Path(value).expanduser()
    try:
        return Path.home() / ".cache" / "templateflow"
    except RuntimeError:  # no home directory (arbitrary UID in a container)
        return None


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------
def parse_entities(name: str) -> dict[str, str]:
    """BIDS key-value pairs of a file name (``tpl-X_res-2_atlas-Y_probseg.nii.gz``).

    Returns
    -------
    dict of str to str
        Keys as written (``tpl``, ``space``, ``res``, ``atlas``, ``desc``, ...).
    """
    stem = _strip_extension(name)
    return {key: value for key, value in _ENTITY_RE.findall(stem)}


def maps_label_from_name(name: str) -> str:
    """An ``atlas-`` label for a maps file: its ``atlas-`` entity, else its name in CamelCase.

    Examples
    --------
    >>> maps_label_from_name("tpl-MNI152NLin2009cAsym_atlas-Smith09_probseg.nii.gz")
    'Smith09'
    >>> maps_label_from_name("canica_resting-state.nii.gz")
    'CanicaRestingState'
    """
    atlas = parse_entities(name).get("atlas")
    if atlas:
        return atlas
    parts = re.split(r"[^A-Za-z0-9]+", _strip_extension(name))
    label = "".join(part[:1].upper() + part[1:] for part in parts if part)
    return label or "maps"


def default_map_names(n_maps: int) -> tuple[str, ...]:
    """``map00``, ``map01``, ... (at least two digits, more when needed)."""
    width = max(2, len(str(n_maps - 1)))
    return tuple(f"map{k:0{width}d}" for k in range(n_maps))


def read_map_names(path: Path, n_maps: int, *, image: Path) -> tuple[str, ...]:
    """Names of the maps from a BIDS look-up TSV (``index``, ``name``) or a JSON ``LabelMap``.

    Rows are put in ``index`` order when that column is present (volume ``k`` is the ``k``-th
    smallest index, whether indices start at 0 or 1).

    Parameters
    ----------
    path : Path
        ``.tsv`` with a ``name`` column (and optionally ``index``), or ``.json`` with
        ``LabelMap``.
    n_maps : int
        Number of maps of ``image``; the table must have as many rows.
    image : Path
        The maps image (for messages).

    Returns
    -------
    tuple of str

    Raises
    ------
    NoInputError
        The file is missing or unreadable.
    DataError
        No ``name`` column, non-integer or repeated indices, empty or repeated names, or a row
        count other than ``n_maps``.
    """
    names = _names_from_json(path) if path.suffix == ".json" else _names_from_tsv(path)
    if len(names) != n_maps:
        raise DataError(
            f"{path}: {len(names)} names for {n_maps} maps in {image.name} "
            "(give one row per map, in volume order)"
        )
    bad = [name for name in names if not name.strip() or "\t" in name or "\n" in name]
    if bad:
        raise DataError(f"{path}: map names must be non-empty single-line text, got {bad[0]!r}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DataError(f"{path}: map names must be unique ({', '.join(repeated)} repeated)")
    return tuple(names)


def _names_from_tsv(path: Path) -> list[str]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
            columns = rows[0].keys() if rows else []
    except FileNotFoundError:
        raise NoInputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise NoInputError(f"{path}: cannot read it ({exc})") from None
    if not rows or "name" not in columns:
        raise DataError(
            f"{path}: expected a tab-separated table with a 'name' column "
            f"(and 'index'), got columns {', '.join(columns) or 'none'}"
        )
    if "index" in columns:
        try:
            indices = [int(row["index"]) for row in rows]
        except (TypeError, ValueError):
            raise DataError(f"{path}: the 'index' column must hold integers") from None
        if len(set(indices)) != len(indices):
            raise DataError(f"{path}: repeated values in the 'index' column")
        rows = [
            row for _, row in sorted(zip(indices, rows, strict=True), key=lambda pair: pair[0])
        ]
    return [(row["name"] or "").strip() for row in rows]


def _names_from_json(path: Path) -> list[str]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NoInputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read it as JSON ({exc})") from None
    names = meta.get("LabelMap") if isinstance(meta, dict) else None
    if not isinstance(names, list):
        raise DataError(f"{path}: no LabelMap list")
    return [str(name).strip() for name in names]


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------
def _strip_extension(name: str) -> str:
    for ext in (*_NIFTI_EXTENSIONS, ".tsv", ".json"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name.split(".", 1)[0]


def _count_maps(path: Path, *, what: str, hint: str = "") -> int:
    """Number of maps of a 3D (one map) or 4D NIfTI, from its header."""
    import nibabel as nib

    if not path.name.endswith(_NIFTI_EXTENSIONS):
        raise DataError(f"{what} {path}: not a NIfTI file (expected .nii or .nii.gz)")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise NoInputError(f"{what} {path}: no such file") from None
    except OSError as exc:
        raise NoInputError(f"{what} {path}: cannot read it ({exc})") from None
    if size == 0:
        raise DataError(f"{what} {path}: the file is empty (0 bytes){hint}")
    try:
        shape = nib.load(path).shape
    except Exception as exc:  # nibabel raises many types for a corrupt header
        raise DataError(f"{what} {path}: cannot read it as NIfTI ({exc})") from None
    if len(shape) == 3:
        return 1
    if len(shape) != 4:
        raise DataError(f"{what} {path}: a {len(shape)}D image, expected 3D (one map) or 4D")
    if shape[3] < 1:
        raise DataError(f"{what} {path}: the 4D image has no volumes")
    return int(shape[3])


def _map_names(
    image: Path, n_maps: int, labels_file: Path | None
) -> tuple[tuple[str, ...], Path | None]:
    if labels_file is None:
        return default_map_names(n_maps), None
    return read_map_names(labels_file, n_maps, image=image), labels_file


def _beside(image: Path) -> Path | None:
    """A names table next to the image: same name as ``.tsv``, else a JSON with LabelMap."""
    stem = _strip_extension(image.name)
    tsv = image.with_name(f"{stem}.tsv")
    if tsv.is_file():
        return tsv
    sidecar = image.with_name(f"{stem}.json")
    if sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        if isinstance(meta, dict) and "LabelMap" in meta:
            return sidecar
    return None


# --------------------------------------------------------------------------------------------
# --maps files
# --------------------------------------------------------------------------------------------
def _from_files(
    files: Sequence[Path],
    labels: Sequence[str],
    labels_tsv: Sequence[Path],
    *,
    space: str | None,
) -> list[MapsSpec]:
    given = list(labels) if labels else _unique([maps_label_from_name(p.name) for p in files])
    roots: dict[Path, str] = {}
    specs = []
    for i, path in enumerate(files):
        n_maps = _count_maps(path, what="--maps")
        table = labels_tsv[i] if labels_tsv else _beside(path)
        names, table = _map_names(path, n_maps, table)
        entities = parse_entities(path.name)
        root = _dataset_root(path)
        name = roots.setdefault(root, "maps" if not roots else f"maps{len(roots) + 1}")
        description = root / f"atlas-{entities.get('atlas')}_description.json"
        specs.append(
            MapsSpec(
                label=given[i],
                path=path,
                space=entities.get("tpl") or entities.get("space") or space or DEFAULT_SPACE,
                res=entities.get("res"),
                map_names=names,
                n_maps=n_maps,
                source="maps",
                labels_file=table,
                dataset_name=name,
                dataset_root=root,
                description_file=description
                if "atlas" in entities and description.is_file()
                else None,
            )
        )
    return specs


def _unique(labels: list[str]) -> list[str]:
    """Make derived labels unique: ``maps``, ``maps2``, ``maps3``..."""
    seen: set[str] = set()
    out = []
    for label in labels:
        candidate, k = label, 1
        while candidate in seen:
            k += 1
            candidate = f"{label}{k}"
        seen.add(candidate)
        out.append(candidate)
    return out


def _dataset_root(path: Path) -> Path:
    """The dataset holding ``path`` (nearest ``dataset_description.json``), else its folder."""
    folder = path.parent
    for candidate in [folder, *folder.parents][:_DATASET_SEARCH_DEPTH]:
        if (candidate / "dataset_description.json").is_file():
            return candidate
    return folder


# --------------------------------------------------------------------------------------------
# BIDS-Atlas datasets and TemplateFlow
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Candidate:
    path: Path
    entities: dict
    suffix: str

    @property
    def tpl(self) -> str:
        return self.entities.get("tpl", "")


def _atlas_files(root: Path, label: str) -> list[_Candidate]:
    """Images under ``root/tpl-*/`` whose ``atlas`` (or ``atlas`` + ``desc``) is ``label``."""
    found = []
    for path in sorted(root.glob("tpl-*/**/*atlas-*")):
        if not path.name.endswith(_NIFTI_EXTENSIONS):
            continue
        entities = parse_entities(path.name)
        atlas = entities.get("atlas", "")
        if label not in (atlas, atlas + entities.get("desc", "")):
            continue
        suffix = _strip_extension(path.name).rsplit("_", 1)[-1]
        found.append(_Candidate(path, entities, suffix))
    return found


def _from_atlas_tree(root: Path, label: str, *, space: str | None, source: str) -> MapsSpec:
    what = "-d atlases" if source == "atlases" else "TemplateFlow"
    candidates = _atlas_files(root, label)
    probseg = [c for c in candidates if c.suffix == "probseg"]
    if not probseg:
        if candidates:
            kinds = sorted({c.suffix for c in candidates})
            raise DataError(
                f"--atlas {label}: {candidates[0].path} is a {'/'.join(kinds)} image "
                "(discrete labels), not maps; bids_regionx needs a probseg (one map per volume)"
            )
        available = sorted(
            {parse_entities(p.name).get("atlas", "") for p in root.glob("tpl-*/**/*atlas-*")}
            - {""}
        )
        raise NoInputError(
            f"--atlas {label}: no tpl-*/..._atlas-{label}_..._probseg image in {what} {root} "
            f"(atlases found: {', '.join(available) or 'none'})"
        )
    chosen = _choose(probseg, label, space=space)
    hint = (
        "; TemplateFlow has not downloaded it (fetch it on a machine with network access)"
        if source == "templateflow"
        else ""
    )
    n_maps = _count_maps(chosen.path, what=f"--atlas {label}", hint=hint)
    table = _atlas_table(root, chosen)
    names, table = _map_names(chosen.path, n_maps, table)
    description = root / f"atlas-{chosen.entities.get('atlas')}_description.json"
    return MapsSpec(
        label=label,
        path=chosen.path,
        space=chosen.tpl,
        res=chosen.entities.get("res"),
        map_names=names,
        n_maps=n_maps,
        source=source,
        labels_file=table,
        dataset_name=source,
        dataset_root=root,
        description_file=description if description.is_file() else None,
    )


def _choose(candidates: list[_Candidate], label: str, *, space: str | None) -> _Candidate:
    """One image: the requested (or default) space, one description, then the lowest res."""
    spaces = sorted({c.tpl for c in candidates})
    if space is not None:
        candidates = [c for c in candidates if c.tpl == space]
        if not candidates:
            raise UsageError(
                f"--atlas {label}: not available in --space {space} "
                f"(available: {', '.join(spaces)})"
            )
    elif len(spaces) > 1:
        if DEFAULT_SPACE not in spaces:
            raise UsageError(
                f"--atlas {label}: available in several spaces ({', '.join(spaces)}); "
                "choose one with --space"
            )
        candidates = [c for c in candidates if c.tpl == DEFAULT_SPACE]
    variants = sorted({c.entities.get("desc", "") for c in candidates})
    if len(variants) > 1:
        atlas = candidates[0].entities.get("atlas", label)
        options = ", ".join(f"--atlas {atlas}{desc}" for desc in variants)
        raise UsageError(f"--atlas {label}: several versions; choose one of {options}")
    # Without a res- entity first, then the finest (lowest) res label.
    by_res = sorted(candidates, key=lambda c: (c.entities.get("res") is not None, _res_key(c)))
    best = [c for c in by_res if c.entities.get("res") == by_res[0].entities.get("res")]
    if len(best) > 1:
        files = ", ".join(c.path.name for c in best)
        raise UsageError(f"--atlas {label}: several images match ({files}); use --maps PATH")
    if len(by_res) > 1:
        logger.info("--atlas %s: using %s (%d resolutions)", label, best[0].path.name, len(by_res))
    return best[0]


def _res_key(candidate: _Candidate) -> tuple:
    res = candidate.entities.get("res", "")
    return (int(res), res) if res.isdigit() else (float("inf"), res)


def _atlas_table(root: Path, chosen: _Candidate) -> Path | None:
    """The look-up TSV of an atlas image: beside it, or without its res/den (TemplateFlow)."""
    beside = _beside(chosen.path)
    if beside is not None:
        return beside
    stem = _strip_extension(chosen.path.name)
    generic = re.sub(r"_(res|den)-[a-zA-Z0-9]+", "", stem) + ".tsv"
    for folder in (chosen.path.parent, root / f"tpl-{chosen.tpl}", root):
        if (folder / generic).is_file():
            return folder / generic
    return None
