"""Methods text: every option changes it as it should, citations resolve, files are written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bids_regionx.config import (
    ConnectivitySettings,
    DenoiseSettings,
    MapsSettings,
    RegionSettings,
    Settings,
    builtin_denoise_strategies,
)
from bids_regionx.io.maps import MapsSpec
from bids_regionx.reports import boilerplate
from bids_regionx.reports.citations import CITATION_RE, Citations, parse_bibtex

SPACE = "MNI152NLin2009cAsym"


def make_settings(tmp_path: Path, *, maps=None, regions=None, denoise=None, connectivity=None,
                  fmriprep_version=None) -> Settings:
    bids = tmp_path / "fmriprep"
    bids.mkdir(parents=True, exist_ok=True)
    if fmriprep_version:
        (bids / "dataset_description.json").write_text(json.dumps({
            "Name": "fMRIPrep", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "fMRIPrep", "Version": fmriprep_version}],
        }))
    return Settings(
        bids_dir=bids,
        output_dir=tmp_path / "out",
        analysis_level="participant",
        maps=MapsSettings(files=(tmp_path / "smith.nii.gz",), **(maps or {})),
        regions=RegionSettings(**(regions or {})),
        denoise=DenoiseSettings(**(denoise or {})),
        connectivity=ConnectivitySettings(**(connectivity or {})),
    )


SPEC = MapsSpec(label="Smith", path=Path("/maps/smith_ica.nii.gz"), space=SPACE, res=None,
                map_names=("DMN", "Motor"), n_maps=2, source="maps")


def methods_text(tmp_path, **options) -> str:
    settings = make_settings(tmp_path, **options)
    return boilerplate.render_methods(boilerplate.methods_facts(settings, [SPEC])).markdown()


@pytest.fixture
def default_text(tmp_path):
    return methods_text(tmp_path / "default")


def test_default_text(default_text):
    text = default_text
    for sentence in (
        "Regions were extracted from the 2 maps of *Smith* (smith_ica.nii.gz, "
        "MNI152NLin2009cAsym space).",
        "keeping the voxels of largest absolute value across all maps up to about 1 times the "
        "number of voxels in one volume.",
        "random-walker segmentation (Grady, 2006) seeded at the local maxima of the map smoothed "
        "with a Gaussian kernel of 6 mm full width at half maximum (FWHM) (Abraham et al., "
        "2014a).",
        "Regions of 1350 mm³ or less were discarded",
        "The regions were resampled to the grid of each BOLD run (trilinear interpolation).",
        "the data were smoothed with a Gaussian kernel of 6 mm FWHM and",
        "Regions with less than 50 % of their weight inside the brain mask",
        "following the 'simple' strategy of Nilearn's load_confounds_strategy (Wang et al., 2024)",
        "The initial non-steady-state volumes detected by fMRIPrep were discarded.",
        "No volume was censored for motion.",
        "The confounds were regressed out of the signals by least squares.",
        "The confounds were z-scored before the regression.",
        "The cleaned region time series were not standardized.",
        "estimated as the Pearson correlation of their time series, from the empirical "
        "covariance, for each run.",
        "reproduce Nilearn's RegionExtractor (Nilearn 0.14) (Abraham et al., 2014b)",
        "## References",
    ):
        assert sentence in text, sentence
    for absent in ("Fisher", "concatenating", "fMRIPrep 2", "Ledoit", "filtered",
                   "restricted to the mask", "@"):
        assert absent not in text, absent


CASES = {
    "ratio threshold": (dict(regions={"threshold": 2.5}), ["up to about 2.5 times"]),
    "img_value": (dict(regions={"thresholding_strategy": "img_value", "threshold": 0.3}),
                  ["Each map was thresholded at 0.3, keeping the voxels with a value of at least "
                   "0.3 (negative values were discarded)."]),
    "img_value two-sided": (
        dict(regions={"thresholding_strategy": "img_value", "threshold": 0.3,
                      "two_sided": True}),
        ["thresholded at an absolute value of 0.3 (two-sided: voxels with a value of at least "
         "0.3 or at most -0.3 were kept)"]),
    "img_value negative": (dict(regions={"thresholding_strategy": "img_value",
                                         "threshold": -0.2}),
                           ["keeping the voxels with a value of at most -0.2."]),
    "percentile": (dict(regions={"thresholding_strategy": "percentile", "threshold": 90}),
                   ["thresholded at the 90th percentile of its non-negative values, keeping the "
                    "voxels above it"]),
    "percentile two-sided": (dict(regions={"thresholding_strategy": "percentile",
                                           "threshold": 90, "two_sided": True}),
                             ["the 90th percentile of its absolute values (two-sided)"]),
    "mask": (dict(maps={"mask": "/masks/brainmask.nii.gz"},
                  regions={"thresholding_strategy": "percentile", "threshold": 90}),
             ["The maps were restricted to the mask brainmask.nii.gz (zero outside it).",
              "non-negative values within the mask"]),
    "connected components": (dict(regions={"extractor": "connected_components"}),
                             ["split into its connected components (6-connectivity) (Abraham "
                              "et al., 2014a)."]),
    "no smoothing": (dict(regions={"smoothing_fwhm": 0}),
                     ["seeded at the local maxima of the map (without smoothing)",
                      "For each BOLD run, the time series of the regions"]),
    "smoothing": (dict(regions={"smoothing_fwhm": 4}),
                  ["kernel of 4 mm full width", "kernel of 4 mm FWHM and"]),
    "min region size": (dict(regions={"min_region_size": 500}), ["Regions of 500 mm³ or less"]),
    "no resampling": (dict(regions={"resampling_target": "none"}),
                      ["The BOLD runs were on the grid of the maps, and nothing was resampled."]),
    "no overlap": (dict(regions={"allow_overlap": False}),
                   ["Overlapping regions were not allowed"]),
    "strategy": (dict(denoise={"strategy": "24P"}),
                 ["In total, 24 nuisance regressors were selected according to the '24P' "
                  "strategy"]),
    "scrubbing": (dict(denoise={"strategy": "scrubbing.5"}),
                  ["Volumes with a framewise displacement above 0.5 mm were censored (Power et "
                   "al., 2012), as were the segments of fewer than 5 consecutive uncensored "
                   "volumes left between them (Power et al., 2014)."]),
    "fd threshold": (dict(denoise={"fd_threshold": 0.3}),
                     ["Volumes with a framewise displacement above 0.3 mm were censored (Power "
                      "et al., 2012)."]),
    "dvars threshold": (dict(denoise={"strategy": "scrubbing.5", "dvars_threshold": 1.5}),
                        ["above 0.5 mm or a standardized DVARS above 1.5 were censored"]),
    "dummy scans": (dict(denoise={"dummy_scans": 4}),
                    ["The first 4 volumes of each run were discarded."]),
    "no dummy scans": (dict(denoise={"dummy_scans": 0}), ["No initial volume was discarded."]),
    "min time": (dict(denoise={"min_time": 120}),
                 ["as were runs with less than 120 s of data left after censoring."]),
    "min coverage": (dict(denoise={"min_coverage": 0.8}), ["Regions with less than 80 %"]),
    "no min coverage": (dict(denoise={"min_coverage": 0}),
                        ["Every region was kept whatever its coverage by the brain mask."]),
    "z-score": (dict(denoise={"standardize": "zscore_sample"}),
                ["were z-scored (zero mean, unit sample variance)."]),
    "psc": (dict(denoise={"standardize": "psc"}), ["expressed as percent signal change."]),
    "confounds not standardized": (
        dict(denoise={"standardize_confounds": False}),
        ["The confounds were scaled to a maximum absolute value of one (not z-scored)"]),
    "detrend": (dict(denoise={"detrend": True}),
                ["The signals and the confounds were linearly detrended and the confounds were "
                 "then regressed out of the signals."]),
    "band-pass": (dict(denoise={"low_pass": 0.08, "high_pass": 0.01}),
                  ["band-pass filtered between 0.01 and 0.08 Hz (zero-phase Butterworth filter "
                   "of order 5) (censored volumes were interpolated",
                   "(Lindquist et al., 2019)"]),
    "high-pass": (dict(denoise={"high_pass": 0.01, "dummy_scans": 0}),
                  ["high-pass filtered at 0.01 Hz (zero-phase Butterworth filter of order 5),"]),
    "low-pass": (dict(denoise={"low_pass": 0.1}), ["low-pass filtered at 0.1 Hz"]),
    "filter order": (dict(denoise={"low_pass": 0.1,
                                   "clean_args": {"butterworth__order": 3}}),
                     ["Butterworth filter of order 3"]),
    "cosine filter": (dict(denoise={"high_pass": 0.01, "clean_args": {"filter": "cosine"}}),
                      ["high-pass filtered at 0.01 Hz with discrete cosine regressors"]),
    "other clean args": (dict(denoise={"clean_args": {"extrapolate": True}}),
                         ['Other cleaning options: {"extrapolate": true}.']),
    "high-variance confounds": (dict(denoise={"high_variance_confounds": True}),
                                ["2 % highest-variance voxels of each run were added to the "
                                 "confound regressors (Behzadi et al., 2007)."]),
    "repetition time": (dict(denoise={"t_r": 2.0}),
                        ["A repetition time of 2 s was used for every run."]),
    "measures": (dict(connectivity={"measures": ["correlation", "partial correlation",
                                                 "precision"]}),
                 ["the Pearson correlation, partial correlation and precision (inverse "
                  "covariance) of their time series"]),
    "ledoit-wolf": (dict(connectivity={"cov_estimator": "ledoit_wolf"}),
                    ["from a Ledoit-Wolf shrunk covariance estimate (Ledoit & Wolf, 2004)"]),
    "fisher z": (dict(connectivity={"fisher_z": True}),
                 ["Correlation matrices were also written after Fisher's z-transform"]),
    "combine runs": (dict(connectivity={"combine_runs": True}),
                     ["after z-scoring each run's time series and concatenating the runs of "
                      "each subject, session and task, for each subject, session and task."]),
    "fmriprep": (dict(fmriprep_version="23.2.1"),
                 ["The functional data had been preprocessed with fMRIPrep 23.2.1 (Esteban et "
                  "al., 2019; Esteban et al., 2018); the preprocessed BOLD runs in "
                  "MNI152NLin2009cAsym space were used."]),
}


@pytest.mark.parametrize("case", CASES)
def test_each_option_changes_the_text(case, tmp_path, default_text):
    options, sentences = CASES[case]
    text = methods_text(tmp_path, **options)
    assert text != default_text
    for sentence in sentences:
        assert sentence in text, f"{case}: {sentence!r} missing from\n{text}"
        assert sentence not in default_text


def test_fisher_z_is_not_stated_without_a_correlation(tmp_path):
    text = methods_text(tmp_path, connectivity={"measures": ["covariance"], "fisher_z": True})
    assert "Fisher" not in text


@pytest.mark.parametrize("strategy", builtin_denoise_strategies())
def test_every_citation_of_every_builtin_strategy_resolves(strategy, tmp_path):
    settings = make_settings(tmp_path, denoise={"strategy": strategy})
    methods = boilerplate.render_methods(boilerplate.methods_facts(settings, [SPEC]))
    assert methods.missing_keys == []
    markdown = methods.markdown()
    assert not CITATION_RE.search(markdown) and "@" not in markdown
    cited = set(methods.citations.cited)
    assert {"abraham2014", "abraham2014nilearn", "gorgolewski2011"} <= cited
    bib = parse_bibtex(methods.bibtex())
    assert set(bib) == cited  # exactly the cited entries


def test_references_bib_is_complete_and_well_formed():
    entries = boilerplate.load_references()
    for key, entry in entries.items():
        assert entry.text("title") and entry.year != "n.d." and entry.authors, key
    template = (boilerplate.boilerplate_dir() / "methods.md.jinja").read_text()
    text = re.sub(r"\{#.*?#\}", "", template, flags=re.DOTALL)  # not the comments
    strategies = Path(boilerplate.__file__).parents[1] / "data" / "denoise"
    for source in [text, *(p.read_text() for p in strategies.glob("*.json"))]:
        for group in CITATION_RE.findall(source):
            for key in re.findall(r"@([\w:.+-]+)", group):
                assert key in entries, key


def test_author_year_labels_are_disambiguated():
    entries = boilerplate.load_references()
    citations = Citations(entries)
    citations.cite_keys("[@abraham2014nilearn] then [@abraham2014; @grady2006]")
    assert citations.render_text("[@abraham2014; @abraham2014nilearn]") == (
        "(Abraham et al., 2014a; Abraham et al., 2014b)")
    assert citations.label("grady2006") == "Grady, 2006"
    assert citations.label("ledoit2004") == "Ledoit & Wolf, 2004"
    assert citations.render_text("[@nosuchkey]") == "(@nosuchkey)"


def test_user_strategy_text_is_escaped_in_html(tmp_path):
    strategy = tmp_path / "mine.json"
    strategy.write_text(json.dumps({
        "schema_version": 1, "name": "mine",
        "description": "Regressed <script>alert(1)</script> & *friends* [@friston1996; @nope].",
        "confounds": ["trans_x"], "dummy_scans": 0,
    }))
    settings = make_settings(tmp_path, denoise={"strategy": str(strategy)})
    methods = boilerplate.render_methods(boilerplate.methods_facts(settings, [SPEC]))
    assert methods.missing_keys == ["nope"]
    html = str(methods.html_fragment())
    assert "<script>" not in html
    assert "Regressed &lt;script&gt;alert(1)&lt;/script&gt; &amp; <em>friends</em> " \
           '(<a href="#ref-friston1996">Friston et al., 1996</a>; @nope).' in html


def test_write_boilerplate_is_deterministic(tmp_path):
    settings = make_settings(tmp_path, fmriprep_version="23.2.1")
    first = {p.name: p.read_bytes() for p in boilerplate.write_boilerplate(settings, [SPEC])}
    second = {p.name: p.read_bytes() for p in boilerplate.write_boilerplate(settings, [SPEC])}
    assert first == second and sorted(first) == ["CITATION.bib", "CITATION.html", "CITATION.md"]
    page = first["CITATION.html"].decode()
    assert "Content-Security-Policy" in page and "<script" not in page
    assert 'id="ref-abraham2014"' in page and "https://hal.inria.fr/hal-01093944" in page
    assert first["CITATION.md"].decode().startswith("# Region time series and connectomes\n")
