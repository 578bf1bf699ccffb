"""Participant report ``sub-<label>.html``, built only from files on disk.

Everything shown is read back from the output dataset (the atlases, each run's sidecars and
TSVs) and from the inputs (the subject's T1w/boldref for the background, the fMRIPrep
confounds for the FD trace), so ``--reports-only`` rebuilds the same report after the fact.
Figures are written as BIDS-named files under ``sub-<label>/figures/`` (pattern ``figure`` of
``path_patterns.json``) and the page links them relatively; the page needs no script and
fetches nothing.

Errors are those passed by the caller (this invocation) plus those recorded by the last
processing invocation in ``sub-<label>/log/<run id>/errors.json`` (:func:`record_errors`).
"""

from __future__ import annotations

import json
import logging
import re
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bids_regionx.io import derivatives as deriv
from bids_regionx.reports import figures as fig
from bids_regionx.reports.templating import html_environment

__all__ = [
    "ERRORS_FILE",
    "record_errors",
    "subject_errors",
    "write_failed_report",
    "write_participant_report",
]

logger = logging.getLogger("bids_regionx.reports")

#: Errors of one invocation, per subject: ``sub-<label>/log/<run id>/errors.json``.
ERRORS_FILE = "errors.json"
#: Labels of the ``stat-`` entity and their display names (participant level).
STATS = {
    "pearsoncorrelation": "Pearson correlation",
    "partialcorrelation": "partial correlation",
    "covariance": "covariance",
    "precision": "precision",
}
_STAT_OF_MEASURE = {
    "correlation": "pearsoncorrelation",
    "partial correlation": "partialcorrelation",
    "covariance": "covariance",
    "precision": "precision",
}
_SOURCE_ENTITIES = ("subject", "session", "task", "acquisition", "ceagent", "reconstruction",
                    "direction", "run", "echo")
_ENTITY_KEYS = {"subject": "sub", "session": "ses", "task": "task", "acquisition": "acq",
                "ceagent": "ce", "reconstruction": "rec", "direction": "dir", "run": "run",
                "echo": "echo", "space": "space", "res": "res", "den": "den"}


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------
def _subject_pattern(subject: str) -> re.Pattern:
    # "sub-01" in run keys, "sub_01" in nipype node names, "subject_01" in combined nodes.
    return re.compile(rf"(?:^|[^A-Za-z0-9])sub(?:ject)?[-_]{re.escape(subject)}(?:$|[^A-Za-z0-9])")


def subject_errors(failed: Iterable[tuple[str, str]], subject: str) -> list[dict[str, str]]:
    """The failures that concern ``subject``: its runs, and anything that names no subject.

    Parameters
    ----------
    failed : iterable of (where, error)
        A run key (``sub-01_task-rest_run-1_space-...``) or a nipype node name, and one line.
    """
    mine = _subject_pattern(subject)
    anyone = re.compile(r"(?:^|[^A-Za-z0-9])sub(?:ject)?[-_][A-Za-z0-9]+")
    out = []
    for where, error in failed:
        where, error = str(where), str(error)
        if mine.search(where) or not anyone.search(where):
            item = {"where": where, "error": error}
            if item not in out:
                out.append(item)
    return out


def record_errors(output_dir, subject: str, run_id: str, errors: Sequence[dict]) -> Path:
    """Write the errors of one processing invocation for ``subject`` (an empty list too).

    A later ``--reports-only`` shows the errors of the last processing invocation.
    """
    path = Path(output_dir) / f"sub-{subject}" / "log" / run_id / ERRORS_FILE
    return deriv.write_json(path, {"Errors": list(errors)})


def _recorded_errors(output_dir: Path, subject: str) -> list[dict[str, str]]:
    log = output_dir / f"sub-{subject}" / "log"
    if not log.is_dir():
        return []
    for folder in sorted((p for p in log.iterdir() if p.is_dir()), reverse=True):
        path = folder / ERRORS_FILE
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                return []
            items = data.get("Errors", []) if isinstance(data, dict) else []
            return [
                {"where": str(i.get("where", "")), "error": str(i.get("error", ""))}
                for i in items if isinstance(i, dict)
            ]
    return []


