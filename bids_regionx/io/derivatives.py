"""Writing the BIDS-Derivatives dataset: names, atomic writers, locks, provenance.

Names
    :func:`output_path` formats the frozen patterns of ``bids_regionx/data/path_patterns.json``
    with pybids' ``build_path``, and refuses anything the pattern would silently drop.

Atomic, idempotent writers
    :func:`write_bytes`, :func:`write_text`, :func:`write_json`, :func:`write_tsv` and
    :func:`write_nifti` write a hidden temporary file (``.<name>.<random>.tmp``) in the target
    folder, flush it to disk and rename it over the target (:func:`os.replace`, atomic on POSIX).
    A failure removes the temporary file and leaves any previous file untouched; a file whose
    bytes would not change is not rewritten (its mtime is kept). The bytes depend only on the
    content: JSON with a fixed layout, TSV floats in their shortest round-trip form and ``n/a``
    for missing values, gzip streams with ``mtime=0`` and no file name.

    Inside :func:`staged_writes` the renames wait for the end of the block, so a set of files
    (one run's outputs and their sidecars) appears together or not at all. The writer holds an
    ``flock`` on its temporary file; :func:`remove_stale_temporary_files` removes those left by
    a killed process (nobody holds their lock) and never a live writer's.

Shared files
    Several participant processes may write into one output dir at once. Files that belong to
    no participant -- ``dataset_description.json``, ``.bidsignore``, ``atlases/``, ``logs/`` --
    are written under a per-file lock and only if absent or identical. When they differ, data
    files under ``atlases/`` are an error (:class:`~bids_regionx.errors.CantCreateError`: the
    maps are not the ones this dataset was made from); metadata (JSON, logs) is kept as first
    written and a warning is logged. The writers recognise a bids_regionx output dir by its
    hidden state folder ``.bids_regionx/``, created by :func:`prepare_output_dir`, which also
    holds the lock files (``.bids_regionx/locks/``) and the options the dataset was made with
    (``.bids_regionx/options.json``).

Options guard
    :func:`prepare_output_dir` records :meth:`Settings.output_options` on first use and refuses
    (exit code 73) to write into an output dir made with other options or another release
    series of bids_regionx, naming what differs.
"""

from __future__ import annotations

import contextlib
import filecmp
import functools
import gzip
import json
import logging
import math
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import IO, Any

from bids_regionx.errors import CantCreateError

__all__ = [
    "BIDSIGNORE",
    "BIDS_VERSION",
    "PREPROCESSED",
    "STATE_DIR",
    "bids_uri",
    "check_output_options",
    "container_info",
    "dataset_description",
    "file_lock",
    "json_bytes",
    "output_path",
    "path_patterns",
    "prepare_output_dir",
    "read_recorded_options",
    "remove_stale_temporary_files",
    "source_uri",
    "staged_writes",
    "tsv_bytes",
    "write_atlas_description",
    "write_bidsignore",
    "write_bytes",
    "write_dataset_description",
    "write_json",
    "write_nifti",
    "write_text",
    "write_tsv",
]

logger = logging.getLogger("bids_regionx.io")

#: BIDS version the outputs follow.
BIDS_VERSION = "1.11.1"
CODE_URL = "https://github.com/bids-regionx/bids_regionx"
#: ``DatasetLinks`` name of the fMRIPrep dataset (BIDS URIs ``bids:preprocessed:<path>``).
PREPROCESSED = "preprocessed"
#: Hidden folder of an output dir: recorded options and lock files (never an output).
STATE_DIR = ".bids_regionx"
_OPTIONS_FILE = "options.json"
_LOCK_DIR = "locks"
LOCK_TIMEOUT_S = 600.0
#: What BIDS 1.11 does not define, so that bids-validator passes on the output dataset.
BIDSIGNORE = (
    "# bids_regionx outputs that BIDS 1.11 does not define (see docs/outputs.md)",
    "*_timeseries.*",
    "*_relmat.*",
    "*_design.*",
    "*_outliers.*",
    "*_stat-coverage_bold.*",
    "*.html",
    # Folders without a trailing slash: bids-validator-deno does not match "name/" patterns.
    "/sub-*/figures",
    "/sub-*/log",
    "/logs",
    "/group",
    "# nested BIDS-Atlas dataset (validate it on its own)",
    "/atlases",
)
#: Top-level names that belong to no participant (see "Shared files" above).
_SHARED_FOLDERS = ("atlases", "logs")
_SHARED_ROOT_FILES = ("dataset_description.json", ".bidsignore")
_LABEL_RE = re.compile(r"^[A-Za-z0-9]+$")
_PATTERN_ENTITY_RE = re.compile(r"\{(\w+)(?:<([^>]*)>)?(?:\|[^}]*)?\}")
_GZIP_LEVEL = 6


