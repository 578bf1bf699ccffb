"""Run settings: one frozen, validated value built from the command line or a TOML file.

A :class:`Settings` holds every option of a run in frozen sections (``selection``, ``maps``,
``regions``, ``denoise``, ``connectivity``, ``execution``, ``reports``). Constructing one
normalises the values (paths become absolute :class:`pathlib.Path`, sequences become tuples,
mappings become :class:`FrozenMap`) and checks them, so an instance is always valid: a bad value
raises :class:`InvalidSettingsError` (exit code 64) listing *every* problem found.

Each field carries, in its dataclass metadata, the command-line option that sets it (used in
error messages), the function that normalises it, and - for the options that change what is
written - how it enters :meth:`Settings.output_options` and :meth:`Settings.output_hash`.

There is no module-level mutable state and no global configuration object: the CLI builds a
``Settings`` and passes it down.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from bids_regionx.errors import UnknownAnalysisLevelError, UsageError

__all__ = [
    "ANALYSIS_LEVELS",
    "CONNECTIVITY_MEASURES",
    "COV_ESTIMATORS",
    "DTYPES",
    "EXTRACTORS",
    "FILTER_QUERIES",
    "GROUP_UNITS",
    "PLUGINS",
    "QUERY_ANY",
    "QUERY_NONE",
    "RESAMPLING_TARGETS",
    "SECTIONS",
    "STANDARDIZE_CHOICES",
    "THRESHOLDING_STRATEGIES",
    "ConnectivitySettings",
    "DenoiseSettings",
    "ExecutionSettings",
    "FrozenMap",
    "InvalidSettingsError",
    "MapsSettings",
    "RegionSettings",
    "ReportSettings",
    "SelectionSettings",
    "Settings",
    "builtin_denoise_strategies",
    "coerce_mapping",
    "diff_output_options",
    "read_bids_filter_file",
]

ANALYSIS_LEVELS = ("participant", "group")
THRESHOLDING_STRATEGIES = ("ratio_n_voxels", "img_value", "percentile")
EXTRACTORS = ("local_regions", "connected_components")
#: ``"none"`` stands for nilearn's ``resampling_target=None`` (TOML has no null).
RESAMPLING_TARGETS = ("data", "mask", "maps", "none")
STANDARDIZE_CHOICES = ("zscore_sample", "psc", "none")
DTYPES = ("auto", "float32", "float64")
#: Canonical measure names, spelled as nilearn's ``ConnectivityMeasure(kind=...)``.
CONNECTIVITY_MEASURES = (
    "correlation",
    "partial correlation",
    "covariance",
    "precision",
    "tangent",
)
#: Measures that need every subject at once, so only the group level computes them.
GROUP_ONLY_MEASURES = ("tangent",)
COV_ESTIMATORS = ("empirical", "ledoit_wolf")
#: What each group statistic counts once: every used run, or every subject (runs averaged first).
GROUP_UNITS = ("run", "subject")
PLUGINS = ("Linear", "MultiProc", "SLURM", "SLURMGraph")
#: The pybids queries a ``--bids-filter-file`` may refine.
FILTER_QUERIES = ("bold", "mask", "confounds")
#: What JSON ``null`` and ``"*"`` in a BIDS filter file become (pybids ``Query.NONE``/``ANY``).
QUERY_NONE = "none"
QUERY_ANY = "any"
#: Length, in hex digits, of :meth:`Settings.output_hash`.
OUTPUT_HASH_LENGTH = 12

# Keys of ``--clean-args`` that would silently override a dedicated option (or the data).
_CLEAN_ARGS_RESERVED = MappingProxyType(
    {
        "signals": None,
        "runs": None,
        "confounds": None,
        "sample_mask": None,
        "detrend": "--detrend",
        "standardize": "--standardize",
        "standardize_confounds": "--standardize-confounds",
        "low_pass": "--low-pass",
        "high_pass": "--high-pass",
        "t_r": "--t-r",
    }
)
_LABEL_RE = re.compile(r"^[A-Za-z0-9]+$")
_DATASET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*$")
_MEMORY_UNITS_GB = MappingProxyType(
    {
        "": 1.0,
        "b": 1e-9,
        "k": 1e-6,
        "kb": 1e-6,
        "m": 1e-3,
        "mb": 1e-3,
        "g": 1.0,
        "gb": 1.0,
        "t": 1e3,
        "tb": 1e3,
        "kib": 1024 / 1e9,
        "mib": 1024**2 / 1e9,
        "gib": 1024**3 / 1e9,
        "tib": 1024**4 / 1e9,
    }
)


class InvalidSettingsError(UsageError, ValueError):
    """One or more option values are invalid (exit code 64).

    Also a :class:`ValueError`, so Python callers can catch it as one.

    Parameters
    ----------
    problems : iterable of str
        One message per problem, each naming the option.
    """

    def __init__(self, problems: Iterable[str]):
        self.problems = tuple(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} problems: " + "; ".join(self.problems)
        super().__init__(message)


class FrozenMap(Mapping):
    """An immutable, hashable mapping (keys keep their insertion order).

    Used for the nested options (BIDS filters, ``-d`` datasets, ``--clean-args``) so that
    :class:`Settings` stays frozen and hashable. Equality ignores key order, as for ``dict``.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping | Iterable[tuple[Any, Any]] = ()):
        object.__setattr__(self, "_data", dict(data))

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("FrozenMap is immutable")

    def __reduce__(self) -> tuple[type, tuple[dict]]:
        # Slots plus a blocking __setattr__ defeat pickle's default protocol (nipype pickles).
        return (FrozenMap, (self._data,))

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