# --------------------------------------------------------------------------------------------
# Reading outputs
# --------------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_tsv(path: Path, **kwargs) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    return pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False, **kwargs)


def _sidecar(path: Path) -> Path:
    name = path.name
    for ext in (".nii.gz", ".tsv"):
        if name.endswith(ext):
            return path.with_name(name[: -len(ext)] + ".json")
    return path.with_suffix(".json")


def _display_key(entities: dict[str, str]) -> str:
    return "_".join(
        f"{_ENTITY_KEYS[k]}-{entities[k]}" for k in _SOURCE_ENTITIES if entities.get(k)
    )


@dataclass
class Figure:
    """A figure of the report: its path relative to the report, caption and alt text."""

    src: str
    caption: str
    alt: str
    kind: str = ""


@dataclass
class FigureWriter:
    """Writes figures under ``sub-<label>/figures`` and remembers the problems."""

    output_dir: Path
    subject: str
    problems: list[dict[str, str]] = field(default_factory=list)

    def write(self, draw, *, caption: str, alt: str, kind: str, **entities) -> Figure | None:
        """Draw (a callable returning a Figure) and save; a failure becomes a report problem."""
        extension = entities.pop("extension")
        entities.pop("subject", None)
        path = deriv.output_path(self.output_dir, "figure", subject=self.subject,
                                 extension=extension, **entities)
        try:
            figure = draw()
            deriv.write_bytes(path, fig.figure_bytes(figure, extension.lstrip(".")))
        except Exception as exc:  # one broken figure must not take the report down
            logger.debug("figure %s failed", path, exc_info=True)
            self.problems.append({"where": f"figure {path.name}",
                                  "error": f"{type(exc).__name__}: {exc}"})
            return None
        return Figure(path.relative_to(self.output_dir).as_posix(), caption, alt, kind)


# --------------------------------------------------------------------------------------------
# Background
# --------------------------------------------------------------------------------------------
def _background(settings, subject: str, space: str, res: str | None, runs) -> tuple[Any, str]:
    """The image to draw maps on and a sentence saying which it is.

    The subject's T1w in the maps' space, else a boldref of one of its runs in that space, else
    the mean of one of its BOLD runs, else nothing.
    """
    import nibabel as nib

    root = Path(settings.fmriprep_dir)
    subject_dir = root / f"sub-{subject}"
    candidates = sorted(
        subject_dir.glob(f"**/anat/sub-{subject}*_space-{space}_*desc-preproc_T1w.nii*")
    ) if subject_dir.is_dir() else []
    if res:
        candidates.sort(key=lambda p: f"_res-{res}_" not in p.name)
    for path in candidates:
        try:
            img = nib.load(path)
            return img, (f"the subject's T1w image in {space} space ({path.name}, from the "
                         "fMRIPrep dataset)")
        except Exception:  # an unreadable file just means "try the next one"
            continue
    in_space = [r for r in runs if (r.entities.get("space") or space) == space and r.bold]
    for run in in_space:
        name = Path(run.bold).name.replace("_desc-preproc_bold.nii", "_boldref.nii")
        path = Path(run.bold).with_name(name)
        if path.is_file():
            try:
                return nib.load(path), (f"the reference volume of one of the subject's BOLD runs "
                                        f"in {space} space ({path.name}, from fMRIPrep)")
            except Exception:  # try the next candidate
                continue
    for run in in_space:
        try:
            return _mean_bold(run.bold), (f"the mean of one of the subject's BOLD runs in "
                                          f"{space} space ({Path(run.bold).name}); fMRIPrep "
                                          "left no T1w or boldref in that space")
        except Exception:  # try the next candidate
            continue
    return None, (f"none: the fMRIPrep dataset has no T1w, boldref or BOLD run of this subject "
                  f"in {space} space, so the maps are drawn alone")