# --------------------------------------------------------------------------------------------
# Names and URIs
# --------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def path_patterns() -> dict[str, Any]:
    """The frozen output names (``bids_regionx/data/path_patterns.json``; treat as read-only)."""
    text = (resources.files("bids_regionx") / "data" / "path_patterns.json").read_text("utf-8")
    return json.loads(text)


@functools.cache
def _pattern_entities(kind: str) -> dict[str, tuple[str, ...] | None]:
    """Entities of a pattern -> allowed values (None: any label)."""
    pattern = path_patterns()["patterns"][kind]
    return {
        name: tuple(values.split("|")) if values else None
        for name, values in _PATTERN_ENTITY_RE.findall(pattern)
    }


def output_path(output_dir: str | os.PathLike, kind: str, **entities: Any) -> Path:
    """Path of an output, from the frozen pattern of ``kind``.

    Parameters
    ----------
    output_dir : path
        Root of the derivatives dataset.
    kind : str
        A key of ``path_patterns.json`` (``region_timeseries``, ``relmat``, ``atlas_regions``...).
    **entities
        pybids entity names (``subject``, ``space``, ``atlas``, ``stat``, ``suffix``,
        ``extension``...). None and ``""`` mean absent.

    Returns
    -------
    Path
        ``output_dir / <relative path>``.

    Raises
    ------
    ValueError
        Unknown kind; an entity the pattern does not use or a value it does not allow (pybids
        would drop it silently); a value that is not a BIDS label; or a required entity missing.
    """
    patterns = path_patterns()["patterns"]
    if kind not in patterns:
        raise ValueError(
            f"kind: unknown output kind {kind!r} (expected one of {sorted(patterns)})"
        )
    values = {k: str(v) for k, v in entities.items() if v is not None and str(v) != ""}
    allowed = _pattern_entities(kind)
    unused = sorted(set(values) - set(allowed))
    if unused:
        raise ValueError(f"{kind}: the pattern has no {', '.join(unused)} entity")
    for name, value in values.items():
        choices = allowed[name]
        if choices is not None and value not in choices:
            raise ValueError(f"{kind}: {name} must be one of {', '.join(choices)}, got {value!r}")
        if name != "extension" and not _LABEL_RE.match(value):
            raise ValueError(f"{kind}: {name} {value!r} is not a BIDS label (letters and digits)")
    from bids.layout.writing import build_path

    relative = build_path(values, [patterns[kind]])
    if relative is None:
        missing = sorted(set(allowed) - set(values))
        raise ValueError(
            f"{kind}: cannot name the output from {values}; a required entity is missing "
            f"(one of {', '.join(missing)})"
        )
    return Path(output_dir) / relative


def bids_uri(dataset_name: str, path: str | os.PathLike) -> str:
    """A BIDS URI, ``bids:<dataset_name>:<path>``.

    Parameters
    ----------
    dataset_name : str
        A ``DatasetLinks`` key, or ``""`` for the current dataset.
    path : path
        Relative to that dataset's root (POSIX separators in the URI).

    Raises
    ------
    ValueError
        ``path`` is absolute or leaves the dataset (``..``).
    """
    posix = PurePosixPath(Path(path).as_posix())
    if posix.is_absolute() or ".." in posix.parts or str(posix) in ("", "."):
        raise ValueError(f"path {path!s} must be relative to the dataset root, inside it")
    return f"bids:{dataset_name}:{posix}"


