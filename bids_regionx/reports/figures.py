"""Report figures with matplotlib (no pyplot, no nilearn): arrays in, figures out.

Every plotting function takes plain arrays (already read from the outputs) and returns a
:class:`matplotlib.figure.Figure`; :func:`figure_bytes` turns it into deterministic SVG (fixed
hash salt, no date) or PNG (no software tag) bytes. Text is never parsed as mathtext, so region
names such as ``"$5"`` draw as written. Images go through :func:`display_grid`, which puts
maps, regions and a background on one RAS-oriented grid so that slices show the left hemisphere
on the left ("neurological" convention, labelled).
"""

from __future__ import annotations

import base64
import contextlib
import io
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import matplotlib
import nibabel as nib
import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "DEFAULT_CMAP",
    "DisplayGrid",
    "display_grid",
    "figure_bytes",
    "figure_data_uri",
    "plot_carpet",
    "plot_coverage",
    "plot_fd",
    "plot_map_mosaic",
    "plot_region_ortho",
    "plot_relmat",
    "region_colors",
]

#: Colormap that region colours are drawn from (the estimator's ``cmap`` default).
DEFAULT_CMAP = "CMRmap_r"
_RC = {
    "svg.hashsalt": "bids_regionx",
    "svg.fonttype": "none",
    "text.parse_math": False,
    "text.usetex": False,
    "font.family": "DejaVu Sans",
    "font.size": 7.0,
    "axes.titlesize": 8.0,
    "axes.labelsize": 7.0,
    "xtick.labelsize": 6.0,
    "ytick.labelsize": 6.0,
    "legend.fontsize": 6.0,
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "path.simplify": True,
}
#: Colours of the reasons a volume is censored (outliers TSV columns).
REASON_COLORS = {
    "dummy": "#9e9e9e",
    "fd": "#d62728",
    "dvars": "#ff7f0e",
    "short_segment": "#9467bd",
}
_CENSORED_RGB = np.array([0.96, 0.78, 0.76])
_NA_RGB = np.array([0.80, 0.84, 0.90])
_MAX_TICK_LABELS = 40


@contextlib.contextmanager
def _style() -> Iterator[None]:
    with matplotlib.rc_context(_RC):
        yield


def figure_bytes(fig: Figure, fmt: str) -> bytes:
    """The figure as ``"svg"`` or ``"png"`` bytes, identical for identical figures."""
    stream = io.BytesIO()
    with _style():
        if fmt == "svg":
            fig.savefig(stream, format="svg", metadata={"Date": None}, bbox_inches="tight")
        elif fmt == "png":
            fig.savefig(stream, format="png", metadata={"Software": None}, bbox_inches="tight",
                        pil_kwargs={"compress_level": 6})
        else:
            raise ValueError(f"fmt: expected 'svg' or 'png', got {fmt!r}")
    return stream.getvalue()


def figure_data_uri(fig: Figure, fmt: str = "svg") -> str:
    """The figure as a ``data:`` URI (for reports that must be a single file)."""
    mime = {"svg": "image/svg+xml", "png": "image/png"}[fmt]
    payload = base64.b64encode(figure_bytes(fig, fmt)).decode("ascii")
    return f"data:{mime};base64,{payload}"


def region_colors(n: int, cmap: str = DEFAULT_CMAP) -> list[tuple[float, float, float]]:
    """``n`` distinct RGB colours from ``cmap``, avoiding its near-white and near-black ends.

    Consecutive regions get colours far apart along the colormap (a golden-ratio walk), so
    neighbouring regions of one map stay distinguishable.
    """
    colormap = matplotlib.colormaps[cmap]
    if n <= 0:
        return []
    positions = (np.arange(n) * 0.6180339887498949) % 1.0
    positions = 0.15 + 0.7 * positions
    return [tuple(float(v) for v in colormap(p)[:3]) for p in positions]


def hex_color(rgb: Sequence[float]) -> str:
    """``#rrggbb`` of an RGB triple in [0, 1]."""
    return "#" + "".join(f"{int(round(255 * min(max(v, 0.0), 1.0))):02x}" for v in rgb[:3])


