"""Tests for bids_regionx.cli.parser: every option, both spellings, errors and exit codes."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from bids_regionx import __version__
from bids_regionx.cli.parser import _hyphenate_options, build_parser, parse_args
from bids_regionx.config import SECTIONS, InvalidSettingsError, Settings
from bids_regionx.errors import (
    BidsRegionxError,
    NoInputError,
    UnknownAnalysisLevelError,
    UsageError,
)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


class P(str):
    """An expected path, relative to the test's working directory."""


class PathText(str):
    """An expected path as a string, relative to the test's working directory."""


def resolve(expected, tmp_path: Path):
    if isinstance(expected, PathText):
        return str(tmp_path / expected)
    if isinstance(expected, P):
        return tmp_path / expected
    if isinstance(expected, tuple):
        return tuple(resolve(item, tmp_path) for item in expected)
    if isinstance(expected, dict):
        return {key: resolve(item, tmp_path) for key, item in expected.items()}
    return expected


def argv_for(*options: str, level: str = "participant") -> list[str]:
    maps = [] if "--atlas" in options else ["--maps", "maps.nii.gz"]
    return ["ds", "out", level, *maps, *options]


def value_at(settings: Settings, dest: str):
    section, name = dest.split(".")
    return getattr(getattr(settings, section), name)


