"""``RegionExtractor.generate_report``: nilearn's warnings and checks (nilearn as the oracle),
the report object, and what the page shows."""

from __future__ import annotations

import re
import warnings

import nibabel as nib
import numpy as np
import pytest

from bids_regionx import RegionExtractor
from bids_regionx.reports.estimator import HTMLReport

FIT = dict(min_region_size=10, extractor="connected_components")


@pytest.fixture
def bold_img(small_maps_img, rng):
    shape = small_maps_img.shape[:3] + (6,)
    return nib.Nifti1Image(rng.standard_normal(shape).astype(np.float32) + 100.0,
                           small_maps_img.affine)


@pytest.fixture
def no_figures(monkeypatch):
    """Both reports without their figures: the warnings are decided before plotting."""
    from nilearn.maskers.nifti_maps_masker import NiftiMapsMasker

    from bids_regionx.reports import estimator

    monkeypatch.setattr(NiftiMapsMasker, "_create_figure_for_report", lambda self: [None])
    monkeypatch.setattr(estimator, "_figures", lambda *args: ([], []))


def ours_and_oracle(maps_img, *, fit_imgs=None, **params):
    from nilearn.regions import RegionExtractor as Oracle

    ours = RegionExtractor(maps_img, **FIT, **params)
    oracle = Oracle(maps_img, **FIT, **params)
    if fit_imgs != "unfitted":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours.fit(fit_imgs)
            oracle.fit(fit_imgs)
        assert ours.n_elements_ == oracle.n_elements_
    return ours, oracle


def report_warnings(estimator, **kwargs) -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = estimator.generate_report(**kwargs)
    return report, [str(w.message) for w in caught if w.category is UserWarning]


def oracle_warnings(oracle, **kwargs) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        oracle.generate_report(**kwargs)
    return sorted(set(oracle._report_content["warning_messages"]))


@pytest.mark.usefixtures("no_figures")
@pytest.mark.parametrize("displayed_maps", [10, 2, 0, -1, "all", [0, 99, 1], [],
                                            np.array([1, 0]), True])
@pytest.mark.parametrize("fit_with", ["nothing", "bold", "runs", "unfitted"])
def test_warnings_match_nilearn(displayed_maps, fit_with, small_maps_img, bold_img):
    fit_imgs = {"nothing": None, "bold": bold_img, "runs": [bold_img, bold_img],
                "unfitted": "unfitted"}[fit_with]
    ours, oracle = ours_and_oracle(small_maps_img, fit_imgs=fit_imgs)
    _, got = report_warnings(ours, displayed_maps=displayed_maps)
    assert got == oracle_warnings(oracle, displayed_maps=displayed_maps)


@pytest.mark.parametrize("at_fit", [True, False])
@pytest.mark.parametrize("at_report", [True, False])
def test_reports_flag_matches_nilearn(at_fit, at_report, small_maps_img, monkeypatch):
    from nilearn.maskers.nifti_maps_masker import NiftiMapsMasker

    monkeypatch.setattr(NiftiMapsMasker, "_create_figure_for_report", lambda self: [None])
    ours, oracle = ours_and_oracle(small_maps_img, fit_imgs="unfitted", reports=at_fit)
    ours.fit()
    oracle.fit()
    ours.reports = oracle.reports = at_report
    report, got = report_warnings(ours)
    assert got == oracle_warnings(oracle)
    # reports=False at fit keeps nothing, so there is nothing to draw
    assert (ours._reporting_data is None) is (not at_fit)
    assert ("<img" in report.body) is at_fit


@pytest.mark.parametrize("displayed_maps", [1.5, "first", [1.0], [0, "1"], (0, 1),
                                            np.array([0.0, 1.0]), None])
def test_bad_displayed_maps_raise_nilearns_type_error(displayed_maps, small_maps_img):
    ours, oracle = ours_and_oracle(small_maps_img)
    with pytest.raises(TypeError) as want:
        oracle.generate_report(displayed_maps=displayed_maps)
    with pytest.raises(TypeError) as got:
        ours.generate_report(displayed_maps=displayed_maps)
    assert str(got.value) == str(want.value)


def test_bad_displayed_maps_are_ignored_before_fit(small_maps_img):
    """As nilearn: the check only runs when there is something to display."""
    _, got = report_warnings(RegionExtractor(small_maps_img), displayed_maps=1.5)
    assert got == ["\nThis estimator has not been fit yet.\n"
                   "Make sure to run `fit` before inspecting reports."]


