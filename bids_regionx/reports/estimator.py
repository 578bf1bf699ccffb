"""``RegionExtractor.generate_report``: nilearn's masker report, without script or network.

Same checks, warnings and texts as nilearn 0.14's ``NiftiMapsMasker`` report (spec
``region-extraction.md`` §9): ``displayed_maps`` (an int, ``"all"``, a list or an integer
array) picks the maps -- for ``RegionExtractor`` the *regions*, ``maps_img_`` -- to show, with
nilearn's warnings when some are not available, and a ``TypeError`` for anything else; the
warnings are listed in the report (sorted, without duplicates) and raised as ``UserWarning``.

Differences, all additions: figures are drawn with matplotlib by :mod:`.figures` (one
orthogonal view per displayed region on the middle volume of the image given to ``fit``, or
alone when there was none -- nilearn uses the MNI template, which is not shipped here), an
overview of the displayed regions in the colours of ``cmap``, and a table of their parent map,
size and coordinates. The page shows every figure at once (nilearn's carousel needs
JavaScript), embeds them as ``data:`` URIs and has no script at all.
"""

from __future__ import annotations

import datetime
import numbers
import tempfile
import threading
import warnings
import webbrowser
from pathlib import Path

import numpy as np
from markupsafe import Markup

__all__ = [
    "DISABLED_AT_FIT_MSG",
    "HTMLReport",
    "NOT_ENABLED_MSG",
    "NO_IMAGE_MSG",
    "UNFITTED_MSG",
    "build_report",
    "check_displayed_maps",
    "sanitize_displayed_maps",
]

UNFITTED_MSG = (
    "\nThis estimator has not been fit yet.\nMake sure to run `fit` before inspecting reports."
)
NOT_ENABLED_MSG = "\nReport generation not enabled!\nNo visual outputs created."
DISABLED_AT_FIT_MSG = (
    "\nReport generation was disabled when fit was run. No reporting data is available.\n"
    "Make sure to set self.reports=True before fit."
)
MISSING_ENGINE_MSG = (
    "\nNo plotting back-end detected. Report will be missing figures.\n"
    "Install back-ends with:\n    pip install matplotlib"
)
NO_IMAGE_MSG = (
    "No image provided to fit in {name}. Plotting only spatial maps for reporting."
)
LIST_OF_4D_MSG = (
    "A list of 4D subject images were provided to fit. Only first subject is shown in the "
    "report."
)
DESCRIPTION = "This report shows the spatial maps provided to the mask."
TRANSFORM_NOTE = (
    "This report was generated based on information provided at instantiation and fit time. "
    "Note that the masker can potentially perform resampling at transform time."
)


class HTMLReport:
    """An HTML report: a standalone page and the body shown in notebooks.

    Parameters
    ----------
    body : str
        The report content (with its own scoped style), as shown by Jupyter.
    html : str
        The full page (``<!DOCTYPE html>``...), as saved or opened in a browser.
    """

    def __init__(self, body: str, html: str):
        self.body = body
        self.html = html

    def _repr_html_(self) -> str:
        """The body (Jupyter calls this to display the report in a notebook)."""
        return self.body

    def __str__(self) -> str:
        return self.body

    def get_standalone(self) -> str:
        """The full page."""
        return self.html

    def save_as_html(self, file_name) -> None:
        """Save the full page to ``file_name`` (UTF-8)."""
        Path(file_name).write_text(self.html, encoding="utf-8")

    def open_in_browser(self, file_name=None, temp_file_lifetime: float | None = 30) -> Path:
        """Save the page and open it in the default web browser (nothing is downloaded).

        Parameters
        ----------
        file_name : path, optional
            Where to save the page; default: a new temporary file, deleted after
            ``temp_file_lifetime`` seconds (None keeps it).
        temp_file_lifetime : float or None

        Returns
        -------
        Path
            The file opened.
        """
        if file_name is None:
            handle = tempfile.NamedTemporaryFile(
                "w", suffix=".html", prefix="bids_regionx_report_", delete=False,
                encoding="utf-8",
            )
            with handle:
                handle.write(self.html)
            path = Path(handle.name)
            if temp_file_lifetime is not None:
                timer = threading.Timer(temp_file_lifetime, path.unlink,
                                        kwargs={"missing_ok": True})
                timer.daemon = True
                timer.start()
        else:
            path = Path(file_name)
            self.save_as_html(path)
        webbrowser.open(path.resolve().as_uri())
        return path