OPTION_CASES = [
    (("--participant-label", "01", "sub-02"), "selection.participant_labels", ("01", "02")),
    (
        ("--participant-label", "01", "--participant-label", "3"),
        "selection.participant_labels",
        ("01", "3"),
    ),
    (("--session-label", "ses-1", "2"), "selection.session_labels", ("1", "2")),
    (("-t", "rest"), "selection.task_ids", ("rest",)),
    (("--task-id", "task-rest", "nback"), "selection.task_ids", ("rest", "nback")),
    (("--space", "MNI152NLin6Asym"), "selection.space", "MNI152NLin6Asym"),
    (("--bids-filter-file", "filters.json"), "selection.bids_filter_file", P("filters.json")),
    (("--bids-database-dir", "db"), "selection.bids_database_dir", P("db")),
    (
        ("-d", "fmriprep=prep", "confounds=conf"),
        "selection.datasets",
        {"fmriprep": P("prep"), "confounds": P("conf")},
    ),
    (
        ("--datasets", "fmriprep=prep", "-d", "x=y"),
        "selection.datasets",
        {"fmriprep": P("prep"), "x": P("y")},
    ),
    (("--maps", "b.nii.gz"), "maps.files", (P("maps.nii.gz"), P("b.nii.gz"))),
    (("--maps-label", "ica"), "maps.labels", ("ica",)),
    (("--maps-labels-tsv", "ica.tsv"), "maps.labels_tsv", (P("ica.tsv"),)),
    (("--atlas", "DiFuMo"), "maps.atlas", "DiFuMo"),
    (("--mask", "mask.nii.gz"), "maps.mask", P("mask.nii.gz")),
    (("--min-region-size", "100"), "regions.min_region_size", 100.0),
    (("--threshold", "0.5"), "regions.threshold", 0.5),
    (("--thresholding-strategy", "img_value"), "regions.thresholding_strategy", "img_value"),
    (("--two-sided",), "regions.two_sided", True),
    (("--no-two-sided",), "regions.two_sided", False),
    (("--extractor", "connected_components"), "regions.extractor", "connected_components"),
    (("--smoothing-fwhm", "0"), "regions.smoothing_fwhm", 0.0),
    (("--resampling-target", "maps"), "regions.resampling_target", "maps"),
    (("--resampling-target", "none"), "regions.resampling_target", "none"),
    (("--allow-overlap",), "regions.allow_overlap", True),
    (("--no-allow-overlap",), "regions.allow_overlap", False),
    (("--denoise-strategy", "36P"), "denoise.strategy", "36P"),
    (("--denoise-strategy", "mine.json"), "denoise.strategy", PathText("mine.json")),
    (("--fd-threshold", "0.5"), "denoise.fd_threshold", 0.5),
    (("--dvars-threshold", "1.5"), "denoise.dvars_threshold", 1.5),
    (("--dummy-scans", "auto"), "denoise.dummy_scans", "auto"),
    (("--dummy-scans", "3"), "denoise.dummy_scans", 3),
    (("--min-time", "240"), "denoise.min_time", 240.0),
    (("--min-coverage", "0.8"), "denoise.min_coverage", 0.8),
    (("--standardize", "zscore_sample"), "denoise.standardize", "zscore_sample"),
    (("--no-standardize-confounds",), "denoise.standardize_confounds", False),
    (("--standardize-confounds",), "denoise.standardize_confounds", True),
    (("--high-variance-confounds",), "denoise.high_variance_confounds", True),
    (("--no-high-variance-confounds",), "denoise.high_variance_confounds", False),
    (("--detrend",), "denoise.detrend", True),
    (("--no-detrend",), "denoise.detrend", False),
    (("--low-pass", "0.08"), "denoise.low_pass", 0.08),
    (("--high-pass", "0.01"), "denoise.high_pass", 0.01),
    (("--t-r", "2"), "denoise.t_r", 2.0),
    (
        ("--clean-args", '{"butterworth__order": 3}'),
        "denoise.clean_args",
        {"butterworth__order": 3},
    ),
    (("--dtype", "float32"), "denoise.dtype", "float32"),
    (
        ("--connectivity", "correlation", "partial correlation"),
        "connectivity.measures",
        ("correlation", "partial correlation"),
    ),
    (
        ("--connectivity", "partial_correlation", "precision", "covariance"),
        "connectivity.measures",
        ("partial correlation", "precision", "covariance"),
    ),
    (("--cov-estimator", "ledoit_wolf"), "connectivity.cov_estimator", "ledoit_wolf"),
    (("--fisher-z",), "connectivity.fisher_z", True),
    (("--no-fisher-z",), "connectivity.fisher_z", False),
    (("--combine-runs",), "connectivity.combine_runs", True),
    (("--no-combine-runs",), "connectivity.combine_runs", False),
    (("--group-unit", "subject"), "connectivity.group_unit", "subject"),
    (("-w", "scratch"), "execution.work_dir", P("scratch")),
    (("--work-dir", "/abs/scratch"), "execution.work_dir", Path("/abs/scratch")),
    (("--nprocs", "4"), "execution.nprocs", 4),
    (("--nthreads", "5"), "execution.nprocs", 5),
    (("--n-cpus", "6"), "execution.nprocs", 6),
    (("--omp-nthreads", "2"), "execution.omp_nthreads", 2),
    (("--mem-gb", "8G"), "execution.mem_gb", 8.0),
    (("--mem-gb", "8000M"), "execution.mem_gb", 8.0),
    (("--mem", "16"), "execution.mem_gb", 16.0),
    (("--plugin", "SLURMGraph"), "execution.plugin", "SLURMGraph"),
    (("--plugin-args", '{"max_jobs": 10}'), "execution.plugin_args", {"max_jobs": 10}),
    (("--stop-on-first-crash",), "execution.stop_on_first_crash", True),
    (("--no-stop-on-first-crash",), "execution.stop_on_first_crash", False),
    (("--resource-monitor",), "execution.resource_monitor", True),
    (("--no-resource-monitor",), "execution.resource_monitor", False),
    (("--write-graph",), "execution.write_graph", True),
    (("--no-write-graph",), "execution.write_graph", False),
    (("--skip-bids-validation",), "execution.skip_bids_validation", True),
    (("--no-skip-bids-validation",), "execution.skip_bids_validation", False),
    (("-v",), "execution.verbosity", 1),
    (("-vvv",), "execution.verbosity", 3),
    (("--verbose", "--verbose"), "execution.verbosity", 2),
    (("--reports",), "reports.write_reports", True),
    (("--no-reports",), "reports.write_reports", False),
    (("--reports-only",), "reports.reports_only", True),
    (("--no-reports-only",), "reports.reports_only", False),
    (("--boilerplate-only",), "reports.boilerplate_only", True),
    (("--no-boilerplate-only",), "reports.boilerplate_only", False),
]
# Options whose behaviour needs files on disk; they have their own tests below.
TESTED_ELSEWHERE = {"--config-file"}


def underscored(options: tuple[str, ...]) -> tuple[str, ...]:
    return tuple("--" + o[2:].replace("-", "_") if o.startswith("--") else o for o in options)


