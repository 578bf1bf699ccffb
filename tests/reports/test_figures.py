"""Report figures: deterministic bytes, names drawn as written, orientation, colours."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from bids_regionx.reports import figures

NAMES = ["$5 cost", "a_b^c", "<b>x</b>", "$\\alpha$", "r"]


@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_same_figure_same_bytes(fmt, rng):
    matrix = rng.standard_normal((5, 5))
    one = figures.figure_bytes(figures.plot_relmat(matrix, NAMES), fmt)
    two = figures.figure_bytes(figures.plot_relmat(matrix, NAMES), fmt)
    assert one == two
    if fmt == "svg":
        assert b"<dc:date>" not in one and b"<script" not in one
        assert b"$5 cost" in one  # names are text, never mathtext (an odd "$" would raise)


def test_every_plot_accepts_any_region_name(rng):
    signals = rng.standard_normal((30, 5))
    signals[:, 2] = np.nan  # a region set to n/a
    censored = np.zeros(33, bool)
    censored[[0, 1, 20]] = True
    outliers = {"dummy": np.r_[True, True, np.zeros(31, bool)], "fd": censored & ~np.r_[
        True, True, np.zeros(31, bool)]}
    for fig in (
        figures.plot_carpet(signals, NAMES, censored=censored, t_r=2.0),
        figures.plot_fd(rng.random(33), outliers, threshold=0.5, t_r=2.0),
        figures.plot_fd(None, outliers),
        figures.plot_coverage(NAMES, rng.random(5), [1, 1, 0, 1, 1], min_coverage=0.5),
    ):
        assert figures.figure_bytes(fig, "svg").startswith(b"<?xml")


def test_display_grid_is_ras_whatever_the_input_orientation():
    data = np.zeros((6, 7, 8, 1), np.float32)
    data[0, 0, 0, 0] = 1.0  # voxel (0, 0, 0)
    ras = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]))
    flipped_affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    flipped_affine[0, 3] = 10.0  # i = 0 is x = 10 mm, the right-most voxel
    las = nib.Nifti1Image(data, flipped_affine)
    grid = figures.display_grid(regions_img=las)
    assert grid.affine[0, 0] > 0
    assert grid.regions[-1, 0, 0, 0] == 1.0  # now the last index along x
    assert figures.display_grid(regions_img=ras).regions[0, 0, 0, 0] == 1.0


def test_region_colors_are_distinct():
    colors = figures.region_colors(12, "CMRmap_r")
    assert len({figures.hex_color(c) for c in colors}) == 12
    assert figures.hex_color((1.0, 0.5, 0.0)) == "#ff8000"


def test_choose_slices_covers_the_regions():
    support = np.zeros((5, 5, 40), bool)
    support[2, 2, 10:31] = True
    slices = figures.choose_slices(support, 5, centres=[12])
    assert slices[0] >= 10 and slices[-1] <= 30 and 12 in slices and len(slices) == 5
