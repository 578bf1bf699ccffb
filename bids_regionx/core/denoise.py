"""Denoising strategies as data: confound selection, censoring and run exclusion.

A *strategy* is a JSON file (built-ins in ``bids_regionx/data/denoise/``, or a user's file passed
by path) saying which fMRIPrep confound columns are regressed, whether CompCor components are
added, how volumes are censored and how many initial volumes are dropped. The functions here turn
a strategy plus one run's ``desc-confounds_timeseries.tsv`` (and its JSON sidecar) into the design
matrix actually regressed, the boolean sample mask with a reason per censored volume, and a
usable/unusable verdict for the run. They are pure pandas/numpy: no pybids, no file writing.

Strategy file schema (``schema_version`` 1)
-------------------------------------------
``name`` (str, required)
    Label used in outputs and reports; letters, digits and ``.+_-``.
``description`` (str, required)
    Methods sentence about the regressors, with citation keys such as ``[@satterthwaite2013]``.
    Censoring and dummy-scan sentences are generated from the values actually used, so do not
    put thresholds here.
``confounds`` (list, required)
    Columns of the confounds table, in the order they enter the design matrix. Each item is

    * an exact column name, e.g. ``"trans_x"`` (required: missing is an error);
    * a regex family, a string starting with ``^`` and ending with ``$``, e.g.
      ``"^motion_outlier_\\d+$"`` (matched with :func:`re.fullmatch`, may match no column;
      matches in natural order, ``cosine_2`` before ``cosine_10``);
    * ``{"regex": "^aroma_motion_\\d+$", "required": true}``: a family that must match at least
      one column.
``high_pass`` (bool, default false)
    Add fMRIPrep's discrete cosine regressors (``cosine_XX``, ``cosineXX`` in fMRIPrep 1.x).
    Required with ``compcor``: fMRIPrep computes CompCor on high-pass filtered data.
``compcor`` (object or null, default null)
    ``{"method": "aCompCor" | "tCompCor", "masks": ["combined"] | ["WM", "CSF"] | ...,
    "n_components": "all" | int}``. Components come from the JSON sidecar (``Method``, ``Mask``,
    ``Retained``); without it, from column names when they are unambiguous (fMRIPrep >= 21:
    ``a_comp_cor`` combined, ``c_comp_cor`` CSF, ``w_comp_cor`` WM; ``t_comp_cor`` temporal).
    ``n_components`` is per mask, the top components by explained variance.
``censoring`` (object or null, default null = no censoring)
    ``{"fd_threshold": mm | null, "dvars_threshold": float | null, "min_segment": int}``. A
    volume is censored when ``framewise_displacement > fd_threshold`` or ``std_dvars`` (fMRIPrep's
    *standardized* DVARS) ``> dvars_threshold``; then runs of kept volumes shorter than
    ``min_segment`` are censored too (nilearn's ``scrub``, Power et al. 2014).
``dummy_scans`` (``"auto"`` | int | null, default ``"auto"``)
    Initial volumes discarded: ``"auto"`` uses fMRIPrep's ``non_steady_state_outlier_XX``.
``schema_version`` (1), ``source`` (str: where the strategy comes from) are optional. Any other
key is an error, so typos do not pass silently.

Divergences from nilearn's ``load_confounds`` (deliberate, documented):

* design columns follow the strategy order (nilearn sorts them alphabetically);
* leading ``n/a`` (derivatives, FD, DVARS) is filled with the first valid value of the column;
  nilearn fills only the first row (identical for fMRIPrep tables, which have one such row);
  ``n/a`` anywhere else is an error, not a crash later;
* short segments are computed after dummy scans are removed, so the first kept segment is never
  shorter than ``min_segment`` (nilearn ignores non-steady-state volumes there);
* scrubbing strategies do not use DVARS by default (giga_connectome's stated intent; see the
  ``source`` of ``scrubbing.5.json``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd

from bids_regionx.errors import DataError, NoInputError, UsageError

SCHEMA_VERSION = 1

#: fMRIPrep's discrete cosine regressors: ``cosine_00`` (>= 1.5) or ``cosine00`` (1.4 era).
COSINE_PATTERN = r"^cosine_?\d+$"
#: fMRIPrep's one-hot non-steady-state columns.
NON_STEADY_STATE_PATTERN = r"^non_steady_state_outlier_?\d+$"
FD_COLUMN = "framewise_displacement"
DVARS_COLUMN = "std_dvars"

#: Columns of the per-volume table returned by :func:`build_sample_mask`.
REASONS: tuple[str, ...] = ("dummy", "fd", "dvars", "short_segment")

_NAME_RE = re.compile(r"^[A-Za-z0-9.+_-]+$")
_TOP_KEYS = {
    "schema_version",
    "name",
    "description",
    "source",
    "confounds",
    "high_pass",
    "compcor",
    "censoring",
    "dummy_scans",
}
_COMPCOR_METHODS = ("aCompCor", "tCompCor")
_COMPCOR_MASKS = ("combined", "CSF", "WM")
# fMRIPrep >= 21 column prefixes per aCompCor mask.
_PREFIX_FOR_MASK = {"combined": "a_comp_cor_", "CSF": "c_comp_cor_", "WM": "w_comp_cor_"}
_DEFAULT_SOURCE = "confounds table"


class StrategyError(UsageError, ValueError):
    """A strategy name or file is invalid (usage error, exit code 64)."""


# --------------------------------------------------------------------------------------------
# Strategy objects
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfoundSpec:
    """One item of a strategy's ``confounds`` list.

    Attributes
    ----------
    pattern : str
        Exact column name, or an anchored regular expression when ``is_regex``.
    is_regex : bool
        Whether ``pattern`` is a regex family.
    required : bool
        Exact names are always required; a family is required only when declared so.
    """

    pattern: str
    is_regex: bool = False
    required: bool = True

    def to_json(self) -> str | dict[str, Any]:
        """Return the item as written in a strategy file."""
        if self.is_regex and self.required:
            return {"regex": self.pattern, "required": True}
        return self.pattern


@dataclass(frozen=True)
class CompCorSpec:
    """CompCor components to add to the design.

    Attributes
    ----------
    method : {"aCompCor", "tCompCor"}
        fMRIPrep's ``Method`` metadata value.
    masks : tuple of str
        aCompCor masks, in design order (``"combined"``, ``"CSF"``, ``"WM"``); empty for
        tCompCor.
    n_components : int or None
        Components per mask, the top ones; None means all retained by fMRIPrep.
    """

    method: Literal["aCompCor", "tCompCor"]
    masks: tuple[str, ...] = ()
    n_components: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the block as written in a strategy file."""
        return {
            "method": self.method,
            "masks": list(self.masks),
            "n_components": "all" if self.n_components is None else self.n_components,
        }