def _mean_bold(path) -> Any:
    import nibabel as nib

    from bids_regionx.core.bold import iter_blocks

    img = nib.load(path)
    total, count = None, 0
    for _, block in iter_blocks(img):
        block = np.asarray(block, dtype=np.float64)
        total = block.sum(axis=3) if total is None else total + block.sum(axis=3)
        count += block.shape[3]
    return nib.Nifti1Image((total / max(count, 1)).astype(np.float32), img.affine)


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------
def _atlas_section(settings, spec, subject: str, runs, writer: FigureWriter, cmap: str) -> dict:
    import nibabel as nib

    out = Path(settings.output_dir)
    atlas = {"space": spec.space, "atlas": spec.label}
    if spec.res:
        atlas["res"] = spec.res
    regions_path = deriv.output_path(out, "atlas_regions", seg="regions", suffix="probseg",
                                     extension=".nii.gz", **atlas)
    maps_path = deriv.output_path(out, "atlas_maps", suffix="probseg", extension=".nii.gz",
                                  **atlas)
    table = _read_tsv(regions_path.with_name(regions_path.name.replace(".nii.gz", ".tsv")))
    section: dict[str, Any] = {
        "id": f"atlas-{spec.label}",
        "label": spec.label,
        "space": spec.space,
        "n_maps": spec.n_maps,
        "map_names": list(spec.map_names),
        "source": Path(spec.path).name,
        "found": table is not None and regions_path.is_file(),
        "regions_file": regions_path.relative_to(out).as_posix(),
        "figures": [],
        "rows": [],
        "background": "",
        "colors": {},
    }
    if not section["found"]:
        return section
    colors = fig.region_colors(len(table), cmap)
    names = [str(n) for n in table["name"]]
    section["colors"] = {name: fig.hex_color(c) for name, c in zip(names, colors, strict=True)}
    for i, row in table.iterrows():
        section["rows"].append({
            "color": fig.hex_color(colors[i]),
            "index": row.get("index"),
            "name": str(row.get("name")),
            "map": str(row.get("map_name")),
            "n_voxels": row.get("n_voxels"),
            "volume": row.get("volume_mm3"),
            "peak": [row.get("peak_x"), row.get("peak_y"), row.get("peak_z")],
            "peak_value": row.get("peak_value"),
            "centre": [row.get("centre_x"), row.get("centre_y"), row.get("centre_z")],
        })
    background, caption = _background(settings, subject, spec.space, spec.res, runs)
    section["background"] = caption
    try:
        grid = fig.display_grid(
            maps_img=nib.load(maps_path) if maps_path.is_file() else None,
            regions_img=nib.load(regions_path),
            background_img=background,
        )
    except Exception as exc:  # shown as a problem of the report, the rest is drawn
        writer.problems.append({"where": f"atlas {spec.label}: images",
                                "error": f"{type(exc).__name__}: {exc}"})
        return section
    all_regions = list(range(len(table)))
    section["figures"].append(writer.write(
        lambda: fig.plot_map_mosaic(grid, None, all_regions, colors=colors,
                                    title=f"{spec.label}: all {len(table)} regions"),
        caption=f"All {len(table)} regions of {spec.label}, one colour each (the colours of "
                f"the region table). Background: {caption}.",
        alt=f"Axial slices of all regions of {spec.label}",
        kind="regions", space=spec.space, atlas=spec.label, seg="regions", res=spec.res,
        suffix="regions", extension=".png",
    ))
    map_index = table["map_index"].to_numpy() if "map_index" in table else np.zeros(len(table))
    digits = max(2, len(str(spec.n_maps)))
    for k in range(int(spec.n_maps)):
        members = [i for i in all_regions if int(map_index[i]) == k]
        name = spec.map_names[k] if k < len(spec.map_names) else str(k + 1)
        if grid.maps is None and not members:
            continue
        section["figures"].append(writer.write(
            lambda k=k, members=members, name=name: fig.plot_map_mosaic(
                grid, k if grid.maps is not None else None, members,
                colors=[colors[i] for i in members], names=[names[i] for i in members],
                title=f"map {k + 1}: {name}"),
            caption=(f"Map {k + 1} ({name}) of {spec.label}: the map above its extraction "
                     f"threshold (red positive, blue negative), then its "
                     f"{len(members) or 'no'} region{'s' if len(members) != 1 else ''}. "
                     f"Background: {caption}."),
            alt=f"Axial slices of map {k + 1} of {spec.label} and its regions",
            kind="map", space=spec.space, atlas=spec.label, res=spec.res,
            desc=f"map{k + 1:0{digits}d}", suffix="maps", extension=".png",
        ))
    section["figures"] = [f for f in section["figures"] if f is not None]
    return section