def source_uri(
    dataset_root: str | os.PathLike,
    path: str | os.PathLike,
    *,
    dataset_name: str = PREPROCESSED,
) -> str:
    """BIDS URI of an input file, e.g. ``bids:preprocessed:sub-01/func/..._bold.nii.gz``.

    Parameters
    ----------
    dataset_root : path
        Root of the input dataset (the fMRIPrep derivatives by default).
    path : path
        Absolute path of a file inside it.
    dataset_name : str
        Its ``DatasetLinks`` name (default :data:`PREPROCESSED`).

    Raises
    ------
    ValueError
        ``path`` is not inside ``dataset_root``.
    """
    root, target = Path(dataset_root).absolute(), Path(path).absolute()
    try:
        relative = target.relative_to(root)
    except ValueError:
        raise ValueError(f"{target} is not inside the {dataset_name} dataset {root}") from None
    return bids_uri(dataset_name, relative)


# --------------------------------------------------------------------------------------------
# Locks
# --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def file_lock(
    lock_path: str | os.PathLike, *, what: str, timeout: float = LOCK_TIMEOUT_S
) -> Iterator[None]:
    """Hold an inter-process lock (``fcntl``; a lock file when the filesystem has no locks).

    The kernel releases an ``fcntl`` lock when its process dies, so a killed run never leaves a
    stale lock behind.

    Parameters
    ----------
    lock_path : path
        The lock file (its folder is created).
    what : str
        What is protected, for the time-out message.
    timeout : float
        s to wait before giving up.

    Raises
    ------
    CantCreateError
        The lock was not obtained within ``timeout`` or its file cannot be created.
    """
    from filelock import FileLock, SoftFileLock, Timeout

    lock_path = Path(lock_path)
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(lock_path), timeout=timeout)
        try:
            lock.acquire()
        except NotImplementedError:  # filelock < 4 on a filesystem without flock
            lock = SoftFileLock(str(lock_path), timeout=timeout)
            lock.acquire()
    except Timeout:
        raise CantCreateError(
            f"{what}: still locked by another process after {timeout:g} s (lock {lock_path})"
        ) from None
    except OSError as exc:
        raise CantCreateError(f"{what}: cannot create the lock {lock_path} ({exc})") from None
    try:
        yield
    finally:
        lock.release()


def _lock_path(root: Path, relative: PurePosixPath) -> Path:
    return root / STATE_DIR / _LOCK_DIR / (str(relative).replace("/", "__") + ".lock")


# --------------------------------------------------------------------------------------------
# Atomic writers
# --------------------------------------------------------------------------------------------
def _output_root(path: Path) -> Path | None:
    """The bids_regionx output dir holding ``path`` (it has a ``.bids_regionx/`` folder)."""
    for folder in path.parents:
        if (folder / STATE_DIR).is_dir():
            return folder
    return None


def _shared_relpath(path: Path, shared: bool | None) -> tuple[Path, PurePosixPath] | None:
    """``(output_dir, relative path)`` when ``path`` is a shared file, else None."""
    root = _output_root(path)
    if root is None:
        if shared:
            raise ValueError(f"{path}: shared=True but it is in no bids_regionx output dir")
        return None
    relative = PurePosixPath(path.relative_to(root).as_posix())
    if shared is None:
        top = relative.parts[0]
        shared = top in _SHARED_FOLDERS or (len(relative.parts) == 1 and top in _SHARED_ROOT_FILES)
    return (root, relative) if shared else None


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    # mkstemp creates 0600 files; outputs get the usual permissions of the process instead.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _lock_temporary(handle: int) -> bool:
    """Hold an exclusive ``flock`` on a temporary file while it is being written.

    The kernel drops the lock when the writer dies (even on ``kill -9``), which is how
    :func:`remove_stale_temporary_files` tells a live writer's file from a dead one's.

    Returns
    -------
    bool
        False when the file has been removed by such a cleaner between its creation and the
        lock (the caller starts again with a new file).
    """
    try:
        import fcntl

        fcntl.flock(handle, fcntl.LOCK_EX)
    except (ImportError, OSError):  # no flock on this filesystem: nothing is ever cleaned up
        return True
    return os.fstat(handle).st_nlink > 0


def _new_temporary(path: Path) -> tuple[int, Path]:
    """A locked, hidden temporary file beside ``path`` (``.<name>.<random>.tmp``)."""
    for _ in range(5):
        handle, tmp_name = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=".tmp", dir=path.parent
        )
        if _lock_temporary(handle):
            return handle, Path(tmp_name)
        os.close(handle)
    raise OSError(f"{path.parent}: temporary files keep disappearing")