def _freeze(value: Any) -> Any:
    """Turn nested JSON/TOML-like data into hashable tuples and FrozenMaps."""
    if isinstance(value, Mapping):
        return FrozenMap((key, _freeze(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(item) for item in value)
    return value


def _plain(value: Any) -> Any:
    """Inverse of :func:`_freeze`, with paths as strings: data for JSON and TOML writers."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _drop_none(value: Any) -> Any:
    # TOML has no null: an absent key means "the default", which is None for every optional field.
    if isinstance(value, dict):
        return {key: _drop_none(item) for key, item in value.items() if item is not None}
    return value


def _fmt(number: float) -> str:
    return f"{number:g}"


# --- Normalisers -------------------------------------------------------------------------------
# Each takes (value, base_dir) and returns the normalised value or raises ValueError with a
# message that does not repeat the option name (the caller prefixes it). They are idempotent, so
# a value can be normalised by a loader and again by the dataclass.

Coercer = Callable[[Any, Path], Any]


def _optional(coerce: Coercer) -> Coercer:
    def optional(value: Any, base_dir: Path) -> Any:
        return None if value is None else coerce(value, base_dir)

    return optional


def _path(value: Any, base_dir: Path) -> Path:
    if not isinstance(value, (str, os.PathLike)):
        raise ValueError(f"expected a path, got {value!r}")
    text = os.fspath(value)
    if not text:
        raise ValueError("expected a path, got an empty string")
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    return path.resolve()


def _as_items(value: Any) -> tuple[Any, ...]:
    # A lone string is one item, not a sequence of characters.
    if isinstance(value, (str, os.PathLike)):
        return (value,)
    if isinstance(value, Iterable) and not isinstance(value, Mapping):
        return tuple(value)
    raise ValueError(f"expected a list, got {value!r}")


def _paths(value: Any, base_dir: Path) -> tuple[Path, ...]:
    return tuple(_path(item, base_dir) for item in _as_items(value))


def _bool(value: Any, base_dir: Path) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _number(
    *,
    integer: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
) -> Coercer:
    kind = "an integer" if integer else "a number"

    def number(value: Any, base_dir: Path) -> float | int:
        if isinstance(value, str):
            try:
                value = int(value) if integer else float(value)
            except ValueError:
                raise ValueError(f"expected {kind}, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"expected {kind}, got {value!r}")
        if integer:
            if not isinstance(value, numbers.Integral):
                if not float(value).is_integer():
                    raise ValueError(f"expected {kind}, got {value!r}")
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"expected a finite number, got {value}")
        if minimum is not None:
            if exclusive_minimum and value <= minimum:
                raise ValueError(f"must be > {_fmt(minimum)}, got {_fmt(value)}")
            if value < minimum:
                raise ValueError(f"must be >= {_fmt(minimum)}, got {_fmt(value)}")
        if maximum is not None and value > maximum:
            raise ValueError(
                f"must be between {_fmt(minimum or 0)} and {_fmt(maximum)}, got {_fmt(value)}"
            )
        return value

    return number


def _choice(choices: tuple[str, ...]) -> Coercer:
    def choice(value: Any, base_dir: Path) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    return choice


def _label(prefix: str | None) -> Coercer:
    def label(value: Any, base_dir: Path) -> str:
        if not isinstance(value, str):
            raise ValueError(f"expected a label, got {value!r}")
        if prefix and value.startswith(f"{prefix}-"):
            value = value[len(prefix) + 1 :]
        if not _LABEL_RE.match(value):
            raise ValueError(f"{value!r} is not a BIDS label (letters and digits only)")
        return value

    return label


def _labels(prefix: str | None, *, unique: bool = True) -> Coercer:
    coerce_one = _label(prefix)

    def labels(value: Any, base_dir: Path) -> tuple[str, ...]:
        items = tuple(coerce_one(item, base_dir) for item in _as_items(value))
        # Repeating a selection label is harmless; maps labels pair up with files, so keep them.
        return tuple(dict.fromkeys(items)) if unique else items

    return labels


def _json_object(value: Any, base_dir: Path) -> FrozenMap:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON ({exc})") from None
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a JSON object, got {value!r}")
    return _freeze(value)


def _clean_args(value: Any, base_dir: Path) -> FrozenMap:
    args = _json_object(value, base_dir)
    for key in args:
        if key in _CLEAN_ARGS_RESERVED:
            option = _CLEAN_ARGS_RESERVED[key]
            hint = f"use {option} instead" if option else "it is set by the pipeline"
            raise ValueError(f"key {key!r} is not allowed, {hint}")
    return args


def _filter_value(value: Any) -> Any:
    if value is None:
        return QUERY_NONE
    if value == "*":
        return QUERY_ANY
    if isinstance(value, (str, bool, int, float)):
        return value
    raise ValueError(f"unsupported filter value {value!r}")


def _bids_filters(value: Any, base_dir: Path) -> FrozenMap:
    filters = _json_object(value, base_dir)
    queries = {}
    for query, entities in filters.items():
        if query not in FILTER_QUERIES:
            raise ValueError(
                f"unknown query {query!r} (expected one of {', '.join(FILTER_QUERIES)})"
            )
        if not isinstance(entities, Mapping):
            raise ValueError(f"query {query!r} must map entities to values")
        queries[query] = FrozenMap(
            (entity, _filter_values(item)) for entity, item in entities.items()
        )
    return FrozenMap(queries)


def _filter_values(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(_filter_value(item) for item in value)
    return _filter_value(value)


def _datasets(value: Any, base_dir: Path) -> FrozenMap:
    if isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        pairs = []
        for item in _as_items(value):
            name, sep, path = str(item).partition("=")
            if not sep or not path:
                raise ValueError(f"expected NAME=PATH, got {item!r}")
            pairs.append((name, path))
    datasets: dict[str, Path] = {}
    for name, path in pairs:
        if not isinstance(name, str) or not _DATASET_NAME_RE.match(name):
            raise ValueError(f"{name!r} is not a valid dataset name")
        if name in datasets:
            raise ValueError(f"dataset {name!r} is given twice")
        datasets[name] = _path(path, base_dir)
    return FrozenMap(datasets)


def _dummy_scans(value: Any, base_dir: Path) -> int | str:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        return _number(integer=True, minimum=0)(value, base_dir)
    except ValueError:
        raise ValueError(f"expected a number of volumes >= 0 or 'auto', got {value!r}") from None


def _memory_gb(value: Any, base_dir: Path) -> float:
    if isinstance(value, str):
        match = _MEMORY_RE.match(value)
        unit = match.group(2).lower() if match else None
        if unit not in _MEMORY_UNITS_GB:
            raise ValueError(f"expected a size such as 8, 8G, 8000M or 0.5T; got {value!r}")
        value = float(match.group(1)) * _MEMORY_UNITS_GB[unit]
    return _number(minimum=0, exclusive_minimum=True)(value, base_dir)


def _measures(value: Any, base_dir: Path) -> tuple[str, ...]:
    measures = []
    for item in _as_items(value):
        name = " ".join(str(item).strip().lower().replace("_", " ").replace("-", " ").split())
        if name not in CONNECTIVITY_MEASURES:
            raise ValueError(
                f"unknown measure {item!r} (expected {', '.join(CONNECTIVITY_MEASURES)})"
            )
        measures.append(name)
    if not measures:
        raise ValueError("give at least one measure")
    return tuple(dict.fromkeys(measures))


def _looks_like_path(text: str) -> bool:
    return "/" in text or os.sep in text or text.endswith(".json")


def _denoise_strategy(value: Any, base_dir: Path) -> str:
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise ValueError(f"expected a strategy name or file, got {value!r}")
    text = os.fspath(value)
    builtins = builtin_denoise_strategies()
    if text in builtins:
        return text
    if _looks_like_path(text) or (base_dir / text).is_file():
        # Existence is checked by the preflight (exit 66), not here.
        return str(_path(text, base_dir))
    raise ValueError(
        f"unknown strategy {text!r}; built-in: {', '.join(builtins) or '(none installed)'}; "
        "or give the path of a strategy JSON file"
    )


def builtin_denoise_strategies(directory: str | os.PathLike | None = None) -> tuple[str, ...]:
    """Names of the built-in denoising strategies.

    Parameters
    ----------
    directory : path, optional
        Folder to list; default ``bids_regionx/data/denoise`` inside the installed package.

    Returns
    -------
    tuple of str
        Sorted stems of the ``*.json`` files in that folder (``"simple"``, ``"scrubbing.5"``...),
        empty if the folder does not exist.
    """
    root = (
        resources.files("bids_regionx") / "data" / "denoise"
        if directory is None
        else Path(directory)
    )
    try:
        entries = list(root.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return ()
    return tuple(
        sorted(
            entry.name[: -len(".json")]
            for entry in entries
            if entry.name.endswith(".json") and entry.is_file()
        )
    )


def read_bids_filter_file(path: str | os.PathLike) -> FrozenMap:
    """Read and normalise a BIDS filter file.

    Parameters
    ----------
    path : path
        JSON file mapping each query (``bold``, ``mask``, ``confounds``) to entity filters.

    Returns
    -------
    FrozenMap
        The filters, with JSON ``null`` as :data:`QUERY_NONE` and ``"*"`` as :data:`QUERY_ANY`.

    Raises
    ------
    OSError
        The file cannot be read.
    ValueError
        The file is not valid JSON or not a valid filter specification.
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc})") from None
    return _bids_filters(data, Path.cwd())