def check_displayed_maps(displayed_maps, var_name: str = "displayed_maps") -> None:
    """Raise nilearn's TypeError unless ``displayed_maps`` is ``"all"``, an int, or a list or
    array of ints (numpy integer scalars and integer arrays of any width are accepted)."""
    def is_int(value) -> bool:
        return isinstance(value, numbers.Integral)

    if isinstance(displayed_maps, np.ndarray):
        ok = displayed_maps.dtype.kind in "iu"
    elif isinstance(displayed_maps, list):
        ok = all(is_int(i) for i in displayed_maps)
    elif isinstance(displayed_maps, str):
        ok = displayed_maps == "all"
    else:
        ok = is_int(displayed_maps)
    if not ok:
        input_type = displayed_maps.__class__.__name__
        if isinstance(displayed_maps, (np.ndarray, list)):
            input_type = (
                f"{displayed_maps.__class__.__name__} "
                f"of { {i.__class__.__name__ for i in displayed_maps} }"
            )
        raise TypeError(
            f"Parameter '{var_name}' of ``generate_report()`` should be either 'all' or a "
            f"positive 'int', or a list/array of ints. You provided a {input_type}."
        )


def sanitize_displayed_maps(displayed_maps, n_maps: int, var_name: str = "map"):
    """The map indices to show, in order, and nilearn's warnings about the others.

    Returns
    -------
    maps : list of int
    messages : list of str
    """
    messages = []
    if isinstance(displayed_maps, str) and displayed_maps == "all":
        displayed_maps = n_maps
    if isinstance(displayed_maps, numbers.Integral):
        displayed_maps = int(displayed_maps)
        if n_maps < displayed_maps:
            messages.append(
                "`generate_report()` received "
                f"'displayed_{var_name}s={displayed_maps}' to be displayed. "
                f"But masker only has {n_maps} {var_name}(s). "
                f"'displayed_{var_name}s' was set to {n_maps}."
            )
            displayed_maps = n_maps
        displayed_maps = list(range(displayed_maps))
    if isinstance(displayed_maps, np.ndarray):
        displayed_maps = displayed_maps.tolist()
    displayed_maps = [int(i) for i in displayed_maps]
    unavailable = [i for i in displayed_maps if not 0 <= i < n_maps]
    kept = [i for i in displayed_maps if 0 <= i < n_maps]
    if unavailable:
        messages.append(
            "`generate_report()` received "
            f"'displayed_{var_name}s={kept}' to be displayed. "
            f"Report cannot display the following {var_name} {unavailable} because "
            f"masker only has {n_maps} {var_name}(s)."
        )
    return kept, messages


def _docstring_summary(estimator) -> str:
    doc = type(estimator).__doc__ or ""
    return doc.split("Parameters\n")[0].strip()


def _describe(value) -> str:
    import nibabel as nib

    if isinstance(value, nib.spatialimages.SpatialImage):
        name = value.get_filename()
        shape = "x".join(str(n) for n in value.shape)
        return f"{type(value).__name__}({shape}{', ' + name if name else ''})"
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def _parameters(estimator) -> list[tuple[str, str]]:
    return [(name, _describe(value))
            for name, value in sorted(estimator.get_params(deep=False).items())]