# --------------------------------------------------------------------------------------------
# Grids
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DisplayGrid:
    """Images on one RAS-oriented voxel grid, ready to slice.

    Attributes
    ----------
    maps : ndarray, shape (x, y, z, n_maps) or None
    regions : ndarray, shape (x, y, z, n_regions) or None
    background : ndarray, shape (x, y, z) or None
    affine : ndarray, shape (4, 4)
        Voxel-to-mm affine of the grid (axes increase to the right, front and top).
    """

    maps: np.ndarray | None
    regions: np.ndarray | None
    background: np.ndarray | None
    affine: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        for data in (self.regions, self.maps, self.background):
            if data is not None:
                return tuple(data.shape[:3])
        raise ValueError("DisplayGrid: no image")

    def extent(self, axes: tuple[int, int]) -> tuple[float, float, float, float]:
        """``imshow`` extent (mm) of a slice spanning grid ``axes`` (horizontal, vertical)."""
        lo, hi = [], []
        for axis in axes:
            step = float(np.linalg.norm(self.affine[:3, axis]))
            origin = float(self.affine[axis, 3])
            n = self.shape[axis]
            lo.append(origin - step / 2)
            hi.append(origin + (n - 0.5) * step)
        return (lo[0], hi[0], lo[1], hi[1])

    def world(self, axis: int, index: int) -> float:
        """mm coordinate of a slice index along ``axis``."""
        return float(self.affine[axis, 3] + index * np.linalg.norm(self.affine[:3, axis]))


def _canonical(img: nib.spatialimages.SpatialImage) -> nib.spatialimages.SpatialImage:
    return nib.as_closest_canonical(img)


def display_grid(
    *,
    maps_img=None,
    regions_img=None,
    background_img=None,
) -> DisplayGrid:
    """Put maps, regions and a background on one RAS grid (that of the regions, or the maps).

    The background is resampled (trilinear) onto it; without maps or regions the background's
    own grid is used.
    """
    from bids_regionx.core.images import get_data
    from bids_regionx.core.resampling import resample_img

    reference = regions_img if regions_img is not None else maps_img
    maps = regions = background = None
    if reference is not None:
        reference = _canonical(reference)
        affine = reference.affine
        shape = reference.shape[:3]
    if regions_img is not None:
        regions = np.asarray(get_data(_canonical(regions_img)), dtype=np.float32)
        if regions.ndim == 3:
            regions = regions[..., np.newaxis]
    if maps_img is not None:
        maps_canonical = _canonical(maps_img)
        if reference is not None and not np.allclose(maps_canonical.affine, affine):
            maps_canonical = resample_img(maps_canonical, affine, shape, interpolation="linear")
        maps = np.asarray(get_data(maps_canonical), dtype=np.float32)
        if maps.ndim == 3:
            maps = maps[..., np.newaxis]
    if background_img is not None:
        bg = background_img
        if len(bg.shape) == 4:
            bg = bg.slicer[..., 0]
        bg = _canonical(bg)
        if reference is None:
            affine, shape = bg.affine, bg.shape[:3]
        else:
            bg = resample_img(bg, affine, shape, interpolation="linear")
        background = np.asarray(get_data(bg), dtype=np.float32)
        background = np.nan_to_num(background, nan=0.0, posinf=0.0, neginf=0.0)
    if reference is None and background_img is None:
        raise ValueError("display_grid: give at least one image")
    return DisplayGrid(maps, regions, background, np.asarray(affine, dtype=float))


