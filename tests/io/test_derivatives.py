"""Tests of bids_regionx.io.derivatives: names, atomic writers, shared files, options guard."""

from __future__ import annotations

import fnmatch
import gzip
import json
import logging
import multiprocessing
import os
import stat
from pathlib import Path, PurePosixPath

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_regionx.config import (
    ExecutionSettings,
    MapsSettings,
    RegionSettings,
    SelectionSettings,
    Settings,
)
from bids_regionx.errors import CantCreateError
from bids_regionx.io import derivatives as deriv
from bids_regionx.io.maps import collect_maps

SPACE = "MNI152NLin2009cAsym"
RUN = {"subject": "01", "session": "1", "task": "rest", "run": "01"}
REGIONS = {"space": SPACE, "atlas": "Smith", "seg": "regions"}


# --------------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------------
def write_inputs(root: Path) -> tuple[Path, Path]:
    """A minimal fMRIPrep dataset description and a maps image; return (fmriprep, maps)."""
    fmriprep = root / "fmriprep"
    fmriprep.mkdir(parents=True, exist_ok=True)
    (fmriprep / "dataset_description.json").write_text(
        json.dumps(
            {
                "Name": "fMRIPrep",
                "BIDSVersion": "1.9.0",
                "DatasetType": "derivative",
                "GeneratedBy": [{"Name": "fMRIPrep", "Version": "23.2.1"}],
                "License": "CC0",
                "DatasetDOI": "doi:10.18112/openneuro.ds000001.v1",
            }
        )
    )
    maps = root / "maps" / f"tpl-{SPACE}_atlas-Smith_probseg.nii.gz"
    maps.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ones((3, 3, 3, 2), np.float32), np.eye(4)), maps)
    return fmriprep, maps


def make_settings(root: Path, output_dir: Path | None = None, **regions) -> Settings:
    fmriprep, maps = write_inputs(root)
    return Settings(
        bids_dir=fmriprep,
        output_dir=output_dir or root / "out",
        analysis_level="participant",
        maps=MapsSettings(files=(maps,)),
        regions=RegionSettings(**regions),
        execution=ExecutionSettings(work_dir=root / "work"),
    )


@pytest.fixture
def settings(tmp_path) -> Settings:
    return make_settings(tmp_path)


def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "Default": rng.standard_normal(5),
            "Visual": rng.standard_normal(5).astype(np.float32),
            "count": np.arange(5),
            "label": ["a", None, "c", "d", "e"],
        }
    ).assign(Default=lambda df: df["Default"].where(df.index != 2))


def image() -> nib.Nifti1Image:
    data = np.random.default_rng(1).standard_normal((4, 4, 4, 2)).astype(np.float32)
    return nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]))