# --- Output-identity canonicalisers ------------------------------------------------------------


def _same(value: Any) -> Any:
    return _plain(value)


def _basename(value: Path | None) -> str | None:
    return None if value is None else value.name


def _basenames(value: tuple[Path, ...]) -> list[str]:
    return [path.name for path in value]


def _strategy_identity(value: str) -> str:
    # A strategy file is identified by its name, like the maps files; its contents are not read.
    return Path(value).name if _looks_like_path(value) else value


def _participant_measures(value: tuple[str, ...]) -> list[str]:
    # Group-only measures must not make the group run look like it used other options.
    return sorted(measure for measure in value if measure not in GROUP_ONLY_MEASURES)


def _setting(
    default: Any = dataclasses.MISSING,
    *,
    option: str,
    coerce: Coercer,
    output: Callable[[Any], Any] | None = None,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """Declare a settings field with its option name, normaliser and output identity."""
    metadata = {"option": option, "coerce": coerce, "output": output}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


class _Section:
    """Normalise and check every field after ``__init__`` (frozen, so via object.__setattr__)."""

    def __post_init__(self) -> None:
        base_dir = Path.cwd()
        problems = []
        for spec in fields(self):
            try:
                value = spec.metadata["coerce"](getattr(self, spec.name), base_dir)
            except ValueError as exc:
                problems.append(f"{spec.metadata['option']}: {exc}")
            else:
                object.__setattr__(self, spec.name, value)
        if problems:
            raise InvalidSettingsError(problems)


@dataclass(frozen=True)
class SelectionSettings(_Section):
    """Which data are processed. None of these change how a run is processed."""

    participant_labels: tuple[str, ...] = _setting(
        (), option="--participant-label", coerce=_labels("sub")
    )
    session_labels: tuple[str, ...] = _setting((), option="--session-label", coerce=_labels("ses"))
    task_ids: tuple[str, ...] = _setting((), option="--task-id", coerce=_labels("task"))
    #: Template space of the BOLD runs; None means the maps' space (MNI152NLin2009cAsym for plain
    #: NIfTI maps), resolved when the inputs are queried.
    space: str | None = _setting(
        None, option="--space", coerce=_optional(_label(None)), output=_same
    )
    bids_filter_file: Path | None = _setting(
        None, option="--bids-filter-file", coerce=_optional(_path)
    )
    #: Contents of ``bids_filter_file``: query -> entity -> value (``"none"``/``"any"`` for
    #: JSON null/``"*"``).
    bids_filters: FrozenMap = _setting(
        FrozenMap(), option="--bids-filter-file", coerce=_bids_filters
    )
    bids_database_dir: Path | None = _setting(
        None, option="--bids-database-dir", coerce=_optional(_path)
    )
    #: ``-d NAME=PATH``: ``fmriprep`` (with a raw bids_dir), ``atlases`` (BIDS-Atlas), others.
    datasets: FrozenMap = _setting(FrozenMap(), option="-d/--datasets", coerce=_datasets)


@dataclass(frozen=True)
class MapsSettings(_Section):
    """Where the maps come from: ``files`` (4D NIfTI) or an ``atlas`` label."""

    files: tuple[Path, ...] = _setting((), option="--maps", coerce=_paths, output=_basenames)
    labels: tuple[str, ...] = _setting(
        (), option="--maps-label", coerce=_labels(None, unique=False), output=_same
    )
    labels_tsv: tuple[Path, ...] = _setting(
        (), option="--maps-labels-tsv", coerce=_paths, output=_basenames
    )
    atlas: str | None = _setting(
        None, option="--atlas", coerce=_optional(_label(None)), output=_same
    )
    mask: Path | None = _setting(None, option="--mask", coerce=_optional(_path), output=_basename)


@dataclass(frozen=True)
class RegionSettings(_Section):
    """Region extraction, as nilearn's ``RegionExtractor`` parameters (same defaults)."""

    min_region_size: float = _setting(
        1350.0, option="--min-region-size", coerce=_number(minimum=0), output=_same
    )
    threshold: float = _setting(1.0, option="--threshold", coerce=_number(), output=_same)
    thresholding_strategy: str = _setting(
        "ratio_n_voxels",
        option="--thresholding-strategy",
        coerce=_choice(THRESHOLDING_STRATEGIES),
        output=_same,
    )
    two_sided: bool = _setting(False, option="--two-sided", coerce=_bool, output=_same)
    extractor: str = _setting(
        "local_regions", option="--extractor", coerce=_choice(EXTRACTORS), output=_same
    )
    #: mm; 0 disables smoothing (of the maps' peak finding and of the BOLD, as nilearn does).
    smoothing_fwhm: float = _setting(
        6.0, option="--smoothing-fwhm", coerce=_number(minimum=0), output=_same
    )
    resampling_target: str = _setting(
        "data",
        option="--resampling-target",
        coerce=_choice(RESAMPLING_TARGETS),
        output=_same,
    )
    allow_overlap: bool = _setting(True, option="--allow-overlap", coerce=_bool, output=_same)


_positive = _optional(_number(minimum=0, exclusive_minimum=True))


@dataclass(frozen=True)
class DenoiseSettings(_Section):
    """Confound regression, censoring and signal cleaning. None means "from the strategy/data"."""

    #: A built-in strategy name, or the absolute path of a strategy JSON file.
    strategy: str = _setting(
        "simple",
        option="--denoise-strategy",
        coerce=_denoise_strategy,
        output=_strategy_identity,
    )
    fd_threshold: float | None = _setting(
        None, option="--fd-threshold", coerce=_positive, output=_same
    )
    dvars_threshold: float | None = _setting(
        None, option="--dvars-threshold", coerce=_positive, output=_same
    )
    #: Volumes dropped at the start of each run: an int, "auto" (fMRIPrep's non-steady-state
    #: outliers) or None (the strategy decides).
    dummy_scans: int | str | None = _setting(
        None, option="--dummy-scans", coerce=_optional(_dummy_scans), output=_same
    )
    #: s; runs with less uncensored data are dropped (0 keeps every run).
    min_time: float = _setting(0.0, option="--min-time", coerce=_number(minimum=0), output=_same)
    min_coverage: float = _setting(
        0.5, option="--min-coverage", coerce=_number(minimum=0, maximum=1), output=_same
    )
    standardize: str = _setting(
        "none", option="--standardize", coerce=_choice(STANDARDIZE_CHOICES), output=_same
    )
    standardize_confounds: bool = _setting(
        True, option="--standardize-confounds", coerce=_bool, output=_same
    )
    high_variance_confounds: bool = _setting(
        False, option="--high-variance-confounds", coerce=_bool, output=_same
    )
    detrend: bool = _setting(False, option="--detrend", coerce=_bool, output=_same)
    low_pass: float | None = _setting(None, option="--low-pass", coerce=_positive, output=_same)
    high_pass: float | None = _setting(None, option="--high-pass", coerce=_positive, output=_same)
    #: s; None means each run's ``RepetitionTime``.
    t_r: float | None = _setting(None, option="--t-r", coerce=_positive, output=_same)
    clean_args: FrozenMap = _setting(
        FrozenMap(), option="--clean-args", coerce=_clean_args, output=_same
    )
    dtype: str | None = _setting(
        None, option="--dtype", coerce=_optional(_choice(DTYPES)), output=_same
    )

    @property
    def strategy_path(self) -> Path | None:
        """The strategy file when ``strategy`` is a path, else None (a built-in name)."""
        return Path(self.strategy) if _looks_like_path(self.strategy) else None

    def strategy_overrides(self) -> dict[str, Any]:
        """Censoring options given on the command line (the strategy file's values otherwise),
        as keyword arguments of ``Strategy.with_overrides``."""
        given = {
            "fd_threshold": self.fd_threshold,
            "dvars_threshold": self.dvars_threshold,
            "dummy_scans": self.dummy_scans,
        }
        return {key: value for key, value in given.items() if value is not None}


@dataclass(frozen=True)
class ConnectivitySettings(_Section):
    """Connectomes computed from the region time series."""

    measures: tuple[str, ...] = _setting(
        ("correlation",),
        option="--connectivity",
        coerce=_measures,
        output=_participant_measures,
    )
    cov_estimator: str = _setting(
        "empirical", option="--cov-estimator", coerce=_choice(COV_ESTIMATORS), output=_same
    )
    fisher_z: bool = _setting(False, option="--fisher-z", coerce=_bool, output=_same)
    combine_runs: bool = _setting(False, option="--combine-runs", coerce=_bool, output=_same)
    #: Group level only, so not an output option of the participant outputs it reads.
    group_unit: str = _setting("run", option="--group-unit", coerce=_choice(GROUP_UNITS))


@dataclass(frozen=True)
class ExecutionSettings(_Section):
    """How the run is executed; never changes the outputs."""

    work_dir: Path = _setting(
        option="-w/--work-dir", coerce=_path, factory=lambda: Path.cwd() / "work"
    )
    #: None: every CPU available to the process.
    nprocs: int | None = _setting(
        None, option="--nprocs", coerce=_optional(_number(integer=True, minimum=1))
    )
    omp_nthreads: int | None = _setting(
        None, option="--omp-nthreads", coerce=_optional(_number(integer=True, minimum=1))
    )
    mem_gb: float | None = _setting(None, option="--mem-gb", coerce=_optional(_memory_gb))
    plugin: str = _setting("MultiProc", option="--plugin", coerce=_choice(PLUGINS))
    plugin_args: FrozenMap = _setting(FrozenMap(), option="--plugin-args", coerce=_json_object)
    stop_on_first_crash: bool = _setting(False, option="--stop-on-first-crash", coerce=_bool)
    resource_monitor: bool = _setting(False, option="--resource-monitor", coerce=_bool)
    write_graph: bool = _setting(False, option="--write-graph", coerce=_bool)
    skip_bids_validation: bool = _setting(False, option="--skip-bids-validation", coerce=_bool)
    config_file: Path | None = _setting(None, option="--config-file", coerce=_optional(_path))
    verbosity: int = _setting(0, option="-v", coerce=_number(integer=True, minimum=0))


@dataclass(frozen=True)
class ReportSettings(_Section):
    """Reports and methods boilerplate; never change the derivatives."""

    write_reports: bool = _setting(True, option="--reports/--no-reports", coerce=_bool)
    reports_only: bool = _setting(False, option="--reports-only", coerce=_bool)
    boilerplate_only: bool = _setting(False, option="--boilerplate-only", coerce=_bool)


#: Section name -> class, in the order they are written to TOML.
SECTIONS: Mapping[str, type[_Section]] = MappingProxyType(
    {
        "selection": SelectionSettings,
        "maps": MapsSettings,
        "regions": RegionSettings,
        "denoise": DenoiseSettings,
        "connectivity": ConnectivitySettings,
        "execution": ExecutionSettings,
        "reports": ReportSettings,
    }
)
_TOP_LEVEL: Mapping[str, Coercer] = MappingProxyType(
    {
        "bids_dir": _path,
        "output_dir": _path,
        "analysis_level": lambda value, base_dir: value,
    }
)


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


@dataclass(frozen=True)
class Settings:
    """Every option of one run; frozen, validated, with TOML round trip and an output hash.

    Parameters
    ----------
    bids_dir : path
        Input dataset (fMRIPrep derivatives, or raw BIDS with ``-d fmriprep=PATH``).
    output_dir : path
        Derivatives dataset written by bids_regionx.
    analysis_level : {"participant", "group"}
    selection, maps, regions, denoise, connectivity, execution, reports : sections
        See the section classes; each defaults to its own defaults.

    Raises
    ------
    UnknownAnalysisLevelError
        ``analysis_level`` is not one of :data:`ANALYSIS_LEVELS` (exit code 17).
    InvalidSettingsError
        Any other invalid value or combination, all listed in one message (exit code 64).
    """

    bids_dir: Path
    output_dir: Path
    analysis_level: str
    selection: SelectionSettings = field(default_factory=SelectionSettings)
    maps: MapsSettings = field(default_factory=MapsSettings)
    regions: RegionSettings = field(default_factory=RegionSettings)
    denoise: DenoiseSettings = field(default_factory=DenoiseSettings)
    connectivity: ConnectivitySettings = field(default_factory=ConnectivitySettings)
    execution: ExecutionSettings = field(default_factory=ExecutionSettings)
    reports: ReportSettings = field(default_factory=ReportSettings)

    def __post_init__(self) -> None:
        if self.analysis_level not in ANALYSIS_LEVELS:
            raise UnknownAnalysisLevelError(
                f"analysis level {self.analysis_level!r} is not supported "
                f"(choose from {', '.join(ANALYSIS_LEVELS)})"
            )
        base_dir = Path.cwd()
        problems = []
        for name in ("bids_dir", "output_dir"):
            try:
                object.__setattr__(self, name, _path(getattr(self, name), base_dir))
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
        for name, cls in SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise TypeError(f"Settings.{name} must be a {cls.__name__}")
        if problems:
            raise InvalidSettingsError(problems)
        problems = _cross_field_problems(self)
        if problems:
            raise InvalidSettingsError(problems)

    # --- derived values ------------------------------------------------------------------

    @property
    def fmriprep_dir(self) -> Path:
        """The dataset holding the preprocessed BOLD: ``-d fmriprep=PATH`` or ``bids_dir``."""
        return self.selection.datasets.get("fmriprep", self.bids_dir)

    def warnings(self) -> tuple[str, ...]:
        """Valid but probably unintended combinations, one message each."""
        notes = []
        nprocs, omp = self.execution.nprocs, self.execution.omp_nthreads
        if nprocs is not None and omp is not None and omp > nprocs:
            notes.append(
                f"--omp-nthreads ({omp}) is larger than --nprocs ({nprocs}); "
                "each task will oversubscribe the CPUs"
            )
        conn = self.connectivity
        if conn.fisher_z and not {"correlation", "partial correlation"} & set(conn.measures):
            notes.append("--fisher-z only applies to correlation and partial correlation")
        return tuple(notes)

    # --- serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Nested plain data (str paths, lists, dicts, None kept), e.g. for JSON."""
        data: dict[str, Any] = {
            "bids_dir": str(self.bids_dir),
            "output_dir": str(self.output_dir),
            "analysis_level": self.analysis_level,
        }
        for name in SECTIONS:
            section = getattr(self, name)
            data[name] = {
                spec.name: _plain(getattr(section, spec.name)) for spec in fields(section)
            }
        return data

    def to_toml(self) -> str:
        """The settings as TOML text; :meth:`from_toml` reads it back to an equal value."""
        import tomli_w  # lazy: keep ``import bids_regionx.config`` standard-library only

        header = "# bids_regionx settings (absent keys take their defaults)\n"
        return header + tomli_w.dumps(_drop_none(self.to_dict()))

    @classmethod
    def from_toml(cls, text: str, *, base_dir: str | os.PathLike | None = None) -> Settings:
        """Build settings from TOML text in the layout of :meth:`to_toml`.

        Parameters
        ----------
        text : str
            TOML; absent keys take their defaults.
        base_dir : path, optional
            Folder that relative paths are relative to (default: the working directory).
        """
        return cls.from_dict(_loads_toml(text), base_dir=base_dir)

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, base_dir: str | os.PathLike | None = None
    ) -> Settings:
        """Build settings from nested data (as :meth:`to_dict`), reporting all problems at once.

        Parameters
        ----------
        data : mapping
            ``bids_dir``, ``output_dir``, ``analysis_level`` and section tables; unknown keys are
            errors, absent keys take their defaults.
        base_dir : path, optional
            Folder that relative paths are relative to (default: the working directory).

        Raises
        ------
        UnknownAnalysisLevelError, InvalidSettingsError
        """
        values, problems = coerce_mapping(data, base_dir=base_dir)
        problems.extend(f"{name}: missing" for name in _TOP_LEVEL if name not in data)
        if any(name not in values for name in _TOP_LEVEL):
            raise InvalidSettingsError(problems)
        try:
            # Values that failed normalisation were left out, so their defaults stand in and
            # the cross-field checks still run: every problem is reported in one go.
            sections = {name: SECTIONS[name](**values.get(name, {})) for name in SECTIONS}
            settings = cls(**{name: values[name] for name in _TOP_LEVEL}, **sections)
        except InvalidSettingsError as exc:
            problems.extend(exc.problems)
        if problems:
            raise InvalidSettingsError(problems)
        return settings

    # --- output identity -----------------------------------------------------------------

    def output_options(self) -> dict[str, Any]:
        """The options that change what is written, as a flat, sorted, JSON-ready dict.

        Keys are ``"section.field"``. Paths enter by basename only (the maps' contents are
        identified elsewhere); selection (which subjects/runs), execution and report options are
        left out, so parallel participants and reruns with other resources share one output dir.
        """
        options = {}
        for name in SECTIONS:
            section = getattr(self, name)
            for spec in fields(section):
                canonical = spec.metadata["output"]
                if canonical is not None:
                    options[f"{name}.{spec.name}"] = canonical(getattr(section, spec.name))
        return dict(sorted(options.items()))

    def output_hash(self) -> str:
        """Short, stable sha256 of the canonical JSON of :meth:`output_options`."""
        canonical = json.dumps(
            self.output_options(), sort_keys=True, separators=(",", ":"), allow_nan=False
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:OUTPUT_HASH_LENGTH]


