"""``group.html``: the group-level report (template ``templates/group.html``).

One page, readable without scripts or network, with the participant report's look
(:func:`~bids_regionx.reports.templating.html_environment`: autoescaping, strict undefined, a
Content-Security-Policy that forbids scripts and fetches): a summary (participants, runs used and
not used, anything that failed), the participants missing outputs or refused, the regions of each
atlas once, the QC table of every run with the distributions of mean FD and of the volumes kept,
and a heatmap of every group connectome. Figures are deterministic SVG
(:mod:`bids_regionx.reports.figures`) embedded as ``data:`` URIs, so the page is one file.

Everything comes from the :class:`~bids_regionx.cli.group.GroupResult` of the run (no time
stamps): the same output dir gives the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["render_group_report", "write_group_report"]

#: Columns of the regions table shown in the report (when the table has them).
_REGION_COLUMNS = ("index", "name", "map_name", "n_voxels", "volume_mm3", "peak_x", "peak_y",
                   "peak_z", "peak_value")
_MEASURE_LABELS = {
    "pearsoncorrelation": "Pearson correlation",
    "partialcorrelation": "partial correlation",
    "covariance": "covariance",
    "precision": "precision",
    "tangent": "covariance",
}


def write_group_report(result, *, path: str | os.PathLike | None = None) -> Path:
    """Render the report of a group run and write it atomically.

    Parameters
    ----------
    result : bids_regionx.cli.group.GroupResult
    path : path, optional
        Default ``<output_dir>/group.html``.

    Returns
    -------
    Path
    """
    from bids_regionx.io.derivatives import write_text

    target = Path(path) if path is not None else Path(result.output_dir) / "group.html"
    return write_text(target, render_group_report(result))


def render_group_report(result) -> str:
    """The HTML text of ``group.html`` for a :class:`~bids_regionx.cli.group.GroupResult`."""
    from bids_regionx import __version__
    from bids_regionx.reports.templating import html_environment

    context = _context(result)
    context["version"] = __version__
    return html_environment().get_template("group.html").render(**context)


# --------------------------------------------------------------------------------------------
# Context
# --------------------------------------------------------------------------------------------
def _context(result) -> dict[str, Any]:
    root = Path(result.output_dir)
    qc_sections = []
    n_runs = n_used = 0
    for atlas, frame in sorted(result.qc.items()):
        columns = list(frame.columns)
        used = int((frame["used"] == 1).sum()) if len(frame) else 0
        # Every atlas table lists the same runs; the largest counts are the run totals.
        n_runs, n_used = max(n_runs, len(frame)), max(n_used, used)
        reasons: dict[str, int] = {}
        for value in frame["reason"]:
            if isinstance(value, str) and value:
                reasons[value] = reasons.get(value, 0) + 1
        qc_sections.append({
            "atlas": f"atlas-{atlas}",
            "file": _rel(result.qc_files[atlas], root),
            "columns": columns,
            "rows": [
                {"cells": [_cell(v) for v in row], "used": row[columns.index("used")] == 1}
                for row in frame.itertuples(index=False, name=None)
            ],
            "n_runs": len(frame),
            "n_used": used,
            "reasons": sorted(reasons.items(), key=lambda item: (-item[1], item[0])),
            "figure": _qc_figure(frame) if len(frame) else None,
        })
    unit = ("subject (each subject's runs averaged first; every subject counts once)"
            if result.unit == "subject" else "run (every used run counts once)")
    return {
        "output_dir": str(root),
        "unit": unit,
        "measures": result.measures,
        "options_hash": result.recorded.get("OutputHash", "unknown"),
        "recorded_version": result.recorded.get("Version", "unknown"),
        "participants": [f"sub-{s}" for s in result.participants],
        "missing": [f"sub-{s}" for s in result.missing],
        "refused": [(f"sub-{s}", reason) for s, reason in sorted(result.refused.items())],
        "unverified": [f"sub-{s}" for s in result.unverified],
        "problems": list(result.problems),
        "n_runs": n_runs,
        "n_used": n_used,
        "regions": [_regions_section(item, root) for item in result.regions],
        "qc": qc_sections,
        "connectomes": [_connectome_section(c, root, result.unit) for c in result.connectomes],
    }


def _rel(path: Path, root: Path) -> str:
    return Path(path).relative_to(root).as_posix()


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, (float, np.floating)) and value != value):
        return "n/a"
    if isinstance(value, (float, np.floating)):
        number = float(value)
        return str(int(number)) if number.is_integer() and abs(number) < 1e6 else f"{number:.4g}"
    return str(value)


def _regions_section(item, root: Path) -> dict[str, Any]:
    frame = item.frame
    columns = [c for c in _REGION_COLUMNS if c in frame.columns]
    return {
        "title": f"atlas-{item.atlas} seg-{item.seg} space-{item.space}"
        + (f" res-{item.res}" if item.res else ""),
        "file": _rel(item.table, root),
        "columns": columns,
        "rows": [[_cell(v) for v in row] for row in frame[columns].itertuples(index=False)],
        "n_regions": len(frame),
    }


def _connectome_section(c, root: Path, unit: str) -> dict[str, Any]:
    entities = [("task", c.task), ("space", c.space), ("atlas", c.atlas), ("seg", c.seg),
                ("res", c.res), ("den", c.den)]
    title = " ".join(f"{k}-{v}" for k, v in entities if v) + f" stat-{c.stat}"
    finite = c.count[c.count > 0]
    n_units = len(c.participants) if unit == "subject" else c.n_runs
    if c.stat == "tangent":
        caption = (f"Tangent-space reference: the geometric mean of the covariance matrices of "
                   f"{n_units} {unit}s (desc-reference); each {unit}'s tangent connectome is "
                   "under group/sub-<label>/.")
    elif c.stat in ("pearsoncorrelation", "partialcorrelation"):
        caption = (f"Group mean over {n_units} {unit}s: Fisher z averaged edge by edge, then "
                   "tanh (desc-mean; the mean of z is desc-fisherz).")
    else:
        caption = f"Group mean over {n_units} {unit}s: arithmetic mean edge by edge (desc-mean)."
    return {
        "title": title,
        "caption": caption,
        "n_runs": c.n_runs,
        "n_subjects": len(c.participants),
        "count_min": int(finite.min()) if finite.size else 0,
        "count_max": int(finite.max()) if finite.size else 0,
        "count_unit": f"{unit}s",
        "files": [_rel(p, root) for p in c.files
                  if str(p).endswith(".tsv") and Path(p).parent == root / "group"],
        "figure": _heatmap(c.mean, c.names, stat=c.stat),
    }


# --------------------------------------------------------------------------------------------
# Figures (deterministic SVG as data: URIs, so group.html is one file)
# --------------------------------------------------------------------------------------------
def _heatmap(matrix: np.ndarray, names, *, stat: str) -> str:
    from bids_regionx.reports.figures import figure_data_uri, plot_relmat

    figure = plot_relmat(matrix, list(names), measure=_MEASURE_LABELS[stat],
                         valid_diagonal=stat in ("covariance", "precision", "tangent"))
    return figure_data_uri(figure, "svg")


def _qc_figure(frame) -> str:
    from matplotlib.figure import Figure

    from bids_regionx.reports.figures import figure_data_uri

    fig = Figure(figsize=(7.0, 2.2))
    axes = fig.subplots(1, 2)
    used = (frame["used"] == 1).to_numpy()
    for ax, column, xlabel in (
        (axes[0], "mean_fd", "mean FD (mm)"),
        (axes[1], "n_volumes_kept", "volumes kept"),
    ):
        values = np.array([np.nan if v is None else float(v) for v in frame[column]])
        ok = np.isfinite(values)
        if ok.any():
            bins = np.histogram_bin_edges(values[ok], bins=min(20, max(5, int(ok.sum()))))
            ax.hist([values[ok & used], values[ok & ~used]], bins=bins, stacked=True,
                    color=["#4c78a8", "#d62728"], label=["used", "not used"])
            ax.legend(frameon=False, fontsize=6)
        ax.set_xlabel(xlabel, fontsize=7)
        ax.set_ylabel("runs", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return figure_data_uri(fig, "svg")