def temporary_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(".*.tmp"))


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "entities", "expected"),
    [
        (
            "region_timeseries",
            {**RUN, **REGIONS, "res": "2", "stat": "mean", "suffix": "timeseries"},
            "sub-01/ses-1/func/sub-01_ses-1_task-rest_run-01_space-MNI152NLin2009cAsym_"
            "atlas-Smith_seg-regions_res-2_stat-mean_timeseries.tsv",
        ),
        (
            "relmat",
            {
                **RUN,
                **REGIONS,
                "stat": "pearsoncorrelation",
                "desc": "fisherz",
                "suffix": "relmat",
            },
            "sub-01/ses-1/func/sub-01_ses-1_task-rest_run-01_space-MNI152NLin2009cAsym_"
            "atlas-Smith_seg-regions_stat-pearsoncorrelation_desc-fisherz_relmat.tsv",
        ),
        (
            "coverage",
            {"subject": "01", "task": "rest", **REGIONS, "stat": "coverage", "suffix": "bold"},
            "sub-01/func/sub-01_task-rest_space-MNI152NLin2009cAsym_atlas-Smith_seg-regions_"
            "stat-coverage_bold.tsv",
        ),
        (
            "design",
            {**RUN, "suffix": "design"},
            "sub-01/ses-1/func/sub-01_ses-1_task-rest_run-01_design.tsv",
        ),
        (
            "outliers",
            {"subject": "01", "task": "rest", "suffix": "outliers"},
            "sub-01/func/sub-01_task-rest_outliers.tsv",
        ),
        (
            "atlas_maps",
            {"space": SPACE, "atlas": "Smith", "res": "2", "suffix": "probseg"},
            f"atlases/tpl-{SPACE}/tpl-{SPACE}_atlas-Smith_res-2_probseg.tsv",
        ),
        (
            "atlas_regions",
            {**REGIONS, "suffix": "probseg"},
            f"atlases/tpl-{SPACE}/tpl-{SPACE}_atlas-Smith_seg-regions_probseg.tsv",
        ),
        (
            "atlas_description",
            {"atlas": "Smith", "suffix": "description", "extension": ".json"},
            "atlases/atlas-Smith_description.json",
        ),
        ("group_qc", {"atlas": "Smith", "suffix": "qc"}, "group/atlas-Smith_qc.tsv"),
        (
            "group_relmat",
            {**REGIONS, "task": "rest", "stat": "tangent", "desc": "mean", "suffix": "relmat"},
            "group/task-rest_space-MNI152NLin2009cAsym_atlas-Smith_seg-regions_stat-tangent_"
            "desc-mean_relmat.tsv",
        ),
        (
            "figure",
            {
                "subject": "01",
                "task": "rest",
                "atlas": "Smith",
                "suffix": "carpet",
                "extension": ".svg",
            },
            "sub-01/figures/sub-01_task-rest_atlas-Smith_carpet.svg",
        ),
    ],
)
def test_output_path_examples(tmp_path, kind, entities, expected):
    entities = {"extension": ".tsv", **entities}
    assert deriv.output_path(tmp_path, kind, **entities) == tmp_path / expected


@pytest.mark.parametrize(
    ("kind", "entities", "message"),
    [
        ("nope", {}, "unknown output kind 'nope'"),
        ("design", {**RUN, "suffix": "design", "space": SPACE}, "the pattern has no space"),
        (
            "relmat",
            {**RUN, **REGIONS, "stat": "covariance", "desc": "x", "suffix": "relmat"},
            "desc must be one of fisherz",
        ),
        ("region_timeseries", {**RUN, **REGIONS, "stat": "median"}, "stat must be one of mean"),
        (
            "design",
            {**RUN, "task": "rest_1", "suffix": "design"},
            "task 'rest_1' is not a BIDS label",
        ),
        (
            "region_timeseries",
            {**RUN, "space": SPACE, "stat": "mean"},
            "a required entity is missing",
        ),
    ],
)
def test_output_path_refuses_what_pybids_would_drop(tmp_path, kind, entities, message):
    defaults = {"suffix": "timeseries", "extension": ".tsv"} if kind != "design" else {}
    with pytest.raises(ValueError, match=message):
        deriv.output_path(tmp_path, kind, **{**defaults, **entities})


def test_empty_and_none_entities_are_absent(tmp_path):
    path = deriv.output_path(tmp_path, "design", **RUN, suffix="design", extension=".tsv")
    assert (
        deriv.output_path(
            tmp_path, "design", **RUN, acquisition="", echo=None, suffix="design", extension=".tsv"
        )
        == path
    )


def test_bids_uris(tmp_path):
    assert deriv.bids_uri("", Path("atlases/x.tsv")) == "bids::atlases/x.tsv"
    bold = tmp_path / "prep" / "sub-01" / "func" / "b.nii.gz"
    assert deriv.source_uri(tmp_path / "prep", bold) == "bids:preprocessed:sub-01/func/b.nii.gz"
    for bad in ("/abs/x", "../x", ""):
        with pytest.raises(ValueError, match="must be relative"):
            deriv.bids_uri("raw", bad)
    with pytest.raises(ValueError, match="is not inside the preprocessed dataset"):
        deriv.source_uri(tmp_path / "prep", tmp_path / "other" / "b.nii.gz")