#: Per-thread list of writes waiting for the end of a :func:`staged_writes` block.
_STAGED = threading.local()


@contextlib.contextmanager
def staged_writes() -> Iterator[None]:
    """Put a set of files in place together, or none of them.

    Inside the block every writer fills its temporary file but leaves it aside; when the block
    ends without an error they are all renamed into place, in the order written. An error (or an
    interrupt) inside the block removes every temporary file and leaves the files already in
    place untouched, so the outputs of a run never appear without their sidecars. Nested blocks
    join the outermost one.
    """
    if getattr(_STAGED, "pending", None) is not None:
        yield
        return
    pending: list[tuple[int, Path, Path, Any]] = []
    _STAGED.pending = pending
    try:
        yield
    except BaseException:
        _STAGED.pending = None
        for handle, tmp, _, _ in pending:
            _discard(handle, tmp)
        raise
    _STAGED.pending = None
    try:
        while pending:
            _place(*pending.pop(0))
    finally:
        for handle, tmp, _, _ in pending:
            _discard(handle, tmp)


def _discard(handle: int, tmp: Path) -> None:
    # Unlink first, then close: the lock is held until the name is gone.
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    with contextlib.suppress(OSError):
        os.close(handle)


def _place(handle: int, tmp: Path, path: Path, context) -> None:
    """Move a filled temporary file to ``path`` (under the shared-file lock if needed)."""
    try:
        if context is None:
            _replace_if_changed(tmp, path)
        else:
            root, relative = context
            with file_lock(_lock_path(root, relative), what=f"shared output {relative}"):
                _place_shared(tmp, path, relative)
    except OSError as exc:
        raise CantCreateError(f"{path}: cannot write it ({_reason(exc)})") from None
    finally:
        _discard(handle, tmp)