@pytest.mark.parametrize(("options", "dest", "expected"), OPTION_CASES)
@pytest.mark.parametrize("spelling", ["hyphen", "underscore"])
def test_option_parses(tmp_path, options, dest, expected, spelling):
    if spelling == "underscore":
        options = underscored(options)
    settings = parse_args(argv_for(*options))
    assert value_at(settings, dest) == resolve(expected, tmp_path)


def test_option_cases_cover_every_option_string():
    covered = {token for options, _, _ in OPTION_CASES for token in options}
    covered.add("-v")
    every = {
        string
        for action in build_parser()._actions
        for string in action.option_strings
        if action.dest not in ("help", "version")
    }
    assert every - covered == TESTED_ELSEWHERE


def test_every_dest_is_a_settings_field():
    dests = {a.dest for a in build_parser()._actions if a.dest not in ("help", "version")}
    fields = {f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
    top = {"bids_dir", "output_dir", "analysis_level"}
    assert dests - top <= fields
    # Only the filters themselves are not an option: they come from --bids-filter-file.
    assert fields - dests == {"selection.bids_filters"}


def test_equals_form_and_underscores(tmp_path):
    settings = parse_args(argv_for("--min_region_size=10", "--participant_label=sub-01"))
    assert settings.regions.min_region_size == 10.0
    assert settings.selection.participant_labels == ("01",)


def test_hyphenate_options_leaves_values_alone():
    args = ["--a_b=c_d", "-t", "x_y", "--", "--e_f"]
    assert _hyphenate_options(args) == ["--a-b=c_d", "-t", "x_y", "--", "--e_f"]


def test_defaults_match_settings(tmp_path):
    parsed = parse_args(["ds", "out", "participant", "--maps", "maps.nii.gz"])
    direct = Settings(
        bids_dir=tmp_path / "ds",
        output_dir=tmp_path / "out",
        analysis_level="participant",
        maps=SECTIONS["maps"](files=(tmp_path / "maps.nii.gz",)),
    )
    assert parsed == direct
    assert parsed.execution.work_dir == tmp_path / "work"


def test_parser_defaults_are_the_settings_defaults():
    for action in build_parser()._actions:
        if "." not in action.dest or action.default is None:
            continue
        section, name = action.dest.split(".")
        spec = next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == name)
        if spec.default is not dataclasses.MISSING:
            assert action.default == spec.default, action.dest


def test_group_level_and_tangent(tmp_path):
    settings = parse_args(["ds", "out", "group", "--connectivity", "tangent", "correlation"])
    assert settings.analysis_level == "group"
    assert settings.connectivity.measures == ("tangent", "correlation")
    assert settings.maps.files == ()


# --- help and version ---------------------------------------------------------------------------