# --------------------------------------------------------------------------------------------
# Writers: deterministic bytes
# --------------------------------------------------------------------------------------------
def write_all(folder: Path) -> list[Path]:
    return [
        deriv.write_tsv(folder / "t.tsv", frame()),
        deriv.write_json(
            folder / "m.json", {"b": np.float32(0.5), "a": [np.int64(1), float("nan")]}
        ),
        deriv.write_nifti(folder / "i.nii.gz", image()),
        deriv.write_nifti(folder / "i.nii", image()),
        deriv.write_text(folder / "c.md", "é\n"),
    ]


def test_writers_are_byte_identical_across_calls(tmp_path):
    first, second = write_all(tmp_path / "a"), write_all(tmp_path / "b")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_gzip_stream_has_no_time_and_no_name(tmp_path):
    data = deriv.write_nifti(tmp_path / "i.nii.gz", image()).read_bytes()
    assert data[3] & 0x08 == 0  # no FNAME field
    assert data[4:8] == b"\0\0\0\0"  # MTIME 0
    loaded = nib.load(tmp_path / "i.nii.gz")
    np.testing.assert_array_equal(loaded.get_fdata(), image().get_fdata())
    assert gzip.decompress(data) == image().to_bytes()


def test_tsv_round_trips_floats_exactly_with_na(tmp_path):
    original = frame()
    text = deriv.write_tsv(tmp_path / "t.tsv", original).read_text()
    assert text.splitlines()[0] == "Default\tVisual\tcount\tlabel"
    assert text.splitlines()[3].split("\t")[0] == "n/a"
    assert text.splitlines()[2].split("\t")[3] == "n/a"
    back = pd.read_csv(tmp_path / "t.tsv", sep="\t", na_values=["n/a"], keep_default_na=False)
    np.testing.assert_array_equal(back["Default"].to_numpy(), original["Default"].to_numpy())
    np.testing.assert_array_equal(back["Visual"].to_numpy(np.float32), original["Visual"])
    # float32 values are written short (as float32), not with float64 noise.
    assert len(text.splitlines()[1].split("\t")[1]) <= 12


def test_tsv_index_column(tmp_path):
    matrix = pd.DataFrame([[1.0, 0.5], [0.5, 1.0]], index=["A", "B"], columns=["A", "B"])
    matrix.index.name = "Node"
    text = deriv.write_tsv(tmp_path / "r.tsv", matrix, index=True).read_text()
    assert text == "Node\tA\tB\nA\t1.0\t0.5\nB\t0.5\t1.0\n"


def test_json_is_plain_and_keeps_key_order(tmp_path):
    text = deriv.write_json(tmp_path / "m.json", {"b": np.float32(0.5), "a": float("inf")})
    assert text.read_text() == '{\n  "b": 0.5,\n  "a": null\n}\n'


def test_unchanged_content_is_not_rewritten(tmp_path):
    path = deriv.write_tsv(tmp_path / "t.tsv", frame())
    os.utime(path, ns=(1, 1))
    deriv.write_tsv(path, frame())
    assert path.stat().st_mtime_ns == 1
    deriv.write_tsv(path, frame().head(2))
    assert path.stat().st_mtime_ns != 1 and len(path.read_text().splitlines()) == 3


def test_written_files_follow_the_umask(tmp_path):
    mode = stat.S_IMODE(deriv.write_text(tmp_path / "x.txt", "x").stat().st_mode)
    assert mode == 0o666 & ~deriv._umask()


# --------------------------------------------------------------------------------------------
# Writers: atomic
# --------------------------------------------------------------------------------------------
def broken_image(tmp_path: Path) -> nib.Nifti1Image:
    """An image whose data cannot be read to the end (its file was truncated)."""
    source = tmp_path / "src.nii"
    nib.save(image(), source)
    size = source.stat().st_size
    with source.open("r+b") as handle:
        handle.truncate(size - 100)
    return nib.load(source)