def _run_status(outliers_meta: dict, errors: list[dict], found: bool) -> tuple[str, str]:
    if errors:
        return "failed", "; ".join(e["error"] for e in errors)
    if not found:
        return "not processed", "no outputs found for this run"
    status = str(outliers_meta.get("RunStatus") or "used")
    reason = outliers_meta.get("DropReason")
    reason = "" if reason in (None, "") else str(reason)
    if status not in ("used", "dropped"):
        return "unknown", f"RunStatus {status!r} in the outliers sidecar" + (
            f"; {reason}" if reason else "")
    return status, reason


def _fd_series(confounds_path) -> np.ndarray | None:
    if not confounds_path:
        return None
    table = _read_tsv(Path(confounds_path))
    if table is None or "framewise_displacement" not in table:
        return None
    return pd.to_numeric(table["framewise_displacement"], errors="coerce").to_numpy(float)


def _run_section(settings, run, maps_specs, errors, writer: FigureWriter) -> dict:
    out = Path(settings.output_dir)
    source = {k: run.entities[k] for k in _SOURCE_ENTITIES if run.entities.get(k)}
    key = _display_key(source)
    outliers_path = deriv.output_path(out, "outliers", suffix="outliers", extension=".tsv",
                                      **source)
    meta = _read_json(_sidecar(outliers_path))
    outliers = _read_tsv(outliers_path)
    run_errors = [e for e in errors if _names_run(e["where"], run)]
    status, reason = _run_status(meta, run_errors, outliers is not None)
    t_r = run.t_r
    section: dict[str, Any] = {
        "id": f"run-{key}",
        "key": key,
        "status": status,
        "reason": reason,
        "bold": Path(run.bold).name,
        "meta": meta,
        "figures": [],
        "atlases": [],
        "errors": run_errors,
    }
    fd = _fd_series(run.confounds)
    if outliers is not None or fd is not None:
        reasons = {c: outliers[c].to_numpy(bool) for c in fig.REASON_COLORS
                   if outliers is not None and c in outliers}
        threshold = meta.get("FramewiseDisplacementThreshold")
        where = ("from the fMRIPrep confounds" if fd is not None
                 else "not available (no confounds table), censoring only")
        section["figures"].append(writer.write(
            lambda: fig.plot_fd(fd, reasons, threshold=threshold, t_r=t_r),
            caption=(f"Framewise displacement (FD, {where}); shaded: volumes left out, by "
                     "reason (dummy = non-steady state; fd/dvars = censored for motion; short "
                     "segment = too few consecutive volumes left)"
                     + (f"; dashed: the FD threshold ({threshold:g} mm)." if threshold else ".")),
            alt=f"Framewise displacement of {key}",
            kind="fd", suffix="fd", extension=".svg", **source,
        ))
    censored = outliers["censored"].to_numpy(bool) if outliers is not None and \
        "censored" in outliers else None
    for spec in maps_specs:
        section["atlases"].append(
            _run_atlas(settings, spec, run.output_entities(spec), writer,
                       censored=censored, t_r=t_r, title=key)
        )
    section["figures"] = [f for f in section["figures"] if f is not None]
    return section


def _names_run(where: str, run) -> bool:
    # Run keys as given by collect_runs, or nipype node names derived from them.
    flat = re.sub(r"[^0-9A-Za-z]+", "_", run.key).strip("_")
    return where == run.key or run.key in where or flat in where