def _commit(path: str | os.PathLike, fill: Callable[[IO[bytes]], None], *, shared) -> Path:
    """Write through ``fill`` into a temporary file beside ``path``, then move it into place."""
    path = Path(path).absolute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = _new_temporary(path)
    except OSError as exc:
        raise CantCreateError(f"{path}: cannot write it ({_reason(exc)})") from None
    try:
        with open(handle, "wb", closefd=False) as stream:
            fill(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        context = _shared_relpath(path, shared)
    except BaseException as exc:
        _discard(handle, tmp)
        if isinstance(exc, OSError):
            raise CantCreateError(f"{path}: cannot write it ({_reason(exc)})") from None
        raise
    pending = getattr(_STAGED, "pending", None)
    if pending is not None:
        pending.append((handle, tmp, path, context))
    else:
        _place(handle, tmp, path, context)
    return path


def remove_stale_temporary_files(
    output_dir: str | os.PathLike, *, subjects: Sequence[str] = ()
) -> list[Path]:
    """Remove the temporary files of writers that died (``kill -9``, node crash, power cut).

    Only files nobody holds the lock of are removed (see :func:`_lock_temporary`), so this is
    safe while other participants write into the same output dir. Only the shared folders, the
    top level and the folders of ``subjects`` are searched: never every participant's tree.

    Parameters
    ----------
    output_dir : path
    subjects : sequence of str
        Participant labels (without ``sub-``) whose folders to search.

    Returns
    -------
    list of Path
        The files removed.
    """
    try:
        import fcntl
    except ImportError:
        return []
    root = Path(output_dir)
    candidates = list(root.glob(".*.tmp"))
    for folder in (STATE_DIR, *_SHARED_FOLDERS, "group", *(f"sub-{s}" for s in subjects)):
        if (root / folder).is_dir():
            candidates += (root / folder).rglob(".*.tmp")
    removed = []
    for tmp in sorted(set(candidates)):
        try:
            handle = os.open(tmp, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            tmp.unlink()
            removed.append(tmp)
        except OSError:  # a live writer holds it (or the filesystem has no flock)
            pass
        finally:
            os.close(handle)
    if removed:
        logger.info("removed %d temporary file(s) left by an interrupted run", len(removed))
    return removed


def _same(a: Path, b: Path) -> bool:
    return b.is_file() and filecmp.cmp(a, b, shallow=False)


def _replace_if_changed(tmp: Path, path: Path) -> None:
    if not _same(tmp, path):
        os.replace(tmp, path)


def _place_shared(tmp: Path, path: Path, relative: PurePosixPath) -> None:
    """Write a shared file only if it is absent; an existing one must be identical."""
    if not path.exists():
        os.replace(tmp, path)
        return
    if _same(tmp, path):
        return
    if relative.parts[0] == "atlases" and not relative.name.endswith(".json"):
        raise CantCreateError(
            f"{path} exists with other content: this output dir was made from other maps "
            "(same options, different data); use another output_dir"
        )
    logger.warning(
        "%s: kept the existing file (it differs from this run's; shared files are written once)",
        relative,
    )


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def write_bytes(path: str | os.PathLike, data: bytes, *, shared: bool | None = None) -> Path:
    """Write ``data`` atomically; see the module notes.

    Parameters
    ----------
    path : path
        Target file; missing folders are created.
    data : bytes
    shared : bool, optional
        Force (True) or disable (False) the shared-file rule; default: from the path.

    Returns
    -------
    Path
        The absolute path written (or kept).

    Raises
    ------
    CantCreateError
        The file cannot be written, or a shared data file exists with other content.
    """
    return _commit(path, lambda stream: stream.write(data), shared=shared)


def write_text(path: str | os.PathLike, text: str, *, shared: bool | None = None) -> Path:
    """Write UTF-8 text (``\\n`` line ends) atomically; see :func:`write_bytes`."""
    return write_bytes(path, text.encode("utf-8"), shared=shared)


def _jsonable(value: Any) -> Any:
    """Plain JSON data: NaN/inf become null (BIDS JSON has no NaN), numpy and paths unwrapped."""
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return _jsonable(value.tolist())  # numpy arrays and scalars
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_bytes(obj: Any) -> bytes:
    """The bytes :func:`write_json` writes: 2-space indent, keys in the given order, UTF-8."""
    text = json.dumps(_jsonable(obj), indent=2, ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


def write_json(path: str | os.PathLike, obj: Any, *, shared: bool | None = None) -> Path:
    """Write a JSON document atomically; see :func:`write_bytes` and :func:`json_bytes`."""
    return write_bytes(path, json_bytes(obj), shared=shared)


def _format_floats(values) -> list[str]:
    """Shortest round-trip text of each float (float32 kept short), ``n/a`` for NaN."""
    import numpy as np

    if values.dtype == np.float32:
        return ["n/a" if v != v else str(v) for v in values]
    return ["n/a" if v != v else repr(v) for v in values.astype(np.float64).tolist()]


def tsv_bytes(frame, *, index: bool = False) -> bytes:
    """The bytes :func:`write_tsv` writes for a DataFrame.

    Floats are written in their shortest round-trip form (``repr``; float32 columns as float32),
    missing values as ``n/a``, with ``\\n`` line ends: the same frame always gives the same
    bytes, and reading them back gives the same numbers.
    """
    import numpy as np
    import pandas as pd

    columns = {}
    for j in range(frame.shape[1]):
        column = frame.iloc[:, j]
        if column.dtype.kind == "f":
            dtype = np.float32 if column.dtype == np.float32 else np.float64
            column = pd.Series(
                _format_floats(column.to_numpy(dtype=dtype, na_value=np.nan)),
                index=frame.index,
                dtype=object,
            )
        columns[j] = column
    text_frame = pd.DataFrame(columns, index=frame.index)
    text_frame.columns = [str(name) for name in frame.columns]
    text = text_frame.to_csv(sep="\t", index=index, na_rep="n/a", lineterminator="\n")
    return text.encode("utf-8")


def write_tsv(
    path: str | os.PathLike, frame, *, index: bool = False, shared: bool | None = None
) -> Path:
    """Write a DataFrame as a BIDS TSV atomically; see :func:`tsv_bytes` and :func:`write_bytes`.

    Parameters
    ----------
    path : path
    frame : pandas.DataFrame
    index : bool
        Also write the index as the first column (e.g. the ``Node`` column of a relmat).
    shared : bool, optional
    """
    return write_bytes(path, tsv_bytes(frame, index=index), shared=shared)


def write_nifti(path: str | os.PathLike, img, *, shared: bool | None = None) -> Path:
    """Write a NIfTI image atomically; ``.nii.gz`` with a reproducible gzip stream.

    Parameters
    ----------
    path : path
        ``.nii.gz`` (gzip level 6, ``mtime=0``, no file name in the gzip header) or ``.nii``.
    img : nibabel image or path
        Any image nibabel can turn into a single-file NIfTI (streamed, never held twice).
    shared : bool, optional

    Returns
    -------
    Path
    """
    import nibabel as nib

    if isinstance(img, (str, os.PathLike)):
        img = nib.load(img)
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        img = nib.Nifti1Image.from_image(img)
    if not str(path).endswith((".nii", ".nii.gz")):
        raise ValueError(f"{path}: a NIfTI output must end with .nii or .nii.gz")

    def fill(stream: IO[bytes]) -> None:
        if str(path).endswith(".gz"):
            with gzip.GzipFile(
                filename="", mode="wb", fileobj=stream, compresslevel=_GZIP_LEVEL, mtime=0
            ) as compressed:
                img.to_stream(compressed)
        else:
            img.to_stream(stream)

    return _commit(path, fill, shared=shared)


# --------------------------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------------------------
def _version() -> str:
    from bids_regionx import __version__

    return __version__


def _release_series(version: str) -> str:
    """Versions that write the same outputs: ``0.<minor>`` before 1.0, then ``<major>``."""
    match = re.match(r"^(\d+)\.(\d+)", version)
    if match is None:
        return version
    major, minor = match.groups()
    return f"0.{minor}" if major == "0" else major


def _code_url(version: str) -> str:
    release = re.fullmatch(r"\d+\.\d+\.\d+", version) is not None
    return f"{CODE_URL}/archive/{version}.tar.gz" if release else CODE_URL


def container_info() -> dict[str, str] | None:
    """``GeneratedBy.Container`` when running in the bids_regionx image.

    The image sets ``BIDS_REGIONX_CONTAINER_IMAGE`` (e.g. ``bids_regionx:0.1.0``);
    ``BIDS_REGIONX_CONTAINER_TYPE`` overrides the type, which is otherwise ``apptainer`` under
    Apptainer/Singularity and ``docker`` elsewhere.
    """
    image = os.environ.get("BIDS_REGIONX_CONTAINER_IMAGE")
    if not image:
        return None
    kind = os.environ.get("BIDS_REGIONX_CONTAINER_TYPE") or (
        "apptainer"
        if os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER")
        else "docker"
    )
    return {"Type": kind, "Tag": image}


def _read_description(root: Path) -> dict:
    try:
        data = json.loads((root / "dataset_description.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _upstream_generated_by(description: Mapping[str, Any]) -> list[dict]:
    """The input's ``GeneratedBy`` (or the pre-1.4 ``PipelineDescription``)."""
    entries = description.get("GeneratedBy")
    if isinstance(entries, list):
        return [dict(entry) for entry in entries if isinstance(entry, Mapping)]
    legacy = description.get("PipelineDescription")
    return [dict(legacy)] if isinstance(legacy, Mapping) else []


def _source_dataset(root: Path) -> dict[str, str]:
    entry = {"URL": root.absolute().as_uri()}
    doi = _read_description(root).get("DatasetDOI")
    if isinstance(doi, str) and doi:
        entry["DOI"] = doi
    return entry


def dataset_description(settings, maps_specs: Sequence = (), *, version: str | None = None):
    """The ``dataset_description.json`` of the output dataset.

    Parameters
    ----------
    settings : Settings
    maps_specs : sequence of MapsSpec
        Their datasets are linked (``DatasetLinks``) and listed in ``SourceDatasets``.
    version : str, optional
        bids_regionx version (default: the installed one).

    Returns
    -------
    dict
        ``GeneratedBy`` starts with bids_regionx (``Version``, ``CodeURL``,
        ``ConfigurationHash`` = :meth:`Settings.output_hash`, ``Container`` when containerised),
        followed by the fMRIPrep dataset's own entries. ``DatasetLinks`` names the fMRIPrep
        dataset ``preprocessed``, a raw ``bids_dir`` ``raw``, and the maps' datasets.
    """
    version = version or _version()
    fmriprep_dir = settings.fmriprep_dir
    upstream = _read_description(fmriprep_dir)
    ours: dict[str, Any] = {
        "Name": "bids_regionx",
        "Version": version,
        "CodeURL": _code_url(version),
        "ConfigurationHash": settings.output_hash(),
    }
    container = container_info()
    if container:
        ours["Container"] = container
    links = {PREPROCESSED: str(fmriprep_dir)}
    if settings.bids_dir != fmriprep_dir:
        links["raw"] = str(settings.bids_dir)
    for spec in maps_specs:
        links.setdefault(spec.dataset_name, str(spec.dataset_root or spec.path.parent))
    sources = [_source_dataset(Path(path)) for path in dict.fromkeys(links.values())]
    description: dict[str, Any] = {
        "Name": "bids_regionx: region time series and connectomes from 4D maps",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [ours, *_upstream_generated_by(upstream)],
        "SourceDatasets": sources,
        "DatasetLinks": links,
        "HowToAcknowledge": (
            "Cite bids_regionx and the methods text in logs/CITATION.md, which lists every "
            "option used and its references (region extraction: Abraham et al., 2014)."
        ),
    }
    if isinstance(upstream.get("License"), str):
        description["License"] = upstream["License"]
    return description


def write_dataset_description(settings, maps_specs: Sequence = ()) -> Path:
    """Write ``dataset_description.json`` (shared: only if absent or identical)."""
    path = settings.output_dir / "dataset_description.json"
    return write_json(path, dataset_description(settings, maps_specs))


def write_bidsignore(output_dir: str | os.PathLike) -> Path:
    """Write ``.bidsignore`` (:data:`BIDSIGNORE`; shared)."""
    path = Path(output_dir) / ".bidsignore"
    return write_text(path, "\n".join(BIDSIGNORE) + "\n")


#: Keys copied from a source ``atlas-<label>_description.json`` into ours.
_ATLAS_KEYS = (
    "Name",
    "License",
    "Authors",
    "Curators",
    "Funding",
    "ReferencesAndLinks",
    "Species",
    "DerivedFrom",
    "RRID",
)


def write_atlas_description(
    output_dir: str | os.PathLike,
    atlas: str,
    *,
    version: str | None = None,
    maps_spec=None,
) -> Path:
    """Describe the nested BIDS-Atlas dataset ``atlases/`` and one atlas in it.

    Writes ``atlases/dataset_description.json`` and ``atlases/atlas-<atlas>_description.json``
    (``Name`` and ``License`` are required by BIDS; both are taken from the source atlas
    description when the maps came with one).

    Parameters
    ----------
    output_dir : path
    atlas : str
        The maps label.
    version : str, optional
        bids_regionx version (default: the installed one).
    maps_spec : MapsSpec, optional
        Where the maps came from.

    Returns
    -------
    Path
        The ``atlas-<atlas>_description.json`` written.
    """
    version = version or _version()
    output_dir = Path(output_dir)
    write_json(
        output_dir / "atlases" / "dataset_description.json",
        {
            "Name": "bids_regionx atlases: the maps as used and the regions extracted from them",
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "derivative",
            "GeneratedBy": [
                {"Name": "bids_regionx", "Version": version, "CodeURL": _code_url(version)}
            ],
        },
    )
    # BIDS 1.11 defines no look-up table for a probseg (its JSON LabelMap names the volumes);
    # the region table is an addition the nested dataset's validator must skip.
    write_text(
        output_dir / "atlases" / ".bidsignore",
        "# region/map tables: BIDS 1.11 has no probseg look-up table (see LabelMap)\n"
        "*_probseg.tsv\n",
    )
    source: dict[str, Any] = {}
    if maps_spec is not None and maps_spec.description_file is not None:
        source = _read_description_file(maps_spec.description_file)
    described = {key: source[key] for key in _ATLAS_KEYS if key in source}
    described.setdefault("Name", f"{atlas} maps and the regions extracted from them")
    described.setdefault("License", "Unknown: the license of the source maps applies")
    described["Description"] = (
        f"The {atlas} maps as used by bids_regionx (probseg, one map per volume) and the "
        "regions extracted from them (seg-regions: one region per volume, values from the "
        "parent map)."
    )
    described["LevelType"] = "group"
    path = output_path(
        output_dir, "atlas_description", atlas=atlas, suffix="description", extension=".json"
    )
    return write_json(path, described)


def _read_description_file(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


# --------------------------------------------------------------------------------------------
# Options guard
# --------------------------------------------------------------------------------------------
def read_recorded_options(output_dir: str | os.PathLike) -> dict[str, Any] | None:
    """What :func:`prepare_output_dir` recorded in ``.bids_regionx/options.json``, if anything.

    Returns
    -------
    dict or None
        ``Version``, ``OutputHash`` and ``OutputOptions`` (the ``Settings.output_options()`` of
        the run that created the dataset).

    Raises
    ------
    CantCreateError
        The record exists but cannot be read.
    """
    path = Path(output_dir) / STATE_DIR / _OPTIONS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CantCreateError(f"{path}: cannot read the record of options ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("OutputOptions"), dict):
        raise CantCreateError(f"{path}: not a record of bids_regionx options")
    return data


def check_output_options(settings) -> None:
    """Record this run's output options, or check them against those recorded.

    Raises
    ------
    CantCreateError
        The output dir was made with other options (each difference named), by another release
        series of bids_regionx, or holds another pipeline's dataset.
    """
    from bids_regionx.config import diff_output_options

    output_dir = settings.output_dir
    version = _version()
    current = settings.output_options()
    with file_lock(
        output_dir / STATE_DIR / _LOCK_DIR / "options.lock", what=f"output_dir {output_dir}"
    ):
        recorded = read_recorded_options(output_dir)
        if recorded is None:
            _check_foreign(output_dir, settings.output_hash())
            record = {
                "Version": version,
                "OutputHash": settings.output_hash(),
                "OutputOptions": current,
            }
            write_json(output_dir / STATE_DIR / _OPTIONS_FILE, record, shared=False)
            return
        differences = diff_output_options(recorded["OutputOptions"], current)
        old_version = str(recorded.get("Version", ""))
        if _release_series(old_version) != _release_series(version):
            differences.append(f"bids_regionx version: {old_version} vs {version}")
    if differences:
        raise CantCreateError(
            f"output_dir {output_dir} was made with other options ({'; '.join(differences)}); "
            "use another output_dir, or the same options"
        )


def _check_foreign(output_dir: Path, output_hash: str) -> None:
    """An existing description without our record: refuse another pipeline's or hash's data."""
    description = _read_description(output_dir)
    if not description:
        return
    generated = _upstream_generated_by(description)
    name = generated[0].get("Name") if generated else None
    if name != "bids_regionx":
        raise CantCreateError(
            f"output_dir {output_dir} holds another dataset (made by {name or 'unknown'}); "
            "give an empty or bids_regionx output dir"
        )
    recorded_hash = generated[0].get("ConfigurationHash")
    if recorded_hash not in (None, output_hash):
        raise CantCreateError(
            f"output_dir {output_dir} was made with other options (ConfigurationHash "
            f"{recorded_hash} vs {output_hash}; its record {STATE_DIR}/{_OPTIONS_FILE} is "
            "missing, so the differences cannot be named)"
        )


def prepare_output_dir(settings, maps_specs: Sequence | None = None) -> Path:
    """Make the output dir ready for a participant run.

    Creates it and its hidden state folder, applies the options guard
    (:func:`check_output_options`), then writes ``dataset_description.json`` and
    ``.bidsignore`` (shared files). Safe to call from many processes at once.

    Parameters
    ----------
    settings : Settings
    maps_specs : sequence of MapsSpec, optional
        Default: :func:`bids_regionx.io.maps.collect_maps` of the settings.

    Returns
    -------
    Path
        The output dir.

    Raises
    ------
    CantCreateError
        The folder cannot be created or the options guard refuses it.
    """
    output_dir = settings.output_dir
    try:
        (output_dir / STATE_DIR / _LOCK_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CantCreateError(
            f"output_dir {output_dir}: cannot create it ({_reason(exc)})"
        ) from None
    check_output_options(settings)
    if maps_specs is None:
        from bids_regionx.io.maps import collect_maps

        maps_specs = collect_maps(settings)
    write_dataset_description(settings, maps_specs)
    write_bidsignore(output_dir)
    return output_dir
