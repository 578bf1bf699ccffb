"""Tests for bids_regionx.config: the frozen Settings value, its checks, TOML and output hash."""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
from pathlib import Path

import pytest

from bids_regionx.config import (
    SECTIONS,
    FrozenMap,
    InvalidSettingsError,
    MapsSettings,
    RegionSettings,
    Settings,
    builtin_denoise_strategies,
    coerce_mapping,
    diff_output_options,
)
from bids_regionx.errors import UnknownAnalysisLevelError, UsageError

# The minimum set of built-in strategies that product.md promises.
PRODUCT_STRATEGIES = {
    "none",
    "simple",
    "simple+gsr",
    "scrubbing.5",
    "scrubbing.2",
    "compcor",
    "24P",
    "36P",
}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    # Relative paths and the default work dir resolve against the working directory.
    monkeypatch.chdir(tmp_path)


def make_data(tmp_path: Path, level: str = "participant", **sections: dict) -> dict:
    """Nested settings data for a run on tmp_path/ds with one maps file."""
    data = {
        "bids_dir": str(tmp_path / "ds"),
        "output_dir": str(tmp_path / "out"),
        "analysis_level": level,
        "maps": {"files": [str(tmp_path / "maps" / "ica.nii.gz")]},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return data


def make(tmp_path: Path, level: str = "participant", **sections: dict) -> Settings:
    return Settings.from_dict(make_data(tmp_path, level, **sections))


def with_value(settings: Settings, section: str, name: str, value) -> Settings:
    updated = dataclasses.replace(getattr(settings, section), **{name: value})
    return dataclasses.replace(settings, **{section: updated})


# --- structure and defaults -------------------------------------------------------------------

DEFAULTS = [
    ("selection", "participant_labels", ()),
    ("selection", "session_labels", ()),
    ("selection", "task_ids", ()),
    ("selection", "space", None),
    ("selection", "bids_filter_file", None),
    ("selection", "bids_filters", FrozenMap()),
    ("selection", "bids_database_dir", None),
    ("selection", "datasets", FrozenMap()),
    ("maps", "labels", ()),
    ("maps", "labels_tsv", ()),
    ("maps", "atlas", None),
    ("maps", "mask", None),
    ("regions", "min_region_size", 1350.0),
    ("regions", "threshold", 1.0),
    ("regions", "thresholding_strategy", "ratio_n_voxels"),
    ("regions", "two_sided", False),
    ("regions", "extractor", "local_regions"),
    ("regions", "smoothing_fwhm", 6.0),
    ("regions", "resampling_target", "data"),
    ("regions", "allow_overlap", True),
    ("denoise", "strategy", "simple"),
    ("denoise", "fd_threshold", None),
    ("denoise", "dvars_threshold", None),
    ("denoise", "dummy_scans", None),
    ("denoise", "min_time", 0.0),
    ("denoise", "min_coverage", 0.5),
    ("denoise", "standardize", "none"),
    ("denoise", "standardize_confounds", True),
    ("denoise", "high_variance_confounds", False),
    ("denoise", "detrend", False),
    ("denoise", "low_pass", None),
    ("denoise", "high_pass", None),
    ("denoise", "t_r", None),
    ("denoise", "clean_args", FrozenMap()),
    ("denoise", "dtype", None),
    ("connectivity", "measures", ("correlation",)),
    ("connectivity", "cov_estimator", "empirical"),
    ("connectivity", "fisher_z", False),
    ("connectivity", "combine_runs", False),
    ("connectivity", "group_unit", "run"),
    ("execution", "nprocs", None),
    ("execution", "omp_nthreads", None),
    ("execution", "mem_gb", None),
    ("execution", "plugin", "MultiProc"),
    ("execution", "plugin_args", FrozenMap()),
    ("execution", "stop_on_first_crash", False),
    ("execution", "resource_monitor", False),
    ("execution", "write_graph", False),
    ("execution", "skip_bids_validation", False),
    ("execution", "config_file", None),
    ("execution", "verbosity", 0),
    ("reports", "write_reports", True),
    ("reports", "reports_only", False),
    ("reports", "boilerplate_only", False),
]


@pytest.mark.parametrize(("section", "name", "expected"), DEFAULTS)
def test_defaults(tmp_path, section, name, expected):
    assert getattr(getattr(make(tmp_path), section), name) == expected


def test_defaults_table_covers_every_field():
    listed = {(section, name) for section, name, _ in DEFAULTS}
    every = {(s, f.name) for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
    assert every - listed == {("maps", "files"), ("execution", "work_dir")}


def test_paths_are_absolute_and_sequences_tuples(tmp_path):
    settings = Settings.from_dict(
        {
            "bids_dir": "ds",
            "output_dir": "out",
            "analysis_level": "participant",
            "maps": {"files": ["a.nii.gz", "b.nii.gz"], "labels": ["a", "b"]},
            "selection": {"datasets": {"fmriprep": "prep"}, "participant_labels": ["sub-01"]},
        },
        base_dir=tmp_path / "base",
    )
    assert settings.bids_dir == tmp_path / "base" / "ds"
    assert settings.maps.files == (tmp_path / "base" / "a.nii.gz", tmp_path / "base" / "b.nii.gz")
    assert settings.maps.labels == ("a", "b")
    assert settings.selection.datasets == {"fmriprep": tmp_path / "base" / "prep"}
    assert settings.selection.participant_labels == ("01",)
    assert settings.execution.work_dir == tmp_path / "work"  # default: relative to the cwd
    assert settings.fmriprep_dir == tmp_path / "base" / "prep"


def test_direct_construction_normalises(tmp_path):
    settings = Settings(
        bids_dir="ds",
        output_dir=tmp_path / "out",
        analysis_level="participant",
        maps=MapsSettings(files=["m.nii.gz"]),
        regions=RegionSettings(min_region_size=10),
    )
    assert settings.bids_dir == tmp_path / "ds"
    assert settings.maps.files == (tmp_path / "m.nii.gz",)
    assert settings.regions.min_region_size == 10.0
    assert isinstance(settings.regions.min_region_size, float)
    assert settings.fmriprep_dir == tmp_path / "ds"


def test_frozen_hashable_and_picklable(tmp_path):
    settings = make(tmp_path, denoise={"clean_args": {"butterworth__order": 3}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.analysis_level = "group"
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.regions.threshold = 2.0
    assert hash(settings) == hash(
        make(tmp_path, denoise={"clean_args": {"butterworth__order": 3}})
    )
    assert pickle.loads(pickle.dumps(settings)) == settings


def test_frozen_map():
    frozen = FrozenMap({"a": 1, "b": 2})
    assert frozen == {"b": 2, "a": 1} == FrozenMap({"b": 2, "a": 1})
    assert hash(frozen) == hash(FrozenMap({"b": 2, "a": 1}))
    assert list(frozen) == ["a", "b"]
    with pytest.raises(TypeError):
        frozen["c"] = 3
    with pytest.raises(AttributeError):
        frozen._data = {}
    assert pickle.loads(pickle.dumps(frozen)) == frozen
    assert repr(frozen) == "FrozenMap({'a': 1, 'b': 2})"


# --- normalisation of individual values -------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "name", "value", "expected"),
    [
        ("selection", "participant_labels", ["sub-01", "02", "01"], ("01", "02")),
        ("selection", "session_labels", "ses-pre", ("pre",)),
        ("selection", "task_ids", ["task-rest", "nback"], ("rest", "nback")),
        ("maps", "labels", ["ica"], ("ica",)),
        ("regions", "threshold", 2, 2.0),
        ("regions", "threshold", "0.5", 0.5),
        ("denoise", "dummy_scans", "AUTO", "auto"),
        ("denoise", "dummy_scans", "4", 4),
        ("denoise", "dummy_scans", 0, 0),
        (
            "denoise",
            "clean_args",
            '{"butterworth__order": 3, "ensure_finite": true}',
            {"butterworth__order": 3, "ensure_finite": True},
        ),
        (
            "connectivity",
            "measures",
            ["partial_correlation", "Correlation", "partial correlation"],
            ("partial correlation", "correlation"),
        ),
        ("connectivity", "measures", "precision", ("precision",)),
        ("execution", "mem_gb", 16, 16.0),
        ("execution", "mem_gb", "8", 8.0),
        ("execution", "mem_gb", "8G", 8.0),
        ("execution", "mem_gb", "8gb", 8.0),
        ("execution", "mem_gb", "8000M", 8.0),
        ("execution", "mem_gb", "0.5T", 500.0),
        ("execution", "mem_gb", "512MiB", 0.536870912),
        ("execution", "nprocs", 4.0, 4),
        (
            "execution",
            "plugin_args",
            {"sbatch_args": "-p x", "max_jobs": 10},
            {"sbatch_args": "-p x", "max_jobs": 10},
        ),
    ],
)
def test_normalised_values(tmp_path, section, name, value, expected):
    got = getattr(getattr(make(tmp_path, **{section: {name: value}}), section), name)
    assert got == pytest.approx(expected) if isinstance(expected, float) else got == expected


def test_bids_filters_translate_null_and_star(tmp_path):
    filters = {"bold": {"desc": "preproc", "echo": None, "res": "*", "run": [1, None]}, "mask": {}}
    got = make(tmp_path, selection={"bids_filters": filters}).selection.bids_filters
    assert got == {
        "bold": {"desc": "preproc", "echo": "none", "res": "any", "run": (1, "none")},
        "mask": {},
    }
    assert isinstance(got["bold"], FrozenMap)


def test_denoise_strategy_name_or_file(tmp_path):
    assert make(tmp_path).denoise.strategy_path is None
    (tmp_path / "mine").write_text("{}")
    by_path = make(tmp_path, denoise={"strategy": "strategies/custom.json"}).denoise
    assert by_path.strategy == str(tmp_path / "strategies" / "custom.json")
    assert by_path.strategy_path == tmp_path / "strategies" / "custom.json"
    # An existing file without the .json suffix is a file too.
    assert make(tmp_path, denoise={"strategy": "mine"}).denoise.strategy == str(tmp_path / "mine")


def test_builtin_denoise_strategies(tmp_path):
    folder = tmp_path / "denoise"
    folder.mkdir()
    for name in ("simple.json", "scrubbing.5.json", "24P.json", "README.md"):
        (folder / name).write_text("{}")
    (folder / "sub.json").mkdir()
    assert builtin_denoise_strategies(folder) == ("24P", "scrubbing.5", "simple")
    assert builtin_denoise_strategies(tmp_path / "missing") == ()


def test_package_ships_product_strategies():
    assert PRODUCT_STRATEGIES <= set(builtin_denoise_strategies())


# --- invalid values ---------------------------------------------------------------------------

INVALID = [
    ("selection", "participant_labels", ["01_a"], "--participant-label: '01_a' is not a BIDS"),
    ("selection", "space", "MNI 152", "--space: 'MNI 152' is not a BIDS label"),
    ("selection", "datasets", ["fmriprep"], "-d/--datasets: expected NAME=PATH"),
    ("selection", "datasets", ["a=x", "a=y"], "dataset 'a' is given twice"),
    ("selection", "datasets", {"a:b": "x"}, "'a:b' is not a valid dataset name"),
    ("selection", "bids_filters", {"anat": {}}, "unknown query 'anat'"),
    ("selection", "bids_filters", {"bold": "x"}, "query 'bold' must map entities"),
    ("maps", "labels", ["a-b"], "--maps-label: 'a-b' is not a BIDS label"),
    ("maps", "files", [3], "--maps: expected a path"),
    ("regions", "min_region_size", -1, "--min-region-size: must be >= 0, got -1"),
    ("regions", "smoothing_fwhm", -0.5, "--smoothing-fwhm: must be >= 0"),
    ("regions", "threshold", "abc", "--threshold: expected a number, got 'abc'"),
    ("regions", "threshold", math.nan, "--threshold: expected a finite number"),
    ("regions", "threshold", True, "--threshold: expected a number, got True"),
    ("regions", "thresholding_strategy", "otsu", "--thresholding-strategy: must be one of"),
    ("regions", "extractor", "watershed", "--extractor: must be one of"),
    ("regions", "resampling_target", None, "--resampling-target: must be one of"),
    ("regions", "two_sided", "yes", "--two-sided: expected true or false"),
    ("denoise", "min_coverage", 1.5, "--min-coverage: must be between 0 and 1, got 1.5"),
    ("denoise", "min_coverage", -0.1, "--min-coverage: must be >= 0"),
    ("denoise", "fd_threshold", 0, "--fd-threshold: must be > 0, got 0"),
    ("denoise", "dvars_threshold", -1, "--dvars-threshold: must be > 0"),
    ("denoise", "low_pass", 0, "--low-pass: must be > 0"),
    ("denoise", "high_pass", -0.01, "--high-pass: must be > 0"),
    ("denoise", "t_r", 0, "--t-r: must be > 0"),
    ("denoise", "min_time", -1, "--min-time: must be >= 0"),
    ("denoise", "dummy_scans", -1, "--dummy-scans: expected a number of volumes >= 0 or 'auto'"),
    ("denoise", "dummy_scans", "some", "--dummy-scans: expected a number of volumes"),
    ("denoise", "standardize", "zscore", "--standardize: must be one of"),
    ("denoise", "dtype", "int8", "--dtype: must be one of"),
    ("denoise", "strategy", "nope", "--denoise-strategy: unknown strategy 'nope'; built-in:"),
    ("denoise", "clean_args", {"detrend": True}, "'detrend' is not allowed, use --detrend"),
    ("denoise", "clean_args", {"confounds": []}, "'confounds' is not allowed, it is set by"),
    ("denoise", "clean_args", "[1]", "--clean-args: expected a JSON object"),
    ("denoise", "clean_args", "{bad", "--clean-args: invalid JSON"),
    ("connectivity", "measures", ["pearson"], "--connectivity: unknown measure 'pearson'"),
    ("connectivity", "measures", [], "--connectivity: give at least one measure"),
    ("connectivity", "cov_estimator", "oas", "--cov-estimator: must be one of"),
    ("execution", "nprocs", 0, "--nprocs: must be >= 1, got 0"),
    ("execution", "nprocs", 1.5, "--nprocs: expected an integer"),
    ("execution", "omp_nthreads", 0, "--omp-nthreads: must be >= 1"),
    ("execution", "mem_gb", "lots", "--mem-gb: expected a size such as 8"),
    ("execution", "mem_gb", "8X", "--mem-gb: expected a size"),
    ("execution", "mem_gb", 0, "--mem-gb: must be > 0"),
    ("execution", "plugin", "PBS", "--plugin: must be one of"),
    ("execution", "plugin_args", "{", "--plugin-args: invalid JSON"),
    ("execution", "verbosity", -1, "-v: must be >= 0"),
    ("reports", "write_reports", 1, "--reports/--no-reports: expected true or false"),
]


@pytest.mark.parametrize(("section", "name", "value", "fragment"), INVALID)
def test_invalid_value(tmp_path, section, name, value, fragment):
    with pytest.raises(InvalidSettingsError) as caught:
        make(tmp_path, **{section: {name: value}})
    assert fragment in str(caught.value)
    assert caught.value.exit_code == 64
    assert isinstance(caught.value, (UsageError, ValueError))


CROSS_FIELD = [
    ({"output_dir": "{ds}"}, "output_dir {ds} is bids_dir {ds}; write the derivatives beside"),
    ({"output_dir": "{ds}/derivatives/x"}, "is inside bids_dir"),
    (
        {"selection": {"datasets": {"fmriprep": "{tmp}/prep"}}, "output_dir": "{tmp}/prep/out"},
        "is inside the -d fmriprep dataset",
    ),
    ({"execution": {"work_dir": "{ds}/work"}}, "-w/--work-dir {ds}/work is inside bids_dir"),
    ({"execution": {"work_dir": "{tmp}/out"}}, "-w/--work-dir {tmp}/out must differ from"),
    ({"selection": {"bids_database_dir": "{ds}/.db"}}, "--bids-database-dir {ds}/.db is inside"),
    (
        {"denoise": {"low_pass": 0.01, "high_pass": 0.1}},
        "--low-pass (0.01 Hz) must be greater than --high-pass (0.1 Hz)",
    ),
    ({"denoise": {"low_pass": 0.1, "high_pass": 0.1}}, "must be greater than --high-pass"),
    (
        {"denoise": {"low_pass": 0.3, "t_r": 2.0}},
        "--low-pass (0.3 Hz) must be below the Nyquist frequency (0.25 Hz for --t-r 2 s)",
    ),
    ({"denoise": {"high_pass": 0.5, "t_r": 2.0}}, "--high-pass (0.5 Hz) must be below"),
    ({"regions": {"threshold": 0}}, "--threshold must be > 0 with --thresholding-strategy ratio"),
    ({"regions": {"threshold": -1}}, "must be > 0 with --thresholding-strategy ratio_n_voxels"),
    (
        {"regions": {"threshold": 150, "thresholding_strategy": "percentile"}},
        "between 0 and 100 with --thresholding-strategy percentile, got 150",
    ),
    ({"regions": {"threshold": -5, "thresholding_strategy": "percentile"}}, "between 0 and 100"),
    (
        {"regions": {"threshold": -1, "thresholding_strategy": "img_value", "two_sided": True}},
        "--threshold must be >= 0 with --two-sided",
    ),
    (
        {"connectivity": {"measures": ["correlation", "tangent"]}},
        "--connectivity tangent is only available at the group level",
    ),
    ({"maps": {"files": []}}, "no maps: give --maps PATH [PATH ...] or --atlas LABEL"),
    ({"maps": {"atlas": "DiFuMo"}}, "give either --maps or --atlas, not both"),
    ({"maps": {"labels": ["a", "b"]}}, "--maps-label: give one per --maps file (1 files, 2"),
    ({"maps": {"files": ["a", "b"], "labels": ["x", "x"]}}, "labels must be unique (x repeated)"),
    ({"maps": {"labels_tsv": ["a.tsv", "b.tsv"]}}, "--maps-labels-tsv: give one per --maps"),
    ({"selection": {"datasets": {"atlases": "{tmp}/atl"}}}, "-d atlases=PATH needs --atlas"),
    ({"regions": {"resampling_target": "mask"}}, "--resampling-target mask needs --mask"),
    ({"reports": {"reports_only": True, "boilerplate_only": True}}, "exclude each other"),
    (
        {"reports": {"reports_only": True, "write_reports": False}},
        "--reports-only and --no-reports exclude each other",
    ),
]


def _format(value, tmp_path):
    if isinstance(value, dict):
        return {key: _format(item, tmp_path) for key, item in value.items()}
    if isinstance(value, list):
        return [_format(item, tmp_path) for item in value]
    if isinstance(value, str):
        return value.format(tmp=tmp_path, ds=tmp_path / "ds")
    return value


@pytest.mark.parametrize(("overrides", "fragment"), CROSS_FIELD)
def test_cross_field_problem(tmp_path, overrides, fragment):
    data = make_data(tmp_path)
    for key, value in _format(overrides, tmp_path).items():
        if isinstance(value, dict):
            data.setdefault(key, {}).update(value)
        else:
            data[key] = value
    with pytest.raises(InvalidSettingsError) as caught:
        Settings.from_dict(data)
    assert _format(fragment, tmp_path) in str(caught.value)
    assert len(caught.value.problems) == 1


@pytest.mark.parametrize(
    "sections",
    [
        {"connectivity": {"measures": ["tangent", "correlation"]}, "maps": {"files": []}},
        {"maps": {"files": [], "atlas": "DiFuMo"}},
        {"regions": {"threshold": 0, "thresholding_strategy": "percentile"}},
        {"regions": {"threshold": 100, "thresholding_strategy": "percentile", "two_sided": True}},
        {"regions": {"threshold": -2, "thresholding_strategy": "img_value"}},
        {"regions": {"threshold": 0.5}},
        {"regions": {"smoothing_fwhm": 0, "min_region_size": 0}},
        {"regions": {"resampling_target": "mask"}, "maps": {"mask": "mask.nii.gz"}},
        {"denoise": {"low_pass": 0.1, "high_pass": 0.01}},
        {"denoise": {"low_pass": 0.2, "high_pass": 0.01, "t_r": 2.0}},
        {"denoise": {"min_coverage": 0}},
        {"denoise": {"min_coverage": 1}},
        {"maps": {"files": ["a", "b"], "labels": ["a", "b"], "labels_tsv": ["a.tsv", "b.tsv"]}},
        {"selection": {"datasets": {"atlases": "atl"}}, "maps": {"files": [], "atlas": "x"}},
        {"execution": {"work_dir": "out/work"}},
    ],
)
def test_valid_combinations(tmp_path, sections):
    level = "group" if "tangent" in str(sections) else "participant"
    make(tmp_path, level, **sections)


def test_group_level_needs_no_maps(tmp_path):
    data = make_data(tmp_path, "group")
    del data["maps"]
    assert Settings.from_dict(data).maps.files == ()


def test_all_problems_reported_together(tmp_path):
    data = make_data(
        tmp_path,
        regions={"min_region_size": -1, "thresholding_strategy": "otsu"},
        denoise={"low_pass": 0.01, "high_pass": 0.1, "min_coverage": 3},
        connectivity={"measures": ["tangent"]},
    )
    data["output_dir"] = str(tmp_path / "ds" / "out")
    with pytest.raises(InvalidSettingsError) as caught:
        Settings.from_dict(data)
    problems = caught.value.problems
    assert len(problems) == 6
    message = str(caught.value)
    assert message.startswith("6 problems: ")
    assert "\n" not in message
    for fragment in (
        "--min-region-size",
        "--thresholding-strategy",
        "--min-coverage",
        "--low-pass",
        "tangent",
        "output_dir",
    ):
        assert fragment in message


def test_unknown_analysis_level(tmp_path):
    with pytest.raises(UnknownAnalysisLevelError) as caught:
        make(tmp_path, "session")
    assert caught.value.exit_code == 17
    assert "'session'" in str(caught.value)


def test_missing_and_unknown_keys(tmp_path):
    with pytest.raises(InvalidSettingsError) as caught:
        Settings.from_dict(
            {"analysis_level": "participant", "colour": 1, "regions": {"thresh": 1}, "denoise": 3}
        )
    problems = caught.value.problems
    assert "colour: unknown setting" in problems
    assert "regions.thresh: unknown setting" in problems
    assert "denoise: expected a table of settings" in problems
    assert {"bids_dir: missing", "output_dir: missing"} <= set(problems)


def test_coerce_mapping_names_source_keys(tmp_path):
    values, problems = coerce_mapping(
        {"regions": {"min-region-size": "x", "threshold": 2}}, base_dir=tmp_path, source="my.toml"
    )
    assert values == {"regions": {"threshold": 2.0}}
    assert problems == ["my.toml: regions.min_region_size: expected a number, got 'x'"]


def test_warnings(tmp_path):
    assert make(tmp_path).warnings() == ()
    notes = make(
        tmp_path,
        execution={"nprocs": 2, "omp_nthreads": 4},
        connectivity={"fisher_z": True, "measures": ["covariance"]},
    ).warnings()
    assert len(notes) == 2
    assert "--omp-nthreads (4) is larger than --nprocs (2)" in notes[0]
    assert "--fisher-z" in notes[1]


# --- TOML round trip --------------------------------------------------------------------------


def full_settings(tmp_path: Path) -> Settings:
    """Settings with a non-default value in every field."""
    return make(
        tmp_path,
        "group",
        selection={
            "participant_labels": ["01", "02"],
            "session_labels": ["pre"],
            "task_ids": ["rest"],
            "space": "MNI152NLin6Asym",
            "bids_filter_file": "filters.json",
            "bids_filters": {"bold": {"desc": "preproc", "echo": None, "res": "*", "run": [1, 2]}},
            "bids_database_dir": "db",
            "datasets": {"fmriprep": "prep", "atlases": "atlases"},
        },
        maps={"files": [], "atlas": "DiFuMo", "mask": "mask.nii.gz"},
        regions={
            "min_region_size": 500,
            "threshold": 90,
            "thresholding_strategy": "percentile",
            "two_sided": True,
            "extractor": "connected_components",
            "smoothing_fwhm": 0,
            "resampling_target": "mask",
            "allow_overlap": False,
        },
        denoise={
            "strategy": "strategies/mine.json",
            "fd_threshold": 0.5,
            "dvars_threshold": 1.5,
            "dummy_scans": "auto",
            "min_time": 240,
            "min_coverage": 0.25,
            "standardize": "zscore_sample",
            "standardize_confounds": False,
            "high_variance_confounds": True,
            "detrend": True,
            "low_pass": 0.08,
            "high_pass": 0.01,
            "t_r": 2,
            "clean_args": {"butterworth__order": 3, "nested": {"list": [1, 2]}},
            "dtype": "float32",
        },
        connectivity={
            "measures": ["tangent", "partial correlation", "covariance"],
            "cov_estimator": "ledoit_wolf",
            "fisher_z": True,
            "combine_runs": True,
            "group_unit": "subject",
        },
        execution={
            "work_dir": "scratch",
            "nprocs": 8,
            "omp_nthreads": 2,
            "mem_gb": "16G",
            "plugin": "SLURM",
            "plugin_args": {"sbatch_args": "--time=1:00:00", "max_jobs": 4},
            "stop_on_first_crash": True,
            "resource_monitor": True,
            "write_graph": True,
            "skip_bids_validation": True,
            "config_file": "config.toml",
            "verbosity": 2,
        },
        reports={"write_reports": True, "reports_only": True, "boilerplate_only": False},
    )


def test_full_settings_differ_from_defaults_everywhere(tmp_path):
    full, default = full_settings(tmp_path), make(tmp_path, "group", maps={"files": []})
    same = [
        f"{section}.{spec.name}"
        for section in SECTIONS
        for spec in dataclasses.fields(SECTIONS[section])
        if getattr(getattr(full, section), spec.name)
        == getattr(getattr(default, section), spec.name)
    ]
    # --reports-only excludes --no-reports and --boilerplate-only; --atlas excludes --maps.
    assert same == [
        "maps.files",
        "maps.labels",
        "maps.labels_tsv",
        "reports.write_reports",
        "reports.boilerplate_only",
    ]


@pytest.mark.parametrize("which", ["default", "full", "maps"])
def test_toml_round_trip(tmp_path, which):
    settings = {
        "default": lambda: make(tmp_path),
        "full": lambda: full_settings(tmp_path),
        "maps": lambda: make(
            tmp_path,
            maps={
                "files": ["a.nii.gz", "b.nii.gz"],
                "labels": ["a", "b"],
                "labels_tsv": ["a.tsv", "b.tsv"],
            },
        ),
    }[which]()
    text = settings.to_toml()
    assert text == settings.to_toml()  # deterministic
    again = Settings.from_toml(text, base_dir=tmp_path / "elsewhere")
    assert again == settings
    assert again.output_hash() == settings.output_hash()
    assert again.to_toml() == text


def test_to_dict_is_json_ready(tmp_path):
    data = full_settings(tmp_path).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["denoise"]["low_pass"] == 0.08
    assert data["maps"]["labels"] == []


def test_from_toml_relative_paths_and_errors(tmp_path):
    text = (
        'bids_dir = "ds"\noutput_dir = "out"\nanalysis_level = "participant"\n'
        '[maps]\nfiles = ["m.nii.gz"]\n'
    )
    settings = Settings.from_toml(text, base_dir=tmp_path / "cfg")
    assert settings.bids_dir == tmp_path / "cfg" / "ds"
    assert settings.maps.files == (tmp_path / "cfg" / "m.nii.gz",)
    with pytest.raises(InvalidSettingsError, match="invalid TOML"):
        Settings.from_toml("bids_dir = ")


# --- output identity --------------------------------------------------------------------------


def fixed(tmp_path: Path) -> Settings:
    return make(tmp_path)


def test_output_hash_golden(tmp_path):
    # Changing this value invalidates every existing output dir: do it only on purpose.
    settings = fixed(tmp_path)
    assert settings.output_hash() == "c458f6e7b755"
    assert len(settings.output_hash()) == 12


def test_output_hash_independent_of_locations(tmp_path):
    here = fixed(tmp_path / "a")
    there = Settings.from_dict(
        {
            "bids_dir": "/elsewhere/ds",
            "output_dir": "/elsewhere/out",
            "analysis_level": "group",
            "maps": {"files": ["/other/dir/ica.nii.gz"]},
        }
    )
    assert here.output_hash() == there.output_hash()


NOT_OUTPUT = [
    ("selection", "participant_labels", ["01"]),
    ("selection", "session_labels", ["1"]),
    ("selection", "task_ids", ["rest"]),
    ("selection", "bids_filter_file", "/f.json"),
    ("selection", "bids_filters", {"bold": {"desc": "preproc"}}),
    ("selection", "bids_database_dir", "/db"),
    ("selection", "datasets", {"fmriprep": "/prep"}),
    ("connectivity", "group_unit", "subject"),
    ("execution", "work_dir", "/scratch"),
    ("execution", "nprocs", 3),
    ("execution", "omp_nthreads", 3),
    ("execution", "mem_gb", 3),
    ("execution", "plugin", "Linear"),
    ("execution", "plugin_args", {"x": 1}),
    ("execution", "stop_on_first_crash", True),
    ("execution", "resource_monitor", True),
    ("execution", "write_graph", True),
    ("execution", "skip_bids_validation", True),
    ("execution", "config_file", "/c.toml"),
    ("execution", "verbosity", 3),
    ("reports", "write_reports", False),
    ("reports", "reports_only", True),
    ("reports", "boilerplate_only", True),
]


@pytest.mark.parametrize(("section", "name", "value"), NOT_OUTPUT)
def test_output_hash_ignores(tmp_path, section, name, value):
    base = fixed(tmp_path)
    changed = with_value(base, section, name, value)
    assert getattr(getattr(changed, section), name) != getattr(getattr(base, section), name)
    assert changed.output_hash() == base.output_hash()


OUTPUT = [
    ("selection", "space", "MNI152NLin6Asym"),
    ("maps", "files", ["/x/other.nii.gz"]),
    ("maps", "labels", ["ica"]),
    ("maps", "labels_tsv", ["/x/ica.tsv"]),
    ("maps", "atlas", "DiFuMo"),
    ("maps", "mask", "/x/mask.nii.gz"),
    ("regions", "min_region_size", 1000),
    ("regions", "threshold", 2),
    ("regions", "thresholding_strategy", "img_value"),
    ("regions", "two_sided", True),
    ("regions", "extractor", "connected_components"),
    ("regions", "smoothing_fwhm", 4),
    ("regions", "resampling_target", "maps"),
    ("regions", "allow_overlap", False),
    ("denoise", "strategy", "36P"),
    ("denoise", "fd_threshold", 0.5),
    ("denoise", "dvars_threshold", 1.5),
    ("denoise", "dummy_scans", 2),
    ("denoise", "min_time", 100),
    ("denoise", "min_coverage", 0.6),
    ("denoise", "standardize", "psc"),
    ("denoise", "standardize_confounds", False),
    ("denoise", "high_variance_confounds", True),
    ("denoise", "detrend", True),
    ("denoise", "low_pass", 0.1),
    ("denoise", "high_pass", 0.01),
    ("denoise", "t_r", 2),
    ("denoise", "clean_args", {"butterworth__order": 3}),
    ("denoise", "dtype", "float32"),
    ("connectivity", "measures", ["covariance"]),
    ("connectivity", "cov_estimator", "ledoit_wolf"),
    ("connectivity", "fisher_z", True),
    ("connectivity", "combine_runs", True),
]


@pytest.mark.parametrize(("section", "name", "value"), OUTPUT)
def test_output_hash_changes_with(tmp_path, section, name, value):
    base = fixed(tmp_path)
    data = make_data(tmp_path, **{section: {name: value}})
    if name == "atlas":
        data["maps"]["files"] = []
    changed = Settings.from_dict(data)
    assert changed.output_hash() != base.output_hash()
    assert diff_output_options(base.output_options(), changed.output_options())[0].startswith(
        f"{section}.{name}: "
    )


def test_output_tables_cover_every_field(tmp_path):
    outputs = {f"{s}.{n}" for s, n, _ in OUTPUT}
    assert outputs == set(fixed(tmp_path).output_options())
    ignored = {f"{s}.{n}" for s, n, _ in NOT_OUTPUT}
    every = {f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
    assert outputs | ignored == every
    assert not outputs & ignored


def test_output_options_canonical(tmp_path):
    settings = make(
        tmp_path,
        "group",
        connectivity={"measures": ["tangent", "precision", "correlation"]},
        denoise={"strategy": str(tmp_path / "deep" / "mine.json")},
        maps={"mask": "masks/brain.nii.gz"},
    )
    options = settings.output_options()
    assert list(options) == sorted(options)
    assert options["connectivity.measures"] == ["correlation", "precision"]  # no group-only
    assert options["denoise.strategy"] == "mine.json"
    assert options["maps.files"] == ["ica.nii.gz"]
    assert options["maps.mask"] == "brain.nii.gz"
    assert json.loads(json.dumps(options)) == options
    # Adding a group-only measure or reordering measures keeps the hash.
    plain = make(
        tmp_path,
        connectivity={"measures": ["correlation", "precision"]},
        denoise={"strategy": "/else/mine.json"},
        maps={"mask": "brain.nii.gz"},
    )
    assert plain.output_hash() == settings.output_hash()


def test_diff_output_options():
    a = {"regions.threshold": 1.0, "denoise.strategy": "simple", "maps.files": ["a.nii.gz"]}
    b = {"regions.threshold": 2.0, "denoise.strategy": "simple", "maps.mask": "m.nii.gz"}
    assert diff_output_options(a, b) == [
        'maps.files: ["a.nii.gz"] vs <unset>',
        'maps.mask: <unset> vs "m.nii.gz"',
        "regions.threshold: 1.0 vs 2.0",
    ]
    assert diff_output_options(a, dict(a)) == []
    # Options read back from JSON (e.g. an existing dataset_description.json) compare equal.
    assert diff_output_options(json.loads(json.dumps(a)), a) == []