def _run_atlas(settings, spec, entities: dict, writer: FigureWriter, *, censored, t_r,
               title: str) -> dict:
    out = Path(settings.output_dir)
    ts_path = deriv.output_path(out, "region_timeseries", stat="mean", suffix="timeseries",
                                extension=".tsv", **entities)
    cov_path = deriv.output_path(out, "coverage", stat="coverage", suffix="bold",
                                 extension=".tsv", **entities)
    fig_entities = {k: v for k, v in entities.items()}
    series = _read_tsv(ts_path)
    ts_meta = _read_json(_sidecar(ts_path))
    block: dict[str, Any] = {
        "label": spec.label,
        "timeseries": ts_path.relative_to(out).as_posix() if series is not None else None,
        "n_volumes": None if series is None else len(series),
        "regions_na": list(ts_meta.get("RegionsSetToNA") or []),
        "figures": [],
    }
    if series is not None:
        names = [str(c) for c in series.columns]
        block["figures"].append(writer.write(
            lambda: fig.plot_carpet(series.to_numpy(float), names, censored=censored, t_r=t_r),
            caption=("Region time series (rows, each z-scored; grey scale) over the run; pale "
                     "red columns: volumes left out; blue-grey rows: regions set to n/a."),
            alt=f"Carpet plot of the region time series of {title} ({spec.label})",
            kind="carpet", suffix="carpet", extension=".png", **fig_entities,
        ))
    coverage = _read_tsv(cov_path)
    if coverage is not None and {"name", "coverage", "used"} <= set(coverage.columns):
        min_cov = _read_json(_sidecar(cov_path)).get("MinimumCoverage")
        block["regions_na"] = block["regions_na"] or [
            str(n) for n, u in zip(coverage["name"], coverage["used"], strict=True) if not u
        ]
        block["figures"].append(writer.write(
            lambda: fig.plot_coverage([str(n) for n in coverage["name"]],
                                      coverage["coverage"].to_numpy(float),
                                      coverage["used"].to_numpy(bool), min_coverage=min_cov),
            caption=("Fraction of each region's weight inside the run's brain mask; red bars: "
                     "regions below the minimum, set to n/a."),
            alt=f"Region coverage of {title} ({spec.label})",
            kind="coverage", suffix="coverage", extension=".svg", **fig_entities,
        ))
    for stat, label in STATS.items():
        for desc in (None, "fisherz"):
            path = deriv.output_path(out, "relmat", stat=stat, desc=desc, suffix="relmat",
                                     extension=".tsv", **entities)
            matrix = _read_tsv(path, index_col=0)
            if matrix is None:
                continue
            rel_meta = _read_json(_sidecar(path))
            measure = label + (" (Fisher z)" if desc else "")
            block["figures"].append(writer.write(
                lambda matrix=matrix, rel_meta=rel_meta, measure=measure: fig.plot_relmat(
                    matrix.to_numpy(float), [str(c) for c in matrix.columns], measure=measure,
                    valid_diagonal=bool(rel_meta.get("ValidDiagonal", False))),
                caption=f"Connectome: {measure} between the region time series "
                        "(grey: n/a or diagonal).",
                alt=f"Connectivity matrix ({measure}) of {title} ({spec.label})",
                kind="relmat", stat=stat, desc=desc, suffix="relmat", extension=".svg",
                **fig_entities,
            ))
    block["figures"] = [f for f in block["figures"] if f is not None]
    return block


def _combined_sections(settings, runs, maps_specs, writer: FigureWriter) -> list[dict]:
    """Concatenated-runs outputs (``--combine-runs``): one per subject/session/task/space."""
    if not settings.connectivity.combine_runs:
        return []
    groups: dict[tuple, list] = {}
    for run in runs:
        if run.entities.get("run") is None or run.problem:
            continue
        group = tuple(sorted((k, v) for k, v in run.entities.items() if k != "run" and v))
        groups.setdefault(group, []).append(run)
    sections = []
    for members in groups.values():
        first = members[0]
        source = {k: first.entities[k] for k in _SOURCE_ENTITIES
                  if first.entities.get(k) and k != "run"}
        key = _display_key(source)
        atlases = []
        for spec in maps_specs:
            entities = first.output_entities(spec)
            entities.pop("run", None)
            atlases.append(_run_atlas(settings, spec, entities, writer, censored=None,
                                      t_r=first.t_r, title=f"{key} (runs combined)"))
        if any(a["timeseries"] for a in atlases):
            sections.append({"id": f"combined-{key}", "key": key,
                             "runs": [_display_key(dict(r.entities)) for r in members],
                             "atlases": atlases})
    return sections