@pytest.mark.parametrize("displayed_maps", [np.int64(1), np.array([1, 0], dtype=np.int32),
                                            [np.int16(0)]])
def test_numpy_integers_are_accepted(displayed_maps, small_maps_img):
    """Our extension (nilearn 0.14 raises TypeError for numpy integer scalars and for integer
    arrays other than the platform's default int)."""
    est = RegionExtractor(small_maps_img, **FIT).fit()
    report, _ = report_warnings(est, displayed_maps=displayed_maps)
    n = len(np.atleast_1d(displayed_maps)) if not np.isscalar(displayed_maps) else 1
    assert f"Only <b>{n}</b> spatial maps are shown" in report.body


def test_report_content(small_maps_img, bold_img):
    est = RegionExtractor(small_maps_img, **FIT).fit(bold_img)
    n = est.n_elements_
    assert n > 2
    report, got = report_warnings(est, displayed_maps=[2, 0])
    assert got == []
    body = report.body
    assert f"The masker has <b>{n}</b> spatial maps in total." in body
    assert "Only <b>2</b> spatial maps are shown in this report." in body
    assert "This report shows the spatial maps provided to the mask." in body
    assert "Note that the masker can potentially perform resampling at transform time." in body
    # an overview and one figure per displayed map, in the order asked for
    images = re.findall(r'<img src="data:image/(png|svg\+xml);base64,[A-Za-z0-9+/=]+"', body)
    assert len(images) == 3
    assert body.index("Map 2, extracted") < body.index("Map 0, extracted")
    rows = re.findall(r'</span></td>\s*<td class="num">(\d+)</td>\s*<td class="num">(\d+)</td>',
                      body)
    assert [int(r[0]) for r in rows] == [2, 0]
    assert [int(r[1]) for r in rows] == [est.index_[2], est.index_[0]]
    assert "<script" not in report.html and "Content-Security-Policy" in report.html
    all_maps, _ = report_warnings(est, displayed_maps="all")
    assert "Only <b>" not in all_maps.body


def test_report_object(small_maps_img, tmp_path, monkeypatch):
    est = RegionExtractor(small_maps_img, **FIT).fit()
    with pytest.warns(UserWarning, match="No image provided to fit in RegionExtractor"):
        report = est.generate_report(displayed_maps=1, title="Regions <of> sub-01")
    assert isinstance(report, HTMLReport)
    assert report._repr_html_() == report.body == str(report)
    assert report.get_standalone() == report.html
    assert report.html.startswith("<!DOCTYPE html>") and report.body in report.html
    assert "<title>Regions &lt;of&gt; sub-01 report</title>" in report.html
    assert ">Regions &lt;of&gt; sub-01</h1>" in report.body
    report.save_as_html(tmp_path / "report.html")
    assert (tmp_path / "report.html").read_text(encoding="utf-8") == report.html

    opened = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    path = report.open_in_browser(tmp_path / "opened.html")
    assert opened == [path.resolve().as_uri()] and path.read_text() == report.html
    temporary = report.open_in_browser(temp_file_lifetime=None)
    assert opened[-1] == temporary.resolve().as_uri() and temporary.is_file()
    temporary.unlink()

    with pytest.raises(ValueError, match="engine: only 'matplotlib'"):
        est.generate_report(engine="plotly")


def test_report_is_deterministic_but_for_its_date(small_maps_img):
    est = RegionExtractor(small_maps_img, **FIT).fit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first, second = est.generate_report(), est.generate_report()

    def undated(text):
        return re.sub(r"generated on [0-9T:-]+", "", text)

    assert undated(first.html) == undated(second.html)


def test_parameters_are_escaped(small_maps_img):
    est = RegionExtractor(small_maps_img, **FIT, clean_args={"x": "<script>alert(1)</script>"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        body = est.fit().generate_report().body
    assert "<script>" not in body
    assert "{&#39;x&#39;: &#39;&lt;script&gt;alert(1)&lt;/script&gt;&#39;}" in body


def test_reports_false_keeps_nothing_at_fit(small_maps_img, bold_img):
    est = RegionExtractor(small_maps_img, **FIT, reports=False).fit(bold_img)
    assert est._reporting_data is None
    kept = RegionExtractor(small_maps_img, **FIT).fit(bold_img)._reporting_data
    assert kept["images"].shape == bold_img.shape[:3] and kept["dim"] == 4