@dataclass(frozen=True)
class Censoring:
    """Volume censoring rules.

    Attributes
    ----------
    fd_threshold : float or None
        Framewise displacement above which a volume is censored, in mm.
    dvars_threshold : float or None
        Standardized DVARS (``std_dvars``, unitless) above which a volume is censored.
    min_segment : int
        Runs of kept volumes shorter than this are censored too (0 disables).
    """

    fd_threshold: float | None = None
    dvars_threshold: float | None = None
    min_segment: int = 0

    @property
    def enabled(self) -> bool:
        """Whether any motion threshold is set."""
        return self.fd_threshold is not None or self.dvars_threshold is not None

    def to_json(self) -> dict[str, Any] | None:
        """Return the block as written in a strategy file (None when disabled)."""
        if not self.enabled:
            return None
        return {
            "fd_threshold": self.fd_threshold,
            "dvars_threshold": self.dvars_threshold,
            "min_segment": self.min_segment,
        }


_UNSET: Any = object()


@dataclass(frozen=True)
class Strategy:
    """A validated denoising strategy (see the module docstring for the file schema).

    Attributes
    ----------
    name, description, source : str
        As in the file.
    confounds : tuple of ConfoundSpec
        Regressors, in design order.
    high_pass : bool
        Whether cosine regressors are added.
    compcor : CompCorSpec or None
        CompCor components, if any.
    censoring : Censoring
        Censoring rules (disabled when the file has ``null``).
    dummy_scans : "auto", int or None
        Initial volumes to discard.
    path : Path or None
        The file the strategy was read from (None when built in code).
    builtin : bool
        Whether it ships with bids_regionx.
    """

    name: str
    description: str
    confounds: tuple[ConfoundSpec, ...] = ()
    high_pass: bool = False
    compcor: CompCorSpec | None = None
    censoring: Censoring = field(default_factory=Censoring)
    dummy_scans: Literal["auto"] | int | None = "auto"
    source: str = ""
    path: Path | None = field(default=None, compare=False)
    builtin: bool = field(default=False, compare=False)

    def with_overrides(
        self,
        *,
        fd_threshold: float | None = _UNSET,
        dvars_threshold: float | None = _UNSET,
        min_segment: int = _UNSET,
        dummy_scans: Literal["auto"] | int | None = _UNSET,
    ) -> Strategy:
        """Return a copy with command-line overrides applied (unset arguments keep the file's).

        Parameters
        ----------
        fd_threshold : float or None, optional
            New FD threshold in mm (None disables FD censoring).
        dvars_threshold : float or None, optional
            New standardized DVARS threshold (None disables it).
        min_segment : int, optional
            New minimum segment length in volumes.
        dummy_scans : "auto", int or None, optional
            New dummy-scan rule.

        Returns
        -------
        Strategy
        """
        cens = self.censoring
        new_cens = Censoring(
            fd_threshold=cens.fd_threshold if fd_threshold is _UNSET else fd_threshold,
            dvars_threshold=cens.dvars_threshold if dvars_threshold is _UNSET else dvars_threshold,
            min_segment=cens.min_segment if min_segment is _UNSET else min_segment,
        )
        where = "override"
        _check_threshold(new_cens.fd_threshold, where, "fd_threshold")
        _check_threshold(new_cens.dvars_threshold, where, "dvars_threshold")
        _check_nonneg_int(new_cens.min_segment, where, "min_segment")
        new_dummy = self.dummy_scans if dummy_scans is _UNSET else dummy_scans
        _check_dummy_scans(new_dummy, where)
        return replace(self, censoring=new_cens, dummy_scans=new_dummy)

    def censoring_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`build_sample_mask` for this strategy."""
        return {
            "dummy_scans": self.dummy_scans,
            "fd_threshold": self.censoring.fd_threshold,
            "dvars_threshold": self.censoring.dvars_threshold,
            "min_segment": self.censoring.min_segment,
        }

    def to_dict(self) -> dict[str, Any]:
        """Return the strategy as a JSON-serialisable dict in file schema (for sidecars)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "confounds": [c.to_json() for c in self.confounds],
            "high_pass": self.high_pass,
            "compcor": None if self.compcor is None else self.compcor.to_json(),
            "censoring": self.censoring.to_json(),
            "dummy_scans": self.dummy_scans,
        }