def test_a_failure_mid_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out" / "i.nii.gz"
    with pytest.raises(Exception, match="Expected|buffer|size|bytes"):
        deriv.write_nifti(target, broken_image(tmp_path))
    assert not target.exists()
    assert temporary_files(tmp_path) == []


def test_a_failure_keeps_the_previous_file(tmp_path, monkeypatch):
    target = deriv.write_text(tmp_path / "x.txt", "old")

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(deriv.os, "replace", fail)
    with pytest.raises(CantCreateError, match="x.txt: cannot write it .No space left") as caught:
        deriv.write_text(target, "new")
    assert caught.value.exit_code == 73
    assert target.read_text() == "old"
    assert temporary_files(tmp_path) == []


def test_an_interrupt_removes_the_temporary_file(tmp_path):
    def interrupted(stream):
        stream.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        deriv._commit(tmp_path / "x.bin", interrupted, shared=False)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_is_cant_create(tmp_path, monkeypatch):
    def denied(**kwargs):  # what mkstemp raises in a folder we may not write (not as root)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(deriv.tempfile, "mkstemp", denied)
    with pytest.raises(CantCreateError, match="x.json: cannot write it .Permission denied"):
        deriv.write_json(tmp_path / "x.json", {})


# --------------------------------------------------------------------------------------------
# dataset_description.json, .bidsignore, atlas description
# --------------------------------------------------------------------------------------------
def test_dataset_description(settings, monkeypatch):
    monkeypatch.delenv("BIDS_REGIONX_CONTAINER_IMAGE", raising=False)
    specs = collect_maps(settings)
    description = deriv.dataset_description(settings, specs, version="1.2.3")
    first = description["GeneratedBy"][0]
    assert first == {
        "Name": "bids_regionx",
        "Version": "1.2.3",
        "CodeURL": "https://github.com/bids-regionx/bids_regionx/archive/1.2.3.tar.gz",
        "ConfigurationHash": settings.output_hash(),
    }
    assert description["GeneratedBy"][1] == {"Name": "fMRIPrep", "Version": "23.2.1"}
    assert description["DatasetType"] == "derivative"
    assert description["BIDSVersion"] == deriv.BIDS_VERSION
    assert description["DatasetLinks"] == {
        "preprocessed": str(settings.bids_dir),
        "maps": str(specs[0].dataset_root),
    }
    assert description["SourceDatasets"][0] == {
        "URL": settings.bids_dir.as_uri(),
        "DOI": "doi:10.18112/openneuro.ds000001.v1",
    }
    assert description["License"] == "CC0"


@pytest.mark.parametrize(
    ("env", "container"),
    [
        (
            {"BIDS_REGIONX_CONTAINER_IMAGE": "bids_regionx:1.0"},
            {"Type": "docker", "Tag": "bids_regionx:1.0"},
        ),
        (
            {"BIDS_REGIONX_CONTAINER_IMAGE": "x.sif", "APPTAINER_CONTAINER": "/x.sif"},
            {"Type": "apptainer", "Tag": "x.sif"},
        ),
        (
            {"BIDS_REGIONX_CONTAINER_IMAGE": "i", "BIDS_REGIONX_CONTAINER_TYPE": "podman"},
            {"Type": "podman", "Tag": "i"},
        ),
    ],
)
def test_container_is_recorded_when_containerised(settings, monkeypatch, env, container):
    for name in ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER", "BIDS_REGIONX_CONTAINER_TYPE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert deriv.dataset_description(settings)["GeneratedBy"][0]["Container"] == container