def diff_output_options(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Say which output options differ between two :meth:`Settings.output_options` dicts.

    Parameters
    ----------
    a, b : mapping
        E.g. the options recorded in an existing output dir and those of this run (JSON-loaded
        dicts compare equal to fresh ones).

    Returns
    -------
    list of str
        One ``"regions.threshold: 1.0 vs 2.0"`` line per differing key, sorted by key; a key
        missing on one side shows as ``<unset>``.
    """
    missing = object()

    def show(value: Any) -> str:
        return "<unset>" if value is missing else json.dumps(value, sort_keys=True)

    differences = []
    for key in sorted(set(a) | set(b)):
        value_a, value_b = a.get(key, missing), b.get(key, missing)
        if value_a != value_b:
            differences.append(f"{key}: {show(value_a)} vs {show(value_b)}")
    return differences


def coerce_mapping(
    data: Mapping[str, Any],
    *,
    base_dir: str | os.PathLike | None = None,
    source: str | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Normalise the keys present in nested settings data, collecting problems.

    Used to merge partial sources (a ``--config-file``, the command line) before building
    :class:`Settings`: each source's relative paths are resolved against its own ``base_dir``.

    Parameters
    ----------
    data : mapping
        Nested like :meth:`Settings.to_dict`; keys may use ``-`` for ``_``.
    base_dir : path, optional
        Folder that relative paths are relative to (default: the working directory).
    source : str, optional
        Name of the source (e.g. the config file); problems then name keys as
        ``"<source>: regions.threshold"`` instead of the command-line option.

    Returns
    -------
    values : dict
        Nested normalised values for the keys that were valid.
    problems : list of str
        Unknown keys and invalid values.
    """
    base = Path.cwd() if base_dir is None else Path(base_dir)
    values: dict[str, Any] = {}
    problems: list[str] = []

    def where(key: str, option: str) -> str:
        return f"{source}: {key}" if source else option

    for raw_key, raw_value in data.items():
        key = str(raw_key).replace("-", "_")
        if key in _TOP_LEVEL:
            try:
                values[key] = _TOP_LEVEL[key](raw_value, base)
            except ValueError as exc:
                problems.append(f"{where(key, key)}: {exc}")
            continue
        if key not in SECTIONS:
            problems.append(f"{where(key, key)}: unknown setting")
            continue
        if not isinstance(raw_value, Mapping):
            problems.append(f"{where(key, key)}: expected a table of settings")
            continue
        specs = {spec.name: spec for spec in fields(SECTIONS[key])}
        section: dict[str, Any] = {}
        for raw_name, item in raw_value.items():
            name = str(raw_name).replace("-", "_")
            spec = specs.get(name)
            if spec is None:
                problems.append(f"{where(f'{key}.{name}', f'{key}.{name}')}: unknown setting")
                continue
            try:
                section[name] = spec.metadata["coerce"](item, base)
            except ValueError as exc:
                problems.append(f"{where(f'{key}.{name}', spec.metadata['option'])}: {exc}")
        values[key] = section
    return values, problems


def _loads_toml(text: str) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidSettingsError([f"invalid TOML ({exc})"]) from None


def _cross_field_problems(settings: Settings) -> list[str]:
    """Problems that involve more than one option (each field is already valid)."""
    return [
        *_path_problems(settings),
        *_maps_problems(settings),
        *_threshold_problems(settings.regions),
        *_filter_problems(settings.denoise),
        *_connectivity_problems(settings),
        *_report_problems(settings.reports),
    ]


def _path_problems(settings: Settings) -> list[str]:
    # Inputs are never written: no output, scratch or index inside an input dataset.
    bids_dir, output_dir = settings.bids_dir, settings.output_dir
    work_dir = settings.execution.work_dir
    inputs = [("bids_dir", bids_dir)] + [
        (f"the -d {name} dataset", path) for name, path in settings.selection.datasets.items()
    ]
    problems = []
    for what, root in inputs:
        if _within(output_dir, root):
            relation = "is" if output_dir == root else "is inside"
            hint = (
                f"; write the derivatives beside it, e.g. {bids_dir.parent / 'bids_regionx'}"
                if root == bids_dir
                else ""
            )
            problems.append(f"output_dir {output_dir} {relation} {what} {root}{hint}")
        if _within(work_dir, root):
            problems.append(f"-w/--work-dir {work_dir} is inside {what} {root}")
    if work_dir == output_dir:
        problems.append(f"-w/--work-dir {work_dir} must differ from output_dir")
    database_dir = settings.selection.bids_database_dir
    if database_dir is not None and _within(database_dir, bids_dir):
        problems.append(f"--bids-database-dir {database_dir} is inside bids_dir {bids_dir}")
    return problems


def _maps_problems(settings: Settings) -> list[str]:
    maps = settings.maps
    problems = []
    # The group level reads participant outputs only, so it needs no maps.
    if settings.analysis_level == "participant" and not maps.files and maps.atlas is None:
        problems.append("no maps: give --maps PATH [PATH ...] or --atlas LABEL")
    if maps.files and maps.atlas is not None:
        problems.append("give either --maps or --atlas, not both")
    for option, given in (("--maps-label", maps.labels), ("--maps-labels-tsv", maps.labels_tsv)):
        if given and len(given) != len(maps.files):
            problems.append(
                f"{option}: give one per --maps file ({len(maps.files)} files, {len(given)} given)"
            )
    duplicates = sorted({label for label in maps.labels if maps.labels.count(label) > 1})
    if duplicates:
        problems.append(f"--maps-label: labels must be unique ({', '.join(duplicates)} repeated)")
    if "atlases" in settings.selection.datasets and maps.atlas is None:
        problems.append("-d atlases=PATH needs --atlas LABEL")
    if settings.regions.resampling_target == "mask" and maps.mask is None:
        problems.append("--resampling-target mask needs --mask PATH")
    return problems


def _threshold_problems(regions: RegionSettings) -> list[str]:
    threshold, strategy = regions.threshold, regions.thresholding_strategy
    given = f"got {_fmt(threshold)}"
    if strategy == "ratio_n_voxels" and threshold <= 0:
        return [f"--threshold must be > 0 with --thresholding-strategy ratio_n_voxels, {given}"]
    if strategy == "percentile" and not 0 <= threshold <= 100:
        return [
            f"--threshold must be between 0 and 100 with --thresholding-strategy percentile, "
            f"{given}"
        ]
    if strategy == "img_value" and regions.two_sided and threshold < 0:
        return [f"--threshold must be >= 0 with --two-sided, {given}"]
    return []


def _filter_problems(denoise: DenoiseSettings) -> list[str]:
    low, high, t_r = denoise.low_pass, denoise.high_pass, denoise.t_r
    problems = []
    if low is not None and high is not None and low <= high:
        problems.append(
            f"--low-pass ({_fmt(low)} Hz) must be greater than --high-pass ({_fmt(high)} Hz)"
        )
    if t_r is not None:
        nyquist = 0.5 / t_r
        for option, frequency in (("--low-pass", low), ("--high-pass", high)):
            if frequency is not None and frequency >= nyquist:
                problems.append(
                    f"{option} ({_fmt(frequency)} Hz) must be below the Nyquist frequency "
                    f"({_fmt(nyquist)} Hz for --t-r {_fmt(t_r)} s)"
                )
    return problems


def _connectivity_problems(settings: Settings) -> list[str]:
    if settings.analysis_level == "group":
        return []
    group_only = [m for m in settings.connectivity.measures if m in GROUP_ONLY_MEASURES]
    return [
        f"--connectivity {measure} is only available at the group level" for measure in group_only
    ]


def _report_problems(reports: ReportSettings) -> list[str]:
    problems = []
    if reports.reports_only and reports.boilerplate_only:
        problems.append("--reports-only and --boilerplate-only exclude each other")
    if reports.reports_only and not reports.write_reports:
        problems.append("--reports-only and --no-reports exclude each other")
    return problems