def test_help_exits_zero_and_shows_defaults(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # no line wrapping inside the checked phrases
    with pytest.raises(SystemExit) as caught:
        parse_args(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    for text in (
        "(default: 1350.0)",
        "(default: ratio_n_voxels)",
        "(default: correlation)",
        "(default: 0.5)",
        "region extraction:",
        "denoising and cleaning:",
        "underscores",
        "simple+gsr",
        "--no-allow-overlap",
    ):
        assert text in out
    assert "FrozenMap" not in out
    assert "default: None" not in out


def test_version(capsys):
    with pytest.raises(SystemExit) as caught:
        parse_args(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.strip() == f"bids_regionx {__version__}"


def test_parser_imports_only_the_standard_library(tmp_path):
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "from bids_regionx.cli import parse_args, run_preflight\n"
        "parse_args(['ds', 'out', 'participant', '--maps', 'm.nii.gz'])\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(sorted(new - set(sys.stdlib_module_names) - {'bids_regionx'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, check=True
    )
    assert result.stdout.strip() == "[]"


# --- argparse-level errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "error", "fragment"),
    [
        (["ds", "out", "participant", "--bogus"], UsageError, "unrecognized arguments: --bogus"),
        (["ds"], UsageError, "the following arguments are required: output_dir"),
        ([], UsageError, "required"),
        (["ds", "out", "session"], UnknownAnalysisLevelError, "invalid choice: 'session'"),
        (["ds", "out", "Participant", "--bogus"], UnknownAnalysisLevelError, "analysis_level"),
        (["ds", "out", "participant", "--threshold", "x"], UsageError, "invalid float value"),
        (["ds", "out", "participant", "--nprocs", "1.5"], UsageError, "invalid int value"),
        (["ds", "out", "participant", "--plugin", "PBS"], UsageError, "invalid choice: 'PBS'"),
        (["ds", "out", "participant", "--connectivity", "pearson"], UsageError, "invalid choice"),
        (["ds", "out", "participant", "--thresh", "2"], UsageError, "unrecognized arguments"),
        (["ds", "out", "participant", "--maps"], UsageError, "expected at least one argument"),
        (["ds", "out", "participant", "--two-sided=yes"], UsageError, "ignored explicit"),
    ],
)
def test_argparse_errors_raise_instead_of_exiting(argv, error, fragment):
    with pytest.raises(error) as caught:
        parse_args(argv)
    assert fragment in str(caught.value)
    assert caught.value.exit_code == (17 if error is UnknownAnalysisLevelError else 64)


def test_build_parser_never_exits_with_2():
    parser = build_parser()
    with pytest.raises(UnknownAnalysisLevelError):
        parser.parse_args(["ds", "out", "subject"])
    with pytest.raises(UsageError):
        parser.parse_args(["ds", "out", "participant", "--nope"])
    assert isinstance(parser, argparse.ArgumentParser)


# --- parse-time checks --------------------------------------------------------------------------

PARSE_TIME = [
    (["{ds}", "{ds}", "participant"], "output_dir {ds} is bids_dir {ds}"),
    (["{ds}", "{ds}/derivatives/brx", "participant"], "is inside bids_dir {ds}; write the"),
    (["{ds}", "out", "participant", "-w", "{ds}/work"], "-w/--work-dir {ds}/work is inside"),
    (
        ["{ds}", "out", "participant", "--bids-database-dir", "{ds}/db"],
        "--bids-database-dir {ds}/db is inside bids_dir",
    ),
    (
        ["ds", "out", "participant", "--low-pass", "0.01", "--high-pass", "0.1"],
        "--low-pass (0.01 Hz) must be greater than --high-pass (0.1 Hz)",
    ),
    (["ds", "out", "participant", "--t-r", "2", "--low-pass", "0.3"], "Nyquist frequency"),
    (["ds", "out", "participant", "--threshold", "0"], "--threshold must be > 0"),
    (
        [
            "ds",
            "out",
            "participant",
            "--thresholding-strategy",
            "percentile",
            "--threshold",
            "101",
        ],
        "between 0 and 100",
    ),
    (["ds", "out", "participant", "--min-coverage", "1.1"], "--min-coverage: must be between"),
    (["ds", "out", "participant", "--min-region-size", "-1"], "--min-region-size: must be >= 0"),
    (["ds", "out", "participant", "--smoothing-fwhm", "-2"], "--smoothing-fwhm: must be >= 0"),
    (["ds", "out", "participant", "--min-time", "-5"], "--min-time: must be >= 0"),
    (["ds", "out", "participant", "--nprocs", "0"], "--nprocs: must be >= 1"),
    (["ds", "out", "participant", "--omp-nthreads", "0"], "--omp-nthreads: must be >= 1"),
    (["ds", "out", "participant", "--mem-gb", "0"], "--mem-gb: must be > 0"),
    (["ds", "out", "participant", "--mem-gb", "lots"], "--mem-gb: expected a size"),
    (["ds", "out", "participant", "--fd-threshold", "0"], "--fd-threshold: must be > 0"),
    (["ds", "out", "participant", "--t-r", "-1"], "--t-r: must be > 0"),
    (["ds", "out", "participant", "--dummy-scans", "-2"], "--dummy-scans: expected a number"),
    (
        ["ds", "out", "participant", "--connectivity", "tangent"],
        "--connectivity tangent is only available at the group level",
    ),
    (["ds", "out", "participant", "--clean-args", '{"t_r": 2}'], "use --t-r instead"),
    (["ds", "out", "participant", "--clean-args", "[]"], "--clean-args: expected a JSON object"),
    (["ds", "out", "participant", "--plugin-args", "{x"], "--plugin-args: invalid JSON"),
    (["ds", "out", "participant", "--denoise-strategy", "gsr"], "unknown strategy 'gsr'"),
    (["ds", "out", "participant", "--participant-label", "01_x"], "is not a BIDS label"),
    (["ds", "out", "participant", "-d", "fmriprep"], "-d/--datasets: expected NAME=PATH"),
    (["ds", "out", "participant", "--maps-label", "a", "b"], "give one per --maps file"),
    (["ds", "out", "participant", "--reports-only", "--no-reports"], "exclude each other"),
    (["ds", "out", "participant", "--resampling-target", "mask"], "needs --mask PATH"),
]


@pytest.mark.parametrize(("argv", "fragment"), PARSE_TIME)
def test_parse_time_check(tmp_path, argv, fragment):
    ds = str(tmp_path / "ds")
    argv = [a.replace("{ds}", ds) for a in argv] + ["--maps", "maps.nii.gz"]
    with pytest.raises(UsageError) as caught:
        parse_args(argv)
    assert fragment.replace("{ds}", ds) in str(caught.value)
    assert caught.value.exit_code == 64


def test_no_maps_at_participant_level():
    with pytest.raises(UsageError, match=r"no maps: give --maps"):
        parse_args(["ds", "out", "participant"])


def test_all_problems_reported_together(tmp_path):
    with pytest.raises(InvalidSettingsError) as caught:
        parse_args(
            [
                "ds",
                "ds/out",
                "participant",
                "--maps",
                "m.nii.gz",
                "--min-coverage",
                "2",
                "--low-pass",
                "0.01",
                "--high-pass",
                "0.1",
                "--connectivity",
                "tangent",
                "--clean-args",
                "{bad",
                "--nprocs",
                "0",
            ]
        )
    message = str(caught.value)
    assert len(caught.value.problems) == 6
    assert message.startswith("6 problems: ") and "\n" not in message
    for fragment in (
        "--min-coverage",
        "--clean-args",
        "--nprocs",
        "inside bids_dir",
        "--low-pass",
        "tangent",
    ):
        assert fragment in message


def test_unknown_strategy_lists_builtins():
    with pytest.raises(UsageError) as caught:
        parse_args(argv_for("--denoise-strategy", "fancy"))
    assert "simple" in str(caught.value) and "strategy JSON file" in str(caught.value)


def test_warnings_are_logged(caplog):
    with caplog.at_level(logging.WARNING, logger="bids_regionx.cli"):
        parse_args(argv_for("--nprocs", "2", "--omp-nthreads", "4"))
    assert "--omp-nthreads (4) is larger than --nprocs (2)" in caplog.text


# --- BIDS filter file ---------------------------------------------------------------------------


def test_bids_filter_file(tmp_path):
    path = tmp_path / "filters.json"
    path.write_text(
        json.dumps(
            {
                "bold": {"desc": "preproc", "echo": None, "res": "*"},
                "confounds": {"desc": "confounds"},
            }
        )
    )
    selection = parse_args(argv_for("--bids-filter-file", "filters.json")).selection
    assert selection.bids_filter_file == path
    assert selection.bids_filters == {
        "bold": {"desc": "preproc", "echo": "none", "res": "any"},
        "confounds": {"desc": "confounds"},
    }


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('{"bold": {"desc": "preproc",}}', "invalid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"t1w": {}}', "unknown query 't1w'"),
    ],
)
def test_bad_bids_filter_file_is_a_usage_error(tmp_path, content, fragment):
    (tmp_path / "filters.json").write_text(content)
    with pytest.raises(InvalidSettingsError) as caught:
        parse_args(argv_for("--bids-filter-file", "filters.json", "--min-coverage", "2"))
    assert len(caught.value.problems) == 2  # reported together with the other problem
    assert f"--bids-filter-file {tmp_path / 'filters.json'}: {fragment}" in str(caught.value)