# --------------------------------------------------------------------------------------------
# Page
# --------------------------------------------------------------------------------------------
def _summary(run_sections: Sequence[dict]) -> dict[str, int]:
    counts = {"found": len(run_sections), "used": 0, "dropped": 0, "failed": 0,
              "not processed": 0}
    for section in run_sections:
        counts[section["status"]] = counts.get(section["status"], 0) + 1
    return counts


def participant_context(settings, maps_specs, subject: str, runs, *, failed=(),
                        cmap: str = fig.DEFAULT_CMAP) -> dict[str, Any]:
    """Everything the participant template shows (figures are written as a side effect)."""
    from bids_regionx import __version__
    from bids_regionx.reports.boilerplate import methods_for

    out = Path(settings.output_dir)
    runs = sorted((r for r in runs if r.entities.get("subject") == subject),
                  key=lambda r: _natural(r.key))
    errors = subject_errors(
        [*failed, *((e["where"], e["error"]) for e in _recorded_errors(out, subject))], subject
    )
    writer = FigureWriter(out, subject)
    atlases = [_atlas_section(settings, spec, subject, runs, writer, cmap) for spec in maps_specs]
    run_sections = [_run_section(settings, run, maps_specs, errors, writer) for run in runs]
    combined = _combined_sections(settings, runs, maps_specs, writer)
    try:
        methods = methods_for(settings, maps_specs).html_fragment(heading_offset=2,
                                                                  id_prefix="ref-")
    except Exception as exc:  # the report still shows everything else
        writer.problems.append({"where": "methods text", "error": f"{type(exc).__name__}: {exc}"})
        methods = ""
    return {
        "subject": subject,
        "version": __version__,
        "summary": _summary(run_sections),
        "runs": run_sections,
        "combined": combined,
        "atlases": atlases,
        "errors": errors,
        "problems": writer.problems,
        "methods": methods,
        "options": {
            "denoise_strategy": Path(str(settings.denoise.strategy)).name,
            "measures": list(settings.connectivity.measures),
            "min_coverage": settings.denoise.min_coverage,
        },
    }


def _natural(text: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def write_participant_report(settings, maps_specs, subject: str, *, runs=None, failed=(),
                             cmap: str = fig.DEFAULT_CMAP) -> Path:
    """Write ``sub-<subject>.html`` and its figures from the outputs and inputs on disk.

    Parameters
    ----------
    settings : bids_regionx.config.Settings
    maps_specs : sequence of bids_regionx.io.maps.MapsSpec
    subject : str
        Label without ``sub-``.
    runs : sequence of bids_regionx.io.queries.RunInputs, optional
        The runs found for the selection (with their problems); default: queried again.
    failed : iterable of (where, error)
        Failures of this invocation (run keys or nipype node names, one-line errors).
    cmap : str
        Colormap the region colours are drawn from.

    Returns
    -------
    Path
        The report.
    """
    if runs is None:
        from bids_regionx.io.queries import collect_runs

        runs = collect_runs(settings, maps_space=maps_specs[0].space if maps_specs else None)
    context = participant_context(settings, maps_specs, subject, runs, failed=failed, cmap=cmap)
    html = html_environment().get_template("participant.html").render(**context)
    return deriv.write_text(Path(settings.output_dir) / f"sub-{subject}.html", html)


def write_failed_report(output_dir, subject: str, exc: BaseException) -> Path:
    """A minimal ``sub-<subject>.html`` saying that the report could not be built, and why."""
    from bids_regionx import __version__

    html = html_environment().get_template("failed.html").render(
        subject=subject,
        version=__version__,
        error=f"{type(exc).__name__}: {exc}",
        details="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    )
    return deriv.write_text(Path(output_dir) / f"sub-{subject}.html", html)