def choose_slices(support: np.ndarray, n: int = 7, *, centres: Sequence[int] = ()) -> list[int]:
    """Axial slice indices covering ``support`` (a boolean volume), at most ``n``.

    The slices through ``centres`` (e.g. each region's centre) come first, then evenly spaced
    slices across the support fill the remaining places.
    """
    zs = np.flatnonzero(support.any(axis=(0, 1)))
    if zs.size == 0:
        zs = np.arange(support.shape[2])
    chosen: list[int] = []
    for z in centres:
        if len(chosen) < n and int(z) not in chosen:
            chosen.append(int(z))
    if len(chosen) > n:
        chosen = chosen[:: max(1, len(chosen) // n)][:n]
    for z in np.linspace(zs[0], zs[-1], num=n).round().astype(int):
        if len(chosen) >= n:
            break
        if not any(abs(int(z) - c) < 2 for c in chosen):
            chosen.append(int(z))
    return sorted(chosen)


def _background_limits(background: np.ndarray | None) -> tuple[float, float]:
    if background is None:
        return (0.0, 1.0)
    values = background[background != 0]
    if values.size == 0:
        return (0.0, 1.0)
    low, high = np.percentile(values, [2.0, 98.0])
    return (float(low), float(high) if high > low else float(low) + 1.0)


def _regions_rgba(regions: np.ndarray, colors: Sequence[Sequence[float]], alpha: float = 0.85):
    """RGBA image of regions (last axis = regions) in their colours; empty voxels transparent."""
    shape = regions.shape[:-1]
    rgba = np.zeros(shape + (4,), dtype=np.float32)
    weight = np.abs(regions)
    strongest = np.argmax(weight, axis=-1)
    inside = weight.max(axis=-1) > 0
    palette = np.asarray([list(c)[:3] for c in colors], dtype=np.float32).reshape(-1, 3)
    if palette.size:
        rgba[..., :3] = palette[strongest]
    rgba[..., 3] = np.where(inside, alpha, 0.0)
    return rgba


def _panel(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_facecolor("black")


def _slice(data: np.ndarray, axis: int, index: int) -> np.ndarray:
    """A 2D slice, transposed for ``imshow(origin="lower")``."""
    return np.take(data, index, axis=axis).T if data.ndim == 3 else np.swapaxes(
        np.take(data, index, axis=axis), 0, 1
    )


# --------------------------------------------------------------------------------------------
# Maps and regions
# --------------------------------------------------------------------------------------------
def plot_map_mosaic(
    grid: DisplayGrid,
    map_index: int | None,
    region_indices: Sequence[int],
    *,
    colors: Sequence[Sequence[float]],
    names: Sequence[str] = (),
    title: str = "",
    n_slices: int = 7,
) -> Figure:
    """Axial mosaic of one map (top row) and its regions in distinct colours (bottom row).

    Parameters
    ----------
    grid : DisplayGrid
        With ``maps`` (unless ``map_index`` is None), ``regions`` and optionally a background.
    map_index : int or None
        Volume of ``grid.maps`` to draw; None draws the regions row only.
    region_indices : sequence of int
        Volumes of ``grid.regions`` that come from this map.
    colors : sequence of RGB
        One colour per entry of ``region_indices``.
    names : sequence of str
        Region names, for the legend.
    title : str
        Figure title (drawn as text, never parsed).
    n_slices : int
        Number of axial slices.
    """
    with _style():
        regions = (
            grid.regions[..., list(region_indices)]
            if grid.regions is not None and len(region_indices)
            else None
        )
        map_data = None if map_index is None or grid.maps is None else grid.maps[..., map_index]
        support = np.zeros(grid.shape, dtype=bool)
        centres: list[int] = []
        if regions is not None:
            support |= np.any(regions != 0, axis=-1)
            for k in range(regions.shape[-1]):
                weight = np.abs(regions[..., k])
                if weight.any():
                    centres.append(int(np.unravel_index(np.argmax(weight), weight.shape)[2]))
        cutoff = None
        if map_data is not None:
            if regions is not None and np.any(regions != 0):
                inside = np.abs(map_data[np.any(regions != 0, axis=-1)])
                inside = inside[inside > 0]
                cutoff = float(inside.min()) if inside.size else None
            if cutoff is None:
                nonzero = np.abs(map_data[map_data != 0])
                cutoff = float(np.percentile(nonzero, 90)) if nonzero.size else 0.0
            if not support.any():
                support |= np.abs(map_data) >= cutoff
        slices = choose_slices(support, n_slices, centres=centres)
        rows = (["map"] if map_data is not None else []) + (["regions"] if regions is not None
                                                              else [])
        if not rows:
            rows = ["background"]
        n_cols = len(slices)
        legend_rows = int(np.ceil(len(names) / 4)) if names else 0
        fig = Figure(figsize=(1.05 * n_cols + 0.4, 1.15 * len(rows) + 0.25 + 0.14 * legend_rows))
        low, high = _background_limits(grid.background)
        extent = grid.extent((0, 1))
        vmax = float(np.abs(map_data).max()) if map_data is not None else 1.0
        vmax = vmax if vmax > 0 else 1.0
        axes = fig.subplots(len(rows), n_cols, squeeze=False,
                            gridspec_kw={"wspace": 0.02, "hspace": 0.05})
        for r, row in enumerate(rows):
            for c, z in enumerate(slices):
                ax = axes[r][c]
                _panel(ax)
                if grid.background is not None:
                    ax.imshow(_slice(grid.background, 2, z), cmap="gray", vmin=low, vmax=high,
                              origin="lower", extent=extent, interpolation="nearest")
                if row == "map":
                    values = _slice(map_data, 2, z)
                    shown = np.ma.masked_where(np.abs(values) < (cutoff or 0) * 0.999, values)
                    ax.imshow(shown, cmap="RdBu_r", vmin=-vmax, vmax=vmax, origin="lower",
                              extent=extent, interpolation="nearest", alpha=0.9)
                elif row == "regions":
                    ax.imshow(_regions_rgba(_slice(regions, 2, z), colors), origin="lower",
                              extent=extent, interpolation="nearest")
                if r == 0:
                    ax.set_title(f"z={grid.world(2, z):.0f}", fontsize=6, pad=2)
                if c == 0:
                    ax.text(-0.06, 0.5, row, transform=ax.transAxes, rotation=90,
                            ha="right", va="center", fontsize=7)
                    ax.text(0.02, 0.02, "L", transform=ax.transAxes, color="white",
                            fontsize=6, ha="left", va="bottom")
                if c == n_cols - 1:
                    ax.text(0.98, 0.02, "R", transform=ax.transAxes, color="white",
                            fontsize=6, ha="right", va="bottom")
        if title:
            fig.suptitle(title, fontsize=8, y=1.0)
        if names:
            from matplotlib.patches import Patch

            handles = [Patch(facecolor=colors[i], label=str(name)) for i, name in enumerate(names)]
            fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)),
                       frameon=False, bbox_to_anchor=(0.5, -0.02 - 0.05 * legend_rows))
        return fig