def test_missing_bids_filter_file_is_left_to_preflight(tmp_path):
    selection = parse_args(argv_for("--bids-filter-file", "missing.json")).selection
    assert selection.bids_filter_file == tmp_path / "missing.json"
    assert selection.bids_filters == {}


# --- config file --------------------------------------------------------------------------------


@pytest.fixture
def config(tmp_path):
    folder = tmp_path / "cfg"
    folder.mkdir()
    path = folder / "run.toml"
    path.write_text(
        "[maps]\nfiles = ['ica.nii.gz']\n"
        "[regions]\nthreshold = 2.0\nsmoothing_fwhm = 4\n"
        "[denoise]\ndetrend = true\n"
        "[execution]\nnprocs = 4\nverbosity = 2\n"
    )
    return path


def test_config_file_values_apply(tmp_path, config):
    settings = parse_args(["ds", "out", "participant", "--config-file", "cfg/run.toml"])
    assert settings.execution.config_file == config
    assert settings.maps.files == (tmp_path / "cfg" / "ica.nii.gz",)  # relative to the file
    assert settings.regions.threshold == 2.0
    assert settings.regions.smoothing_fwhm == 4.0
    assert settings.denoise.detrend is True
    assert settings.execution.nprocs == 4
    assert settings.execution.verbosity == 2
    assert settings.bids_dir == tmp_path / "ds"  # positionals still relative to the cwd