# --------------------------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------------------------


def list_strategies() -> tuple[str, ...]:
    """Names of the built-in strategies, sorted.

    Returns
    -------
    tuple of str
    """
    folder = resources.files("bids_regionx") / "data" / "denoise"
    return tuple(
        sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))
    )


def load_strategy(name_or_path: str | Path) -> Strategy:
    """Load a built-in strategy by name or a user's strategy file by path.

    Parameters
    ----------
    name_or_path : str or path-like
        A name from :func:`list_strategies` (built-ins win over a same-named file in the current
        directory), or the path to a JSON file following the schema.

    Returns
    -------
    Strategy

    Raises
    ------
    StrategyError
        Unknown name, invalid JSON, or a schema violation (the message names the file and key).
    NoInputError
        The path looks like a file (``.json`` or contains a separator) but does not exist.
    """
    text = str(name_or_path)
    if not isinstance(name_or_path, Path) and text in list_strategies():
        resource = resources.files("bids_regionx") / "data" / "denoise" / f"{text}.json"
        doc = _parse_json(resource.read_text(encoding="utf-8"), f"{text}.json (built-in)")
        strategy = strategy_from_dict(doc, where=f"built-in strategy {text!r}")
        return replace(strategy, builtin=True)
    path = Path(name_or_path)
    if path.is_file():
        try:
            raw = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise NoInputError(f"{path}: cannot read strategy file ({exc})") from exc
        strategy = strategy_from_dict(_parse_json(raw, str(path)), where=str(path))
        return replace(strategy, path=path.resolve())
    if path.suffix.lower() == ".json" or "/" in text or "\\" in text:
        raise NoInputError(f"{path}: denoising strategy file not found")
    raise StrategyError(
        f"denoise strategy: unknown name {text!r}; built-ins are {', '.join(list_strategies())}, "
        "or give the path to a JSON strategy file"
    )