def test_raw_bids_dir_and_legacy_pipeline_description(tmp_path):
    fmriprep, maps = write_inputs(tmp_path)
    (fmriprep / "dataset_description.json").write_text(
        json.dumps({"Name": "x", "PipelineDescription": {"Name": "fmriprep", "Version": "1.0"}})
    )
    raw = tmp_path / "raw"
    raw.mkdir()
    settings = Settings(
        bids_dir=raw,
        output_dir=tmp_path / "out",
        analysis_level="participant",
        selection=SelectionSettings(datasets={"fmriprep": fmriprep}),
        maps=MapsSettings(files=(maps,)),
        execution=ExecutionSettings(work_dir=tmp_path / "work"),
    )
    description = deriv.dataset_description(settings)
    assert description["GeneratedBy"][1:] == [{"Name": "fmriprep", "Version": "1.0"}]
    assert description["DatasetLinks"] == {"preprocessed": str(fmriprep), "raw": str(raw)}


def ignored(relative: str) -> bool:
    """gitignore-style matching of the ``.bidsignore`` patterns (enough for ours).

    ``/a/b`` is anchored at the root and ignores that folder's contents; a pattern without a
    slash matches file names anywhere. (The real validator is run on real outputs by the
    end-to-end tests.)
    """
    path = PurePosixPath(relative)
    for pattern in deriv.BIDSIGNORE:
        if pattern.startswith("#"):
            continue
        if pattern.startswith("/"):
            body = pattern.strip("/")
            depth = body.count("/") + 1
            prefix = "/".join(path.parts[:depth])
            if len(path.parts) > depth and fnmatch.fnmatch(prefix, body):
                return True
        elif fnmatch.fnmatch(path.name, pattern):
            return True
    return False


def test_bidsignore_covers_every_output_bids_lacks(tmp_path):
    kinds = [
        ("region_timeseries", {**RUN, **REGIONS, "stat": "mean", "suffix": "timeseries"}),
        ("coverage", {**RUN, **REGIONS, "stat": "coverage", "suffix": "bold"}),
        ("relmat", {**RUN, **REGIONS, "stat": "covariance", "suffix": "relmat"}),
        ("design", {**RUN, "suffix": "design"}),
        ("outliers", {**RUN, "suffix": "outliers"}),
        ("atlas_regions", {**REGIONS, "suffix": "probseg"}),
        ("group_qc", {"atlas": "Smith", "suffix": "qc"}),
        ("group_unit_relmat", {**RUN, **REGIONS, "stat": "tangent", "suffix": "relmat"}),
    ]
    examples = [
        deriv.output_path(tmp_path, kind, **entities, extension=extension)
        for kind, entities in kinds
        for extension in (".tsv", ".json")
    ]
    examples.append(
        deriv.output_path(tmp_path, "figure", subject="01", suffix="fd", extension=".svg")
    )
    examples += [tmp_path / extra for extra in ("sub-01.html", "logs/CITATION.md")]
    examples.append(tmp_path / "sub-01" / "log" / "x" / "config.toml")
    for path in examples:
        assert ignored(str(path.relative_to(tmp_path))), path
    assert not ignored("dataset_description.json")
    written = deriv.write_bidsignore(tmp_path).read_text()
    assert written.splitlines() == list(deriv.BIDSIGNORE)


def test_atlas_description_copies_the_source_license(tmp_path, settings):
    (spec,) = collect_maps(settings)
    source = spec.dataset_root / "atlas-Smith_description.json"
    source.write_text(json.dumps({"Name": "Smith 2009 ICA", "License": "CC-BY-4.0", "X": 1}))
    (spec,) = collect_maps(settings)
    path = deriv.write_atlas_description(
        tmp_path / "out", "Smith", version="1.0.0", maps_spec=spec
    )
    assert path == tmp_path / "out" / "atlases" / "atlas-Smith_description.json"
    described = json.loads(path.read_text())
    assert (described["Name"], described["License"], described["LevelType"]) == (
        "Smith 2009 ICA",
        "CC-BY-4.0",
        "group",
    )
    assert "X" not in described
    nested = json.loads((tmp_path / "out" / "atlases" / "dataset_description.json").read_text())
    assert nested["DatasetType"] == "derivative"