@pytest.mark.parametrize(
    ("options", "dest", "expected"),
    [
        (("--threshold", "3"), "regions.threshold", 3.0),
        (("--threshold", "1.0"), "regions.threshold", 1.0),  # equal to the default: still wins
        (("--no-detrend",), "denoise.detrend", False),
        (("--maps", "other.nii.gz"), "maps.files", (P("other.nii.gz"),)),  # replaces, not adds
        (("-v",), "execution.verbosity", 1),
        (("--nprocs", "1"), "execution.nprocs", 1),
    ],
)
def test_command_line_wins_over_config_file(tmp_path, config, options, dest, expected):
    settings = parse_args(["ds", "out", "participant", "--config-file", str(config), *options])
    assert value_at(settings, dest) == resolve(expected, tmp_path)
    assert settings.regions.smoothing_fwhm == 4.0  # untouched file values stay


def test_saved_settings_reproduce_the_run(tmp_path):
    (tmp_path / "filters.json").write_text('{"bold": {"res": "2"}}')
    argv = argv_for(
        "--participant-label",
        "01",
        "--bids-filter-file",
        "filters.json",
        "--threshold",
        "2",
        "--connectivity",
        "precision",
        "--mem-gb",
        "4G",
        "-d",
        "fmriprep=prep",
        "--clean-args",
        '{"butterworth__order": 4}',
    )
    first = parse_args(argv)
    saved = tmp_path / "saved" / "config.toml"
    saved.parent.mkdir()
    saved.write_text(first.to_toml())
    (tmp_path / "filters.json").unlink()  # the saved filters are used, not the file
    again = parse_args(["ds", "out", "participant", "--config-file", str(saved)])
    assert again.execution.config_file == saved
    assert dataclasses.replace(again, execution=first.execution) == first
    assert again.output_hash() == first.output_hash()


def test_config_file_filter_file_is_read_relative_to_it(tmp_path):
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "filters.json").write_text('{"mask": {"desc": "brain"}}')
    (folder / "run.toml").write_text("[selection]\nbids_filter_file = 'filters.json'\n")
    selection = parse_args(argv_for("--config-file", "cfg/run.toml")).selection
    assert selection.bids_filter_file == folder / "filters.json"
    assert selection.bids_filters == {"mask": {"desc": "brain"}}


def test_config_file_problems_are_reported_with_the_others(tmp_path, config):
    config.write_text("[regions]\nthresh = 2\n[denoise]\nmin_coverage = 3\n")
    with pytest.raises(InvalidSettingsError) as caught:
        parse_args(argv_for("--config-file", str(config), "--nprocs", "0"))
    problems = caught.value.problems
    assert "run.toml: regions.thresh: unknown setting" in problems
    assert "run.toml: denoise.min_coverage: must be between 0 and 1, got 3" in problems
    assert "--nprocs: must be >= 1, got 0" in problems


def test_invalid_config_file_toml(tmp_path, config):
    config.write_text("[regions\n")
    with pytest.raises(UsageError, match=r"--config-file .*run\.toml: invalid TOML"):
        parse_args(argv_for("--config-file", str(config)))


def test_missing_config_file(tmp_path):
    with pytest.raises(NoInputError) as caught:
        parse_args(argv_for("--config-file", "nope.toml"))
    assert caught.value.exit_code == 66
    assert str(tmp_path / "nope.toml") in str(caught.value)


def test_errors_are_bids_regionx_errors():
    # main() relies on every failure being one of ours (or SystemExit(0) for help/version).
    for argv in (["x"], ["ds", "out", "foo"], argv_for("--threshold", "-1")):
        with pytest.raises(BidsRegionxError):
            parse_args(argv)