def plot_region_ortho(
    grid: DisplayGrid,
    region_index: int,
    *,
    color: Sequence[float],
    title: str = "",
) -> Figure:
    """Sagittal, coronal and axial slices through the peak of one region, on the background."""
    with _style():
        region = grid.regions[..., region_index]
        weight = np.abs(region)
        if weight.any():
            peak = np.unravel_index(int(np.argmax(weight)), weight.shape)
        else:
            peak = tuple(n // 2 for n in region.shape)
        fig = Figure(figsize=(6.0, 2.2))
        axes = fig.subplots(1, 3, gridspec_kw={"wspace": 0.03})
        low, high = _background_limits(grid.background)
        views = [("x", 0, (1, 2)), ("y", 1, (0, 2)), ("z", 2, (0, 1))]
        for ax, (label, axis, plane) in zip(axes, views, strict=True):
            _panel(ax)
            extent = grid.extent(plane)
            if grid.background is not None:
                ax.imshow(_slice(grid.background, axis, peak[axis]), cmap="gray", vmin=low,
                          vmax=high, origin="lower", extent=extent, interpolation="nearest")
            ax.imshow(_regions_rgba(_slice(region[..., np.newaxis], axis, peak[axis]), [color]),
                      origin="lower", extent=extent, interpolation="nearest")
            ax.set_title(f"{label}={grid.world(axis, peak[axis]):.0f}", fontsize=7, pad=2)
            if axis != 0:
                ax.text(0.02, 0.02, "L", transform=ax.transAxes, color="white", fontsize=6)
                ax.text(0.98, 0.02, "R", transform=ax.transAxes, color="white", fontsize=6,
                        ha="right")
        if title:
            fig.suptitle(title, fontsize=8)
        return fig


# --------------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------------
def _time_axis(n: int, t_r: float | None) -> tuple[np.ndarray, str]:
    if t_r:
        return np.arange(n) * t_r, "time (s)"
    return np.arange(n, dtype=float), "volume"


def _ticks(ax, names: Sequence[str], axis: str) -> None:
    positions = np.arange(len(names))
    if len(names) <= _MAX_TICK_LABELS:
        if axis == "y":
            ax.set_yticks(positions, [str(n) for n in names])
        else:
            ax.set_xticks(positions, [str(n) for n in names], rotation=90)
    elif axis == "y":
        ax.set_yticks([])
    else:
        ax.set_xticks([])


def plot_carpet(
    signals: np.ndarray,
    names: Sequence[str],
    *,
    censored: np.ndarray | None = None,
    t_r: float | None = None,
    title: str = "",
) -> Figure:
    """Region signals as an image (regions x volumes), each region z-scored.

    Parameters
    ----------
    signals : ndarray, shape (n_kept, n_regions)
        The time series as written (NaN columns: regions set to n/a).
    names : sequence of str
        Region names.
    censored : ndarray of bool, shape (n_volumes,), optional
        Censored volumes of the run; when it has ``n_kept`` False entries, the kept volumes are
        drawn at their place in the run and the censored ones as pale red columns.
    t_r : float, optional
        Repetition time in s (time axis in s instead of volumes).
    """
    with _style():
        signals = np.asarray(signals, dtype=float)
        n_kept, n_regions = signals.shape
        if censored is not None and int(np.sum(~censored)) == n_kept:
            n_volumes = len(censored)
            columns = np.flatnonzero(~censored)
        else:
            censored = None
            n_volumes = n_kept
            columns = np.arange(n_kept)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            # Regions set to n/a are all-NaN columns: their mean is NaN, drawn in blue-grey.
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(signals, axis=0) if n_kept else np.zeros(n_regions)
            std = np.nanstd(signals, axis=0) if n_kept else np.ones(n_regions)
            z = (signals - mean) / np.where(std > 0, std, 1.0)
        gray = np.clip((z + 2.5) / 5.0, 0.0, 1.0)
        rgb = np.empty((n_regions, n_volumes, 3), dtype=np.float32)
        rgb[:] = _CENSORED_RGB
        rgb[:, columns, :] = gray.T[..., np.newaxis]
        missing = ~np.isfinite(signals).any(axis=0) if n_kept else np.ones(n_regions, bool)
        rgb[missing] = _NA_RGB
        height = min(4.5, 0.9 + 0.1 * n_regions)
        fig = Figure(figsize=(7.0, height))
        ax = fig.add_subplot()
        times, label = _time_axis(n_volumes, t_r)
        step = times[1] - times[0] if n_volumes > 1 else 1.0
        ax.imshow(rgb, aspect="auto", interpolation="nearest", origin="upper",
                  extent=(times[0] - step / 2, times[-1] + step / 2 if n_volumes else 1,
                          n_regions - 0.5, -0.5))
        _ticks(ax, names, "y")
        ax.set_xlabel(label)
        ax.set_ylabel("" if n_regions <= _MAX_TICK_LABELS else f"{n_regions} regions")
        if title:
            ax.set_title(title)
        return fig


def plot_fd(
    fd: np.ndarray | None,
    outliers: dict[str, np.ndarray],
    *,
    threshold: float | None = None,
    t_r: float | None = None,
    title: str = "",
) -> Figure:
    """Framewise displacement with the censored volumes marked by reason.

    Parameters
    ----------
    fd : ndarray, shape (n_volumes,), or None
        FD in mm (NaN allowed); None draws the censoring only.
    outliers : dict of str to ndarray of bool
        ``dummy``, ``fd``, ``dvars``, ``short_segment`` columns of the outliers TSV.
    threshold : float, optional
        FD threshold in mm (dashed line).
    """
    with _style():
        n = len(fd) if fd is not None else max((len(v) for v in outliers.values()), default=0)
        times, label = _time_axis(n, t_r)
        step = times[1] - times[0] if n > 1 else 1.0
        fig = Figure(figsize=(7.0, 1.9))
        ax = fig.add_subplot()
        from matplotlib.patches import Patch

        handles = []
        for reason, color in REASON_COLORS.items():
            mask = np.asarray(outliers.get(reason, np.zeros(n, bool)), dtype=bool)
            if not mask.any():
                continue
            for start, stop in _runs_of(mask):
                ax.axvspan(times[start] - step / 2, times[stop - 1] + step / 2, color=color,
                           alpha=0.35, linewidth=0)
            handles.append(Patch(facecolor=color, alpha=0.35,
                                 label=f"{reason.replace('_', ' ')} ({int(mask.sum())})"))
        if fd is not None:
            ax.plot(times, fd, color="#1f3b73", linewidth=0.8, label="FD")
            ax.set_ylabel("FD (mm)")
            finite = np.asarray(fd, dtype=float)[np.isfinite(fd)]
            top = max(float(finite.max()) if finite.size else 0.0, threshold or 0.0)
            ax.set_ylim(0, top * 1.1 if top > 0 else 1.0)
        else:
            ax.set_yticks([])
            ax.set_ylabel("censored")
        if threshold is not None and fd is not None:
            ax.axhline(threshold, color="#d62728", linestyle="--", linewidth=0.8)
            handles.append(matplotlib.lines.Line2D([], [], color="#d62728", linestyle="--",
                                                   label=f"threshold {threshold:g} mm"))
        if n:
            ax.set_xlim(times[0] - step / 2, times[-1] + step / 2)
        ax.set_xlabel(label)
        if handles:
            ax.legend(handles=handles, loc="upper right", ncol=len(handles), frameon=False)
        if title:
            ax.set_title(title)
        return fig


def _runs_of(mask: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of True values."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def plot_relmat(
    matrix: np.ndarray,
    names: Sequence[str],
    *,
    measure: str = "",
    valid_diagonal: bool = False,
    title: str = "",
) -> Figure:
    """A connectivity matrix as a heatmap (NaN and, unless valid, the diagonal in grey)."""
    with _style():
        values = np.array(matrix, dtype=float)
        if not valid_diagonal and values.size:
            np.fill_diagonal(values, np.nan)
        finite = values[np.isfinite(values)]
        vmax = float(np.abs(finite).max()) if finite.size else 1.0
        if measure in ("pearsoncorrelation", "partialcorrelation") and vmax <= 1:
            vmax = 1.0
        vmax = vmax if vmax > 0 else 1.0
        n = len(names)
        size = min(6.0, max(3.2, 1.6 + 0.09 * n))
        fig = Figure(figsize=(size + 0.8, size))
        ax = fig.add_subplot()
        cmap = matplotlib.colormaps["RdBu_r"].with_extremes(bad="#d9d9d9")
        image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=-vmax, vmax=vmax,
                          interpolation="nearest")
        _ticks(ax, names, "x")
        _ticks(ax, names, "y")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label=measure or None)
        if title:
            ax.set_title(title)
        return fig


def plot_coverage(
    names: Sequence[str],
    coverage: np.ndarray,
    used: np.ndarray,
    *,
    min_coverage: float | None = None,
    title: str = "",
) -> Figure:
    """Fraction of each region inside the brain mask; regions set to n/a in red."""
    with _style():
        n = len(names)
        fig = Figure(figsize=(min(7.0, 1.5 + 0.16 * n) if n <= _MAX_TICK_LABELS else 7.0, 2.2))
        ax = fig.add_subplot()
        colors = np.where(np.asarray(used, dtype=bool), "#4c78a8", "#d62728")
        ax.bar(np.arange(n), np.asarray(coverage, dtype=float), color=list(colors), width=0.8)
        if min_coverage is not None:
            ax.axhline(min_coverage, color="#333333", linestyle="--", linewidth=0.8,
                       label=f"minimum {min_coverage:g}")
            ax.legend(loc="lower right", frameon=False)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("coverage")
        ax.set_xlim(-0.6, n - 0.4)
        _ticks(ax, names, "x")
        if title:
            ax.set_title(title)
        return fig