def strategy_from_dict(doc: Mapping[str, Any], *, where: str = "strategy") -> Strategy:
    """Validate a parsed strategy document and build a :class:`Strategy`.

    Parameters
    ----------
    doc : mapping
        The parsed JSON object.
    where : str, default="strategy"
        Prefix for error messages (the file name).

    Returns
    -------
    Strategy

    Raises
    ------
    StrategyError
        With a message ``"<where>: key '<key>': <problem>"``.
    """
    if not isinstance(doc, Mapping):
        raise StrategyError(f"{where}: expected a JSON object, got {type(doc).__name__}")
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise StrategyError(
            f"{where}: unknown key(s) {unknown}; allowed keys are {sorted(_TOP_KEYS)}"
        )
    version = doc.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise StrategyError(
            f"{where}: key 'schema_version': only version {SCHEMA_VERSION} is supported, "
            f"got {version!r}"
        )
    for key in ("name", "description", "confounds"):
        if key not in doc:
            raise StrategyError(f"{where}: key {key!r} is required")
    name = doc["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise StrategyError(
            f"{where}: key 'name': expected a non-empty string of letters, digits and '.+_-', "
            f"got {name!r}"
        )
    description = _expect(doc["description"], str, where, "description")
    source = _expect(doc.get("source", ""), str, where, "source")
    high_pass = _expect(doc.get("high_pass", False), bool, where, "high_pass")
    confounds = _parse_confounds(doc["confounds"], where)
    compcor = _parse_compcor(doc.get("compcor"), where)
    if compcor is not None and not high_pass:
        raise StrategyError(
            f"{where}: key 'high_pass': must be true when 'compcor' is used, because fMRIPrep "
            "computes CompCor components on high-pass filtered data (cosine_XX regressors)"
        )
    censoring = _parse_censoring(doc.get("censoring"), where)
    dummy_scans = doc.get("dummy_scans", "auto")
    _check_dummy_scans(dummy_scans, where)
    return Strategy(
        name=name,
        description=description,
        confounds=confounds,
        high_pass=high_pass,
        compcor=compcor,
        censoring=censoring,
        dummy_scans=dummy_scans,
        source=source,
    )


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise StrategyError(
            f"{where}: invalid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from exc


def _expect(value: Any, kind: type, where: str, key: str) -> Any:
    # bool is an int subclass; reject True where a number is expected and vice versa.
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise StrategyError(
            f"{where}: key {key!r}: expected {kind.__name__}, got {type(value).__name__}"
        )
    return value


def _parse_confounds(items: Any, where: str) -> tuple[ConfoundSpec, ...]:
    if not isinstance(items, list):
        raise StrategyError(
            f"{where}: key 'confounds': expected a list, got {type(items).__name__}"
        )
    specs = []
    for i, item in enumerate(items):
        key = f"confounds[{i}]"
        if isinstance(item, str):
            spec = _confound_from_string(item, where, key)
        elif isinstance(item, Mapping):
            extra = sorted(set(item) - {"regex", "required"})
            if extra or "regex" not in item:
                raise StrategyError(
                    f"{where}: key {key!r}: an object item needs 'regex' and optionally "
                    f"'required' (unknown: {extra})"
                )
            required = _expect(item.get("required", False), bool, where, f"{key}.required")
            pattern = _expect(item["regex"], str, where, f"{key}.regex")
            _check_regex(pattern, where, f"{key}.regex")
            spec = ConfoundSpec(pattern, is_regex=True, required=required)
        else:
            raise StrategyError(
                f"{where}: key {key!r}: expected a column name, a '^...$' regex or an object, "
                f"got {type(item).__name__}"
            )
        if any(s.pattern == spec.pattern for s in specs):
            raise StrategyError(f"{where}: key {key!r}: {spec.pattern!r} is listed twice")
        specs.append(spec)
    return tuple(specs)


def _confound_from_string(item: str, where: str, key: str) -> ConfoundSpec:
    if not item.strip():
        raise StrategyError(f"{where}: key {key!r}: empty column name")
    if item.startswith("^") or item.endswith("$"):
        _check_regex(item, where, key)
        return ConfoundSpec(item, is_regex=True, required=False)
    return ConfoundSpec(item)


def _check_regex(pattern: str, where: str, key: str) -> None:
    # Anchors on both sides keep a family from matching unrelated columns by substring.
    if not (pattern.startswith("^") and pattern.endswith("$")):
        raise StrategyError(
            f"{where}: key {key!r}: regex {pattern!r} must be anchored with '^' and '$'"
        )
    try:
        re.compile(pattern)
    except re.error as exc:
        raise StrategyError(f"{where}: key {key!r}: invalid regex {pattern!r} ({exc})") from exc


def _parse_compcor(block: Any, where: str) -> CompCorSpec | None:
    if block is None:
        return None
    if not isinstance(block, Mapping):
        raise StrategyError(
            f"{where}: key 'compcor': expected an object or null, got {type(block).__name__}"
        )
    extra = sorted(set(block) - {"method", "masks", "n_components"})
    if extra:
        raise StrategyError(f"{where}: key 'compcor': unknown key(s) {extra}")
    method = block.get("method")
    if method not in _COMPCOR_METHODS:
        raise StrategyError(
            f"{where}: key 'compcor.method': expected one of {list(_COMPCOR_METHODS)}, "
            f"got {method!r}"
        )
    masks = block.get("masks", [] if method == "tCompCor" else None)
    if not isinstance(masks, list) or any(m not in _COMPCOR_MASKS for m in masks):
        raise StrategyError(
            f"{where}: key 'compcor.masks': expected a list drawn from {list(_COMPCOR_MASKS)}, "
            f"got {masks!r}"
        )
    if method == "aCompCor" and not masks:
        raise StrategyError(f"{where}: key 'compcor.masks': aCompCor needs at least one mask")
    if method == "tCompCor" and masks:
        raise StrategyError(f"{where}: key 'compcor.masks': must be empty for tCompCor")
    if len(set(masks)) != len(masks):
        raise StrategyError(f"{where}: key 'compcor.masks': a mask is listed twice")
    n = block.get("n_components", "all")
    if n != "all" and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise StrategyError(
            f"{where}: key 'compcor.n_components': expected 'all' or an integer >= 1, got {n!r}"
        )
    return CompCorSpec(method=method, masks=tuple(masks), n_components=None if n == "all" else n)


def _parse_censoring(block: Any, where: str) -> Censoring:
    if block is None:
        return Censoring()
    if not isinstance(block, Mapping):
        raise StrategyError(
            f"{where}: key 'censoring': expected an object or null, got {type(block).__name__}"
        )
    extra = sorted(set(block) - {"fd_threshold", "dvars_threshold", "min_segment"})
    if extra:
        raise StrategyError(
            f"{where}: key 'censoring': unknown key(s) {extra}; allowed are "
            "['dvars_threshold', 'fd_threshold', 'min_segment']"
        )
    cens = Censoring(
        fd_threshold=block.get("fd_threshold"),
        dvars_threshold=block.get("dvars_threshold"),
        min_segment=block.get("min_segment", 0),
    )
    _check_threshold(cens.fd_threshold, where, "censoring.fd_threshold")
    _check_threshold(cens.dvars_threshold, where, "censoring.dvars_threshold")
    _check_nonneg_int(cens.min_segment, where, "censoring.min_segment")
    return cens


def _check_threshold(value: Any, where: str, key: str) -> None:
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise StrategyError(f"{where}: key {key!r}: expected a number > 0 or null, got {value!r}")


def _check_nonneg_int(value: Any, where: str, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StrategyError(f"{where}: key {key!r}: expected an integer >= 0, got {value!r}")


def _check_dummy_scans(value: Any, where: str) -> None:
    if value is None or value == "auto":
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise StrategyError(
            f"{where}: key 'dummy_scans': expected 'auto', an integer >= 0 or null, got {value!r}"
        )


# --------------------------------------------------------------------------------------------
# Reading (convenience for the io layer and tests; no writing)
# --------------------------------------------------------------------------------------------


def read_confounds(
    tsv_path: str | Path, json_path: str | Path | None = None
) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """Read an fMRIPrep confounds table and, if given, its JSON sidecar.

    Parameters
    ----------
    tsv_path : path-like
        ``*_desc-confounds_timeseries.tsv`` (or the 1.x ``*_desc-confounds_regressors.tsv``).
    json_path : path-like, optional
        The sidecar; None to skip it.

    Returns
    -------
    table : DataFrame, shape (n_volumes, n_columns)
        ``n/a`` read as NaN.
    meta : dict or None
        The sidecar, if given.

    Raises
    ------
    NoInputError
        A file is missing or unreadable.
    DataError
        The TSV or JSON cannot be parsed.
    """
    tsv_path = Path(tsv_path)
    try:
        table = pd.read_csv(tsv_path, sep="\t", na_values=["n/a"])
    except FileNotFoundError as exc:
        raise NoInputError(f"{tsv_path}: confounds file not found") from exc
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{tsv_path}: cannot parse confounds table ({exc})") from exc
    meta = None
    if json_path is not None:
        json_path = Path(json_path)
        try:
            meta = json.loads(json_path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise NoInputError(f"{json_path}: confounds sidecar not found") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{json_path}: invalid JSON ({exc})") from exc
    return table, meta


# --------------------------------------------------------------------------------------------
# Design matrix
# --------------------------------------------------------------------------------------------


def build_design(
    confounds_df: pd.DataFrame,
    strategy: Strategy,
    *,
    confounds_meta: Mapping[str, Any] | None = None,
    n_volumes: int | None = None,
    sample_mask: np.ndarray | None = None,
    demean: bool = False,
    source: str = _DEFAULT_SOURCE,
) -> pd.DataFrame:
    """Select the confound design matrix a strategy regresses out of one run.

    Parameters
    ----------
    confounds_df : DataFrame, shape (n_volumes, n_columns)
        The fMRIPrep confounds table (``n/a`` as NaN, or as the string ``"n/a"``).
    strategy : Strategy
        Which columns to take.
    confounds_meta : mapping, optional
        The table's JSON sidecar, used to pick CompCor components by mask and retention.
    n_volumes : int, optional
        Number of BOLD volumes; the table must have exactly this many rows.
    sample_mask : ndarray of bool, shape (n_volumes,), optional
        Kept volumes; only used by ``demean``.
    demean : bool, default=False
        Subtract each column's mean over kept volumes (nilearn's ``demean=True``).
    source : str, default="confounds table"
        File name used in error messages.

    Returns
    -------
    DataFrame of float64, shape (n_volumes, n_regressors)
        Columns in strategy order: ``confounds`` items (a family's matches in natural order),
        then CompCor components (mask order, top first), then cosine regressors; no duplicates.
        Leading ``n/a`` are filled with the column's first valid value. Index 0..n_volumes-1.

    Raises
    ------
    DataError
        Rows differ from ``n_volumes``; required columns missing (all listed); ``n/a`` after
        the first valid value, or a column entirely ``n/a``; non-numeric values; CompCor
        components that cannot be identified.
    """
    _check_rows(confounds_df, n_volumes, source)
    columns = list(confounds_df.columns)
    selected: list[str] = []
    missing: list[str] = []
    for spec in strategy.confounds:
        if spec.is_regex:
            matches = _match_family(columns, spec.pattern)
            if spec.required and not matches:
                missing.append(spec.pattern)
            selected.extend(matches)
        elif spec.pattern in confounds_df.columns:
            selected.append(spec.pattern)
        else:
            missing.append(spec.pattern)
    if missing:
        raise DataError(_missing_message(source, missing, columns, strategy.name))
    if strategy.compcor is not None:
        selected.extend(
            select_compcor(
                confounds_df, strategy.compcor, confounds_meta=confounds_meta, source=source
            )
        )
    if strategy.high_pass:
        selected.extend(_match_family(columns, COSINE_PATTERN))
    selected = list(dict.fromkeys(selected))  # de-duplicate, keep first position

    design = pd.DataFrame(
        {col: _clean_column(confounds_df[col], col, source) for col in selected},
        index=pd.RangeIndex(len(confounds_df)),
        dtype=np.float64,
    )
    if demean and selected:
        keep = (
            np.ones(len(design), dtype=bool)
            if sample_mask is None
            else _as_mask(sample_mask, len(design), "sample_mask")
        )
        design = design - design.loc[keep].mean(axis=0)
    return design


def select_compcor(
    confounds_df: pd.DataFrame,
    spec: CompCorSpec,
    *,
    confounds_meta: Mapping[str, Any] | None = None,
    source: str = _DEFAULT_SOURCE,
) -> list[str]:
    """Pick CompCor columns by method, mask and rank.

    Parameters
    ----------
    confounds_df : DataFrame
        The confounds table.
    spec : CompCorSpec
        What to pick.
    confounds_meta : mapping, optional
        JSON sidecar. When it describes any ``spec.method`` component, components are those whose
        ``Method`` equals ``spec.method``, whose ``Mask`` is in ``spec.masks`` (aCompCor) and
        whose ``Retained`` is not false. Otherwise names are used: ``t_comp_cor_XX`` for
        tCompCor; for aCompCor only when ``c_comp_cor_XX``/``w_comp_cor_XX`` columns exist
        (fMRIPrep >= 21), because older versions number CSF, WM and combined components in
        one ``a_comp_cor_XX`` series.
    source : str
        File name used in error messages.

    Returns
    -------
    list of str
        Per mask in ``spec.masks`` order, the first ``n_components`` components (lowest index =
        most variance explained).

    Raises
    ------
    DataError
        No component for a mask, ambiguous names without metadata, or metadata naming columns
        absent from the table.
    """
    use_meta = confounds_meta is not None and any(
        isinstance(v, Mapping) and v.get("Method") == spec.method for v in confounds_meta.values()
    )
    groups = (
        _compcor_from_meta(spec, confounds_meta)
        if use_meta
        else _compcor_from_names(confounds_df, spec, source)
    )
    chosen: list[str] = []
    for label, cols in groups:
        if not cols:
            raise DataError(
                f"{source}: no {spec.method} components for mask {label!r}"
                + (" in the JSON sidecar" if use_meta else "")
            )
        cols = sorted(cols, key=_natural_key)
        chosen.extend(cols if spec.n_components is None else cols[: spec.n_components])
    absent = [c for c in chosen if c not in confounds_df.columns]
    if absent:
        raise DataError(
            f"{source}: CompCor column(s) {_short_list(absent)} are described in the JSON sidecar "
            "but missing from the table"
        )
    return chosen


def _compcor_from_meta(spec: CompCorSpec, meta: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    def wanted(name: str, info: Any, mask: str | None) -> bool:
        if not isinstance(info, Mapping) or info.get("Method") != spec.method:
            return False
        if info.get("Retained", True) is False or name.startswith("dropped"):
            return False
        return mask is None or info.get("Mask") == mask

    if spec.method == "tCompCor":
        return [("temporal", [k for k, v in meta.items() if wanted(k, v, None)])]
    return [(mask, [k for k, v in meta.items() if wanted(k, v, mask)]) for mask in spec.masks]


def _compcor_from_names(
    df: pd.DataFrame, spec: CompCorSpec, source: str
) -> list[tuple[str, list[str]]]:
    columns = list(df.columns)
    if spec.method == "tCompCor":
        return [("temporal", _match_family(columns, r"^t_comp_cor_\d+$"))]
    split_naming = any(re.fullmatch(r"^[cw]_comp_cor_\d+$", c) for c in columns)
    if not split_naming:
        raise DataError(
            f"{source}: aCompCor needs the confounds JSON sidecar to tell masks apart (before "
            "fMRIPrep 21, CSF, WM and combined components share the a_comp_cor_XX names)"
        )
    return [
        (mask, _match_family(columns, rf"^{_PREFIX_FOR_MASK[mask]}\d+$")) for mask in spec.masks
    ]


# --------------------------------------------------------------------------------------------
# Censoring
# --------------------------------------------------------------------------------------------


class SampleMask(NamedTuple):
    """Output of :func:`build_sample_mask`.

    Attributes
    ----------
    keep : ndarray of bool, shape (n_volumes,)
        True for volumes used in the regression and connectivity.
    reasons : DataFrame of bool, shape (n_volumes, 4)
        Columns ``dummy``, ``fd``, ``dvars``, ``short_segment``; each flag is an independent
        fact (a dummy volume may also exceed the FD threshold). Index ``volume`` 0..n-1.
    """

    keep: np.ndarray
    reasons: pd.DataFrame


def build_sample_mask(
    confounds_df: pd.DataFrame,
    *,
    dummy_scans: Literal["auto"] | int | None = "auto",
    fd_threshold: float | None = None,
    dvars_threshold: float | None = None,
    min_segment: int = 0,
    n_volumes: int | None = None,
    source: str = _DEFAULT_SOURCE,
) -> SampleMask:
    """Decide which volumes to keep and record why the others are censored.

    Parameters
    ----------
    confounds_df : DataFrame, shape (n_volumes, n_columns)
        The fMRIPrep confounds table.
    dummy_scans : "auto", int or None, default="auto"
        Initial non-steady-state volumes to drop: ``"auto"`` takes the volumes flagged by
        ``non_steady_state_outlier_XX`` columns (none if absent), an int the first N volumes,
        None or 0 none.
    fd_threshold : float, optional
        Censor volumes with ``framewise_displacement`` > this, in mm.
    dvars_threshold : float, optional
        Censor volumes with standardized DVARS (``std_dvars``) > this (unitless).
    min_segment : int, default=0
        After dummy and motion censoring, and only if some volume exceeded a motion threshold,
        censor runs of contiguous kept volumes shorter than this many volumes (Power et al.
        2014; nilearn's ``scrub``).
    n_volumes : int, optional
        Number of BOLD volumes; the table must have exactly this many rows.
    source : str, default="confounds table"
        File name used in error messages.

    Returns
    -------
    SampleMask
        ``(keep, reasons)``.

    Raises
    ------
    DataError
        Rows differ from ``n_volumes``; FD or DVARS column missing when its threshold is set;
        ``n/a`` in them after the first valid value; ``dummy_scans`` larger than the run.
    """
    _check_rows(confounds_df, n_volumes, source)
    n = len(confounds_df)
    reasons = pd.DataFrame(
        False, index=pd.RangeIndex(n, name="volume"), columns=list(REASONS), dtype=bool
    )
    reasons["dummy"] = _dummy_flags(confounds_df, dummy_scans, source)
    if fd_threshold is not None:
        reasons["fd"] = _threshold_flags(confounds_df, FD_COLUMN, fd_threshold, source)
    if dvars_threshold is not None:
        reasons["dvars"] = _threshold_flags(confounds_df, DVARS_COLUMN, dvars_threshold, source)
    motion = (reasons["fd"] | reasons["dvars"]).to_numpy()
    censored = motion | reasons["dummy"].to_numpy()
    if min_segment > 0 and motion.any():
        reasons["short_segment"] = _short_segments(censored, min_segment)
    keep = ~reasons.to_numpy().any(axis=1)
    return SampleMask(keep=keep, reasons=reasons)


def censoring_summary(reasons: pd.DataFrame) -> dict[str, int]:
    """Count censored volumes by their first reason (dummy > motion > short segment).

    Parameters
    ----------
    reasons : DataFrame
        The ``reasons`` table of :func:`build_sample_mask`.

    Returns
    -------
    dict
        ``n_volumes``, ``n_kept``, ``n_dummy``, ``n_motion`` (FD and/or DVARS, not dummy),
        ``n_fd``, ``n_dvars`` (not dummy; may overlap), ``n_short_segment``; counts add up:
        ``n_kept + n_dummy + n_motion + n_short_segment == n_volumes``.
    """
    dummy = reasons["dummy"].to_numpy()
    fd = reasons["fd"].to_numpy() & ~dummy
    dvars = reasons["dvars"].to_numpy() & ~dummy
    motion = fd | dvars
    short = reasons["short_segment"].to_numpy() & ~dummy & ~motion
    n = len(reasons)
    return {
        "n_volumes": n,
        "n_kept": int(n - dummy.sum() - motion.sum() - short.sum()),
        "n_dummy": int(dummy.sum()),
        "n_motion": int(motion.sum()),
        "n_fd": int(fd.sum()),
        "n_dvars": int(dvars.sum()),
        "n_short_segment": int(short.sum()),
    }


def check_run_usable(
    n_kept: int, n_regressors: int, t_r: float, *, min_time: float = 0.0
) -> str | None:
    """Say why a run must be dropped, or None if it is usable.

    Parameters
    ----------
    n_kept : int
        Volumes kept after dummy scans and censoring.
    n_regressors : int
        Columns of the design matrix (confounds regressed).
    t_r : float
        Repetition time in s.
    min_time : float, default=0.0
        Minimum clean data in s (XCP-D's ``--min-time``; 0 disables).

    Returns
    -------
    str or None
        A one-line reason, or None. Runs are dropped when no volume is left, when kept time
        ``n_kept * t_r < min_time``, or when ``n_regressors >= n_kept`` (no degrees of freedom
        left; giga_connectome's ``_check_exclusion`` drops only when ``>``).

    Raises
    ------
    ValueError
        Negative counts, ``t_r <= 0`` or ``min_time < 0``.
    """
    if n_kept < 0 or n_regressors < 0:
        raise ValueError("n_kept, n_regressors: must be >= 0")
    if not t_r > 0:
        raise ValueError(f"t_r: must be > 0 s, got {t_r!r}")
    if min_time < 0:
        raise ValueError(f"min_time: must be >= 0 s, got {min_time!r}")
    if n_kept == 0:
        return "no volume left after dummy scans and censoring"
    kept_time = n_kept * t_r
    if kept_time < min_time:
        return (
            f"only {kept_time:g} s of data left after censoring ({n_kept} volumes x {t_r:g} s), "
            f"less than the minimum of {min_time:g} s"
        )
    if n_regressors >= n_kept:
        return (
            f"{n_regressors} confound regressors for {n_kept} kept volumes leave no degrees of "
            "freedom"
        )
    return None


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _check_rows(df: pd.DataFrame, n_volumes: int | None, source: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"confounds_df: expected a pandas DataFrame, got {type(df).__name__}")
    if n_volumes is not None and len(df) != n_volumes:
        relation = "fewer" if len(df) < n_volumes else "more"
        raise DataError(
            f"{source}: has {len(df)} rows, {relation} than the {n_volumes} volumes of the "
            "BOLD run"
        )


def _match_family(columns: list[str], pattern: str) -> list[str]:
    regex = re.compile(pattern)
    return sorted((c for c in columns if regex.fullmatch(str(c))), key=_natural_key)


def _natural_key(name: str) -> tuple[str, int]:
    # a_comp_cor_2 < a_comp_cor_10, whatever the zero padding.
    match = re.match(r"^(.*?)(\d+)$", name)
    return (match.group(1), int(match.group(2))) if match else (name, -1)


def _short_list(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(i) for i in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _missing_message(source: str, missing: list[str], columns: list[str], name: str) -> str:
    msg = (
        f"{source}: column(s) {_short_list(missing)} required by denoising strategy {name!r} "
        "are missing"
    )
    # fMRIPrep 1.0/1.1 wrote CamelCase headers (e.g. 'FramewiseDisplacement'), unsupported.
    if any(re.fullmatch(r"(?:[A-Z][a-z0-9]+){2,}", str(c)) for c in columns):
        msg += " (CamelCase headers: fMRIPrep < 1.2 tables are not supported)"
    return msg


def _clean_column(values: pd.Series, name: str, source: str) -> np.ndarray:
    data = _numeric(values, name, source)
    nan = np.isnan(data)
    if nan.all():
        raise DataError(f"{source}: column {name!r} is entirely n/a")
    first = int(np.argmax(~nan))
    if nan[first:].any():
        row = first + int(np.argmax(nan[first:]))
        raise DataError(f"{source}: column {name!r} has n/a at row {row + 1} (after valid values)")
    # Derivative, FD and DVARS columns start with n/a; nilearn copies the next value there.
    data[:first] = data[first]
    return data


def _numeric(values: pd.Series, name: str, source: str) -> np.ndarray:
    # Copies: pandas' copy-on-write hands out read-only views.
    if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return np.array(values.to_numpy(dtype=np.float64, na_value=np.nan), copy=True)
    text = values.astype("string").str.strip()
    converted = pd.to_numeric(text.where(text != "n/a"), errors="coerce")
    bad = converted.isna() & text.notna() & (text != "n/a")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{source}: column {name!r} has a non-numeric value {text.iloc[row]!r} at row "
            f"{row + 1}"
        )
    return np.array(converted.to_numpy(dtype=np.float64, na_value=np.nan), copy=True)


def _threshold_flags(df: pd.DataFrame, column: str, threshold: float, source: str) -> np.ndarray:
    if column not in df.columns:
        raise DataError(f"{source}: column {column!r} is missing (needed for censoring)")
    data = _numeric(df[column], column, source)
    nan = np.isnan(data)
    if nan.all():
        raise DataError(f"{source}: column {column!r} is entirely n/a")
    first = int(np.argmax(~nan))
    if nan[first:].any():
        row = first + int(np.argmax(nan[first:]))
        raise DataError(
            f"{source}: column {column!r} has n/a at row {row + 1} (after valid values)"
        )
    # The leading n/a (no previous volume) is never an outlier, as in nilearn.
    return np.where(nan, False, data > threshold)


def _dummy_flags(
    df: pd.DataFrame, dummy_scans: Literal["auto"] | int | None, source: str
) -> np.ndarray:
    n = len(df)
    flags = np.zeros(n, dtype=bool)
    if dummy_scans is None or dummy_scans == 0:
        return flags
    if dummy_scans == "auto":
        for col in _match_family(list(df.columns), NON_STEADY_STATE_PATTERN):
            flags |= np.nan_to_num(_numeric(df[col], col, source)) != 0
        return flags
    if isinstance(dummy_scans, bool) or not isinstance(dummy_scans, int | np.integer):
        raise ValueError(f"dummy_scans: expected 'auto', an int or None, got {dummy_scans!r}")
    if dummy_scans < 0:
        raise ValueError(f"dummy_scans: must be >= 0, got {dummy_scans}")
    if dummy_scans >= n:
        raise DataError(
            f"{source}: {dummy_scans} dummy scans requested but the run has only {n} volumes"
        )
    flags[:dummy_scans] = True
    return flags


def _short_segments(censored: np.ndarray, min_segment: int) -> np.ndarray:
    """Flag runs of uncensored volumes shorter than ``min_segment``."""
    short = np.zeros(censored.size, dtype=bool)
    # Segment boundaries from the changes of the padded kept indicator.
    kept = np.concatenate([[0], (~censored).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(kept))
    for start, stop in zip(edges[::2], edges[1::2], strict=True):
        if stop - start < min_segment:
            short[start:stop] = True
    return short


def _as_mask(mask: np.ndarray, n: int, name: str) -> np.ndarray:
    arr = np.asarray(mask)
    if arr.dtype != bool or arr.shape != (n,):
        raise ValueError(f"{name}: expected a boolean array of shape ({n},)")
    return arr