# --------------------------------------------------------------------------------------------
# The options guard
# --------------------------------------------------------------------------------------------
def test_prepare_records_options_and_writes_shared_files(settings):
    out = deriv.prepare_output_dir(settings)
    record = deriv.read_recorded_options(out)
    assert record["OutputOptions"] == settings.output_options()
    assert record["OutputHash"] == settings.output_hash()
    assert (out / "dataset_description.json").is_file() and (out / ".bidsignore").is_file()
    visible = [p for p in out.rglob("*") if deriv.STATE_DIR not in p.parts]
    assert not [p for p in visible if p.suffix == ".lock"]
    assert deriv.prepare_output_dir(settings) == out  # same options: fine, idempotent


def test_other_options_are_refused_naming_them(settings, tmp_path):
    deriv.prepare_output_dir(settings)
    other = make_settings(tmp_path, threshold=2.0, smoothing_fwhm=0.0)
    with pytest.raises(CantCreateError) as caught:
        deriv.prepare_output_dir(other)
    message = str(caught.value)
    assert "regions.smoothing_fwhm: 6.0 vs 0.0" in message
    assert "regions.threshold: 1.0 vs 2.0" in message
    assert caught.value.exit_code == 73


def test_selection_changes_are_not_option_changes(settings, tmp_path):
    deriv.prepare_output_dir(settings)
    fmriprep, maps = write_inputs(tmp_path)
    (fmriprep / "sub-02").mkdir(exist_ok=True)
    subset = Settings(
        bids_dir=fmriprep,
        output_dir=settings.output_dir,
        analysis_level="participant",
        selection=SelectionSettings(participant_labels=("02",)),
        maps=MapsSettings(files=(maps,)),
        execution=ExecutionSettings(work_dir=tmp_path / "other-work", nprocs=3),
    )
    deriv.prepare_output_dir(subset)


@pytest.mark.parametrize(("version", "refused"), [("0.1.7", False), ("0.2.0", True)])
def test_another_release_series_is_refused(settings, monkeypatch, version, refused):
    monkeypatch.setattr(deriv, "_version", lambda: "0.1.0")
    deriv.prepare_output_dir(settings)
    monkeypatch.setattr(deriv, "_version", lambda: version)
    if refused:
        with pytest.raises(CantCreateError, match=f"bids_regionx version: 0.1.0 vs {version}"):
            deriv.prepare_output_dir(settings)
    else:
        deriv.prepare_output_dir(settings)


def test_another_pipelines_dataset_is_refused(settings):
    settings.output_dir.mkdir()
    description = {"Name": "x", "GeneratedBy": [{"Name": "xcp_d"}]}
    (settings.output_dir / "dataset_description.json").write_text(json.dumps(description))
    with pytest.raises(CantCreateError, match=r"holds another dataset \(made by xcp_d\)"):
        deriv.prepare_output_dir(settings)


def test_lost_record_with_another_hash_is_refused(settings):
    out = deriv.prepare_output_dir(settings)
    (out / deriv.STATE_DIR / "options.json").unlink()
    path = out / "dataset_description.json"
    description = json.loads(path.read_text())
    description["GeneratedBy"][0]["ConfigurationHash"] = "0123456789ab"
    path.write_text(json.dumps(description))
    with pytest.raises(CantCreateError, match="ConfigurationHash 0123456789ab vs"):
        deriv.prepare_output_dir(settings)


def test_corrupt_record_is_reported(settings):
    out = deriv.prepare_output_dir(settings)
    (out / deriv.STATE_DIR / "options.json").write_text("{")
    with pytest.raises(CantCreateError, match="cannot read the record of options"):
        deriv.prepare_output_dir(settings)


# --------------------------------------------------------------------------------------------
# Shared files
# --------------------------------------------------------------------------------------------
def test_shared_atlas_data_must_be_identical(settings):
    out = deriv.prepare_output_dir(settings)
    path = out / "atlases" / f"tpl-{SPACE}" / "regions.nii.gz"
    deriv.write_nifti(path, image())
    deriv.write_nifti(path, image())  # identical: fine
    other = nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), np.eye(4))
    with pytest.raises(CantCreateError, match="made from other maps"):
        deriv.write_nifti(path, other)
    np.testing.assert_array_equal(nib.load(path).get_fdata(), image().get_fdata())