def _figures(estimator, data: dict, maps: list[int]) -> tuple[list[dict], list[dict]]:
    """Overview and per-map figures (data URIs) and the table rows of the displayed maps."""
    from bids_regionx.core.images import get_data
    from bids_regionx.core.region_table import region_table
    from bids_regionx.reports import figures as fig

    maps_img = data["maps_image"]
    index = list(getattr(estimator, "index_", range(maps_img.shape[3])))
    grid = fig.display_grid(regions_img=maps_img, background_img=data["images"])
    colors = fig.region_colors(maps_img.shape[3], estimator.cmap)
    shown = []
    if maps:
        overview = fig.plot_map_mosaic(grid, None, maps, colors=[colors[i] for i in maps],
                                       title="displayed maps")
        shown.append({"src": fig.figure_data_uri(overview, "png"),
                      "caption": "The displayed maps, one colour each (as in the table).",
                      "alt": "Axial slices of the displayed maps"})
    for i in maps:
        parent = index[i] if i < len(index) else "?"
        figure = fig.plot_region_ortho(grid, i, color=colors[i],
                                       title=f"map {i} (from input map {parent})")
        shown.append({"src": fig.figure_data_uri(figure, "svg"),
                      "caption": f"Map {i}, extracted from input map {parent}.",
                      "alt": f"Orthogonal slices through the peak of map {i}"})
    n_parents = (max(index) + 1) if index else 0
    table = region_table(get_data(maps_img), maps_img.affine, index,
                         [str(k) for k in range(n_parents)])
    rows = []
    for i in maps:
        row = table.iloc[i]
        rows.append({
            "map": i,
            "color": fig.hex_color(colors[i]),
            "parent": index[i] if i < len(index) else None,
            "n_voxels": row["n_voxels"],
            "volume": row["volume_mm3"],
            "peak": [row["peak_x"], row["peak_y"], row["peak_z"]],
            "centre": [row["centre_x"], row["centre_y"], row["centre_z"]],
        })
    return shown, rows


def build_report(estimator, *, displayed_maps=10, engine: str = "matplotlib",
                 title: str | None = None) -> HTMLReport:
    """The report of a :class:`~bids_regionx.RegionExtractor` (see the module docstring)."""
    import importlib.util

    from bids_regionx import __version__
    from bids_regionx.reports.templating import html_environment

    if engine != "matplotlib":
        raise ValueError(f"engine: only 'matplotlib' is available, got {engine!r}")
    name = type(estimator).__name__
    messages: list[str] = []
    fitted = estimator.__sklearn_is_fitted__()
    data = getattr(estimator, "_reporting_data", None) if fitted else None
    if estimator.reports is False:
        messages.append(NOT_ENABLED_MSG)
    if not fitted:
        messages.append(UNFITTED_MSG)
    elif data is None:
        messages.append(DISABLED_AT_FIT_MSG)
    has_engine = importlib.util.find_spec("matplotlib") is not None
    if not has_engine:
        messages.append(MISSING_ENGINE_MSG)
    n_maps = None
    maps: list[int] = []
    if data is not None:
        check_displayed_maps(displayed_maps)
        n_maps = int(data["maps_image"].shape[3])
        maps, extra = sanitize_displayed_maps(displayed_maps, n_maps)
        messages += extra
        if data["images"] is None:
            messages.append(NO_IMAGE_MSG.format(name=name))
        elif data.get("dim") == 5:
            messages.append(LIST_OF_4D_MSG)
    figures, rows = ([], [])
    if data is not None and has_engine:
        figures, rows = _figures(estimator, data, maps)
    report_warnings = sorted(set(messages))
    for message in report_warnings:
        warnings.warn(message, UserWarning, stacklevel=3)
    title = title if title is not None else name
    context = {
        "title": title,
        "page_title": f"{title} report",
        "docstring": _docstring_summary(estimator),
        "description": DESCRIPTION,
        "transform_note": TRANSFORM_NOTE,
        "number_of_maps": n_maps,
        "n_displayed": len(maps),
        "has_plotting_engine": has_engine,
        "figures": figures,
        "rows": rows,
        "parameters": _parameters(estimator),
        "warnings": report_warnings,
        "date": datetime.datetime.now().replace(microsecond=0).isoformat(),
        "version": __version__,
    }
    env = html_environment()
    body = env.get_template("estimator_body.html").render(**context)
    # ``body`` is the output of an autoescaped template: mark it as such, not escape it twice.
    page = env.get_template("estimator_page.html").render(body=Markup(body), **context)
    return HTMLReport(body, page)
