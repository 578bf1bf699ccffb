"""Tests for bids_regionx.cli.preflight: filesystem checks and their BEP027 exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bids_regionx.cli import preflight as preflight_module
from bids_regionx.cli.parser import parse_args
from bids_regionx.cli.preflight import run_preflight as preflight
from bids_regionx.errors import (
    CantCreateError,
    InvalidDatasetError,
    NoInputError,
    UsageError,
)

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def write_dataset(root: Path, dataset_type: str | None = "derivative", subjects=("01", "02")):
    root.mkdir(parents=True, exist_ok=True)
    description = {"Name": root.name, "BIDSVersion": "1.10.0"}
    if dataset_type is not None:
        description["DatasetType"] = dataset_type
    (root / "dataset_description.json").write_text(json.dumps(description))
    for label in subjects:
        (root / f"sub-{label}" / "func").mkdir(parents=True)


@pytest.fixture
def tmp(tmp_path, monkeypatch):
    """A derivatives dataset ``ds`` and a maps file in the working directory."""
    monkeypatch.chdir(tmp_path)
    write_dataset(tmp_path / "ds")
    (tmp_path / "maps.nii.gz").write_bytes(b"\x1f\x8b")
    return tmp_path


def run(*options: str, level: str = "participant", maps: bool = True) -> tuple[str, ...]:
    extra = ["--maps", "maps.nii.gz"] if maps and level == "participant" else []
    return preflight(parse_args(["ds", "out", level, *extra, *options]))


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(path.relative_to(root)): (path.stat().st_mtime_ns, path.stat().st_size)
        for path in sorted(root.rglob("*"))
    }


def test_valid_run_passes_and_writes_nothing(tmp):
    before = snapshot(tmp)
    assert run("--participant-label", "01", "sub-02") == ()
    assert snapshot(tmp) == before  # neither bids_dir nor the output/work dirs are touched


@pytest.mark.parametrize(
    ("setup", "error", "fragment"),
    [
        (lambda t: (t / "ds").rename(t / "elsewhere"), NoInputError, "bids_dir {t}/ds: no such"),
        (
            lambda t: ((t / "ds").rename(t / "x"), (t / "ds").write_text("")),
            NoInputError,
            "bids_dir {t}/ds: not a directory",
        ),
        (
            lambda t: (t / "ds" / "dataset_description.json").unlink(),
            InvalidDatasetError,
            "bids_dir {t}/ds: no dataset_description.json, so it is not a BIDS dataset",
        ),
        (
            lambda t: (t / "ds" / "dataset_description.json").write_text("{"),
            InvalidDatasetError,
            "{t}/ds/dataset_description.json: invalid JSON",
        ),
        (
            lambda t: (t / "ds" / "dataset_description.json").write_text("[]"),
            InvalidDatasetError,
            "dataset_description.json: expected a JSON object",
        ),
        (
            lambda t: write_dataset(t / "ds", "raw", subjects=()),
            InvalidDatasetError,
            "is a raw dataset (DatasetType 'raw'): pass the fMRIPrep derivatives as bids_dir, "
            "or add -d fmriprep=PATH",
        ),
        (
            lambda t: write_dataset(t / "ds", None, subjects=()),
            InvalidDatasetError,
            "add -d fmriprep=PATH",
        ),
    ],
)
def test_bids_dir_checks(tmp, setup, error, fragment):
    setup(tmp)
    with pytest.raises(error) as caught:
        run()
    assert fragment.replace("{t}", str(tmp)) in str(caught.value)
    assert caught.value.exit_code == {NoInputError: 66, InvalidDatasetError: 16}[error]


def test_raw_dataset_with_fmriprep(tmp):
    write_dataset(tmp / "raw", "raw", subjects=("01",))
    write_dataset(tmp / "prep", "derivative", subjects=("01",))
    settings = parse_args(
        [
            "raw",
            "out",
            "participant",
            "--maps",
            "maps.nii.gz",
            "-d",
            "fmriprep=prep",
            "--participant-label",
            "01",
        ]
    )
    assert preflight(settings) == ()


@pytest.mark.parametrize(
    ("setup", "error", "fragment"),
    [
        (lambda t: None, NoInputError, "-d fmriprep {t}/prep: no such directory"),
        (
            lambda t: write_dataset(t / "prep", "raw"),
            InvalidDatasetError,
            "-d fmriprep {t}/prep: DatasetType is 'raw', expected 'derivative'",
        ),
        (
            lambda t: (t / "prep").mkdir(),
            InvalidDatasetError,
            "-d fmriprep {t}/prep: no dataset_description.json",
        ),
    ],
)
def test_fmriprep_dataset_checks(tmp, setup, error, fragment):
    setup(tmp)
    with pytest.raises(error) as caught:
        run("-d", "fmriprep=prep")
    assert fragment.replace("{t}", str(tmp)) in str(caught.value)


def test_other_datasets(tmp):
    (tmp / "atlases").mkdir()
    (tmp / "conf").mkdir()
    settings = parse_args(
        ["ds", "out", "participant", "--atlas", "DiFuMo", "-d", "atlases=atlases", "conf=conf"]
    )
    with pytest.raises(InvalidDatasetError, match="-d atlases .*: no dataset_description.json"):
        preflight(settings)
    write_dataset(tmp / "atlases", None, subjects=())  # an atlas dataset may be of any type
    assert preflight(settings) == ()
    with pytest.raises(NoInputError, match="-d other .*/missing: no such directory"):
        run("-d", "other=missing")


def test_skip_bids_validation_downgrades_dataset_checks(tmp):
    write_dataset(tmp / "ds", "raw", subjects=())
    (tmp / "prep").mkdir()
    warnings = run("--skip-bids-validation", "-d", "fmriprep=prep", "x=ds")
    assert len(warnings) == 1
    assert "-d fmriprep" in warnings[0] and "ignored: --skip-bids-validation" in warnings[0]
    (tmp / "ds" / "dataset_description.json").unlink()
    warnings = run("--skip-bids-validation")
    assert "no dataset_description.json" in warnings[0]
    # Missing folders are never downgraded.
    with pytest.raises(NoInputError):
        run("--skip-bids-validation", "-d", "fmriprep=missing")


@pytest.mark.parametrize(
    ("options", "what"),
    [
        (("--maps", "more.nii.gz"), "--maps {t}/more.nii.gz: no such file"),
        (("--mask", "mask.nii.gz"), "--mask {t}/mask.nii.gz: no such file"),
        (("--maps-labels-tsv", "labels.tsv"), "--maps-labels-tsv {t}/labels.tsv: no such file"),
        (("--denoise-strategy", "mine.json"), "--denoise-strategy {t}/mine.json: no such file"),
        (("--bids-filter-file", "f.json"), "--bids-filter-file {t}/f.json: no such file"),
        (("--mask", "ds"), "--mask {t}/ds: is a directory, expected a file"),
    ],
)
def test_missing_input_files(tmp, options, what):
    with pytest.raises(NoInputError) as caught:
        run(*options)
    assert str(caught.value) == what.replace("{t}", str(tmp))
    assert caught.value.exit_code == 66


def test_existing_input_files(tmp):
    for name in ("mask.nii.gz", "labels.tsv", "mine.json"):
        (tmp / name).write_text("x")
    (tmp / "f.json").write_text("{}")
    assert (
        run(
            "--mask",
            "mask.nii.gz",
            "--maps-labels-tsv",
            "labels.tsv",
            "--denoise-strategy",
            "mine.json",
            "--bids-filter-file",
            "f.json",
        )
        == ()
    )


@pytest.mark.skipif(IS_ROOT, reason="root reads files whatever their mode")
def test_unreadable_maps(tmp):
    (tmp / "maps.nii.gz").chmod(0)
    try:
        with pytest.raises(NoInputError, match="--maps .*: cannot read it"):
            run()
    finally:
        (tmp / "maps.nii.gz").chmod(0o644)


def test_unreadable_maps_as_seen_by_open(tmp, monkeypatch):
    # Root reads files whatever their mode, so simulate the permission error.
    real_open = Path.open

    def fake_open(self, *args, **kwargs):
        if self.name == "maps.nii.gz":
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", fake_open)
    with pytest.raises(NoInputError) as caught:
        run()
    assert str(caught.value) == f"--maps {tmp / 'maps.nii.gz'}: cannot read it (Permission denied)"


def test_unknown_participants_are_listed(tmp):
    with pytest.raises(UsageError) as caught:
        run("--participant-label", "01", "03", "sub-04")
    message = str(caught.value)
    assert caught.value.exit_code == 64
    assert f"--participant-label: no sub-<label> folder in {tmp / 'ds'} for 03, 04" in message
    assert "(found 2: sub-01, sub-02)" in message


def test_participants_are_looked_up_in_the_fmriprep_dataset(tmp):
    write_dataset(tmp / "prep", subjects=("05",))
    assert run("-d", "fmriprep=prep", "--participant-label", "05") == ()
    with pytest.raises(UsageError, match="for 01"):
        run("-d", "fmriprep=prep", "--participant-label", "01")


@pytest.mark.parametrize(
    ("options", "blocked", "fragment"),
    [
        (
            (),
            "out",
            "output_dir {t}/blocker/out: cannot create it, its ancestor {t}/blocker is not",
        ),
        (("-w", "blocker/work"), "work", "-w/--work-dir {t}/blocker/work: cannot create it"),
        (("--bids-database-dir", "blocker/db"), "db", "--bids-database-dir {t}/blocker/db"),
    ],
)
def test_output_under_a_file_cannot_be_created(tmp, options, blocked, fragment):
    (tmp / "blocker").write_text("")
    argv = [
        "ds",
        "blocker/out" if blocked == "out" else "out",
        "participant",
        "--maps",
        "maps.nii.gz",
        *options,
    ]
    with pytest.raises(CantCreateError) as caught:
        preflight(parse_args(argv))
    assert fragment.replace("{t}", str(tmp)) in str(caught.value)
    assert caught.value.exit_code == 73


def test_output_dir_that_is_a_file(tmp):
    (tmp / "out").write_text("")
    with pytest.raises(CantCreateError, match="output_dir .*/out: cannot create it, it is not a"):
        run()


@pytest.mark.skipif(IS_ROOT, reason="root writes into read-only folders")
def test_read_only_output_parent(tmp):
    (tmp / "ro").mkdir(mode=0o555)
    try:
        with pytest.raises(CantCreateError, match=r"cannot create it, .*/ro is not writable"):
            preflight(parse_args(["ds", "ro/out", "participant", "--maps", "maps.nii.gz"]))
    finally:
        (tmp / "ro").chmod(0o755)


@pytest.mark.parametrize(
    ("options", "denied", "fragment"),
    [
        (("-w", "/elsewhere"), "ro", "output_dir {t}/ro/out: cannot create it, {t}/ro is not wr"),
        (("-w", "ro/work"), "ro", "output_dir"),  # outputs are checked before the work dir
        (("-w", "ro/work"), "ro-existing", "-w/--work-dir {t}/ro/work: not writable"),
        (("--bids-database-dir", "ro/db"), "ro-db", "--bids-database-dir {t}/ro/db: cannot"),
    ],
)
def test_read_only_parent_as_seen_by_access(tmp, monkeypatch, options, denied, fragment):
    # Root ignores permission bits, so simulate a read-only mount through os.access.
    (tmp / "ro").mkdir()
    if denied == "ro-existing":
        (tmp / "ro" / "work").mkdir()
    denied_path = tmp / "ro" / "work" if denied == "ro-existing" else tmp / "ro"
    real_access = os.access

    def access(path, mode, **kwargs):
        if Path(path) == denied_path and mode & os.W_OK:
            return False
        return real_access(path, mode, **kwargs)

    monkeypatch.setattr(preflight_module.os, "access", access)
    output = "ro/out" if denied == "ro" else "out"
    with pytest.raises(CantCreateError) as caught:
        preflight(parse_args(["ds", output, "participant", "--maps", "maps.nii.gz", *options]))
    assert fragment.replace("{t}", str(tmp)) in str(caught.value)


def test_group_level_reads_the_output_dir(tmp):
    with pytest.raises(NoInputError, match="group level reads the participant outputs"):
        run(level="group")
    (tmp / "out").mkdir()
    assert run(level="group") == ()


def test_inputs_are_checked_before_outputs(tmp):
    (tmp / "blocker").write_text("")
    settings = parse_args(["ds", "blocker/out", "participant", "--maps", "missing.nii.gz"])
    with pytest.raises(NoInputError):
        preflight(settings)