def test_shared_metadata_is_kept_as_first_written(settings, caplog):
    out = deriv.prepare_output_dir(settings)
    first = deriv.write_json(out / "logs" / "x.json", {"a": 1})
    with caplog.at_level(logging.WARNING, logger="bids_regionx.io"):
        deriv.write_json(first, {"a": 2})
    assert json.loads(first.read_text()) == {"a": 1}
    assert "logs/x.json: kept the existing file" in caplog.text
    # Participant outputs are not shared: they are replaced.
    own = deriv.write_json(out / "sub-01" / "x.json", {"a": 1})
    deriv.write_json(own, {"a": 2})
    assert json.loads(own.read_text()) == {"a": 2}


def test_shared_outside_an_output_dir_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="in no bids_regionx output dir"):
        deriv.write_text(tmp_path / "x.txt", "x", shared=True)


# --------------------------------------------------------------------------------------------
# Parallel participants into one output dir
# --------------------------------------------------------------------------------------------
def _participant(settings: Settings, subject: str, queue) -> None:
    """What one participant process writes: setup, the shared atlas, its own outputs."""
    try:
        out = deriv.prepare_output_dir(settings)
        (spec,) = collect_maps(settings)
        regions = deriv.output_path(
            out, "atlas_regions", **REGIONS, suffix="probseg", extension=".nii.gz"
        )
        deriv.write_nifti(regions, image())
        deriv.write_json(regions.with_suffix("").with_suffix(".json"), {"LabelMap": ["a", "b"]})
        deriv.write_atlas_description(out, "Smith", maps_spec=spec)
        series = deriv.output_path(
            out, "region_timeseries", subject=subject, task="rest", **REGIONS,
            stat="mean", suffix="timeseries", extension=".tsv",
        )  # fmt: skip
        deriv.write_tsv(series, frame())
        queue.put((subject, "ok"))
    except Exception as exc:  # report to the parent, which asserts
        queue.put((subject, f"{type(exc).__name__}: {exc}"))


def run_participants(settings_list: list[Settings]) -> dict[str, str]:
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    processes = [
        context.Process(target=_participant, args=(settings, f"{i + 1:02d}", queue))
        for i, settings in enumerate(settings_list)
    ]
    for process in processes:
        process.start()
    results = dict(queue.get(timeout=60) for _ in processes)
    for process in processes:
        process.join(timeout=60)
    return results


def test_eight_parallel_participants_into_one_output_dir(settings):
    results = run_participants([settings] * 8)
    assert results == {f"{i:02d}": "ok" for i in range(1, 9)}
    out = settings.output_dir
    expected = deriv.json_bytes(deriv.dataset_description(settings, collect_maps(settings)))
    assert (out / "dataset_description.json").read_bytes() == expected
    assert len(list(out.glob("sub-*/func/*_timeseries.tsv"))) == 8
    assert temporary_files(out) == []
    assert not [p for p in out.rglob("*.lock") if deriv.STATE_DIR not in p.parts]
    np.testing.assert_array_equal(
        nib.load(next(out.glob("atlases/tpl-*/*_seg-regions_probseg.nii.gz"))).get_fdata(),
        image().get_fdata(),
    )


def test_parallel_participants_with_mixed_options(settings, tmp_path):
    other = make_settings(tmp_path, output_dir=settings.output_dir, threshold=3.0)
    results = run_participants([settings, other] * 4)
    ok = sorted(subject for subject, status in results.items() if status == "ok")
    refused = [status for status in results.values() if status != "ok"]
    # Whoever came first set the options; every process with the other options was refused.
    assert ok in (["01", "03", "05", "07"], ["02", "04", "06", "08"])
    assert len(refused) == 4
    assert all("CantCreateError" in s and "regions.threshold" in s for s in refused)
