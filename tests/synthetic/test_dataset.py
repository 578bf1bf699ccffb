"""Tests of bids_regionx.synthetic.dataset: names, sidecars, tables, determinism, ground truth."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from bids_regionx.synthetic import confounds as cf
from bids_regionx.synthetic.__main__ import main
from bids_regionx.synthetic.dataset import (
    FAULTS,
    PRESETS,
    DatasetInfo,
    inject_fault,
    make_fmriprep_dataset,
    make_preset,
    make_variant,
)

SPACE = "space-MNI152NLin2009cAsym"
DERIVATIVE_COLUMNS = ("_derivative1",)
NA_FIRST_ROW = ("framewise_displacement", "rmsd", "dvars", "std_dvars")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> DatasetInfo:
    return make_preset(tmp_path_factory.mktemp("tiny"), "tiny", ground_truth=True)


def read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = path.read_text().splitlines()
    return lines[0].split("\t"), [line.split("\t") for line in lines[1:]]


def read_confounds(path: Path) -> dict[str, np.ndarray]:
    header, rows = read_table(path)
    data = np.array([[np.nan if v == "n/a" else float(v) for v in row] for row in rows])
    return {name: data[:, i] for i, name in enumerate(header)}


def tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------------------------------------
# Layout and sidecars
# ------------------------------------------------------------------------------------------------
def test_file_names_are_exactly_fmriprep_names(tiny):
    expected = {"dataset_description.json"}
    for sub in ("01", "02"):
        anat = f"sub-{sub}/anat/sub-{sub}_{SPACE}"
        expected |= {
            f"{anat}_desc-brain_mask.nii.gz",
            f"{anat}_desc-brain_mask.json",
            f"{anat}_desc-preproc_T1w.nii.gz",
            f"{anat}_desc-preproc_T1w.json",
            f"{anat}_dseg.nii.gz",
            *(f"{anat}_label-{t}_probseg.nii.gz" for t in ("CSF", "GM", "WM")),
        }
        for run in (1, 2):
            src = f"sub-{sub}/func/sub-{sub}_task-rest_run-{run}"
            expected |= {
                f"{src}_{SPACE}_desc-preproc_bold.nii.gz",
                f"{src}_{SPACE}_desc-preproc_bold.json",
                f"{src}_{SPACE}_desc-brain_mask.nii.gz",
                f"{src}_{SPACE}_desc-brain_mask.json",
                f"{src}_{SPACE}_boldref.nii.gz",
                f"{src}_desc-confounds_timeseries.tsv",
                f"{src}_desc-confounds_timeseries.json",
            }
    assert set(tree(tiny.root)) == expected
    maps = set(tree(tiny.maps_dir))
    stem = "tpl-MNI152NLin2009cAsym/tpl-MNI152NLin2009cAsym_atlas-Synthetic_probseg"
    assert maps == {
        "dataset_description.json",
        "atlas-Synthetic_description.json",
        f"{stem}.nii.gz",
        f"{stem}.json",
        f"{stem}.tsv",
    }
    assert [r.bold.exists() and r.confounds.exists() for r in tiny.runs] == [True] * 4


def test_dataset_description_is_an_fmriprep_derivative(tiny):
    desc = json.loads((tiny.root / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Name"] == "fMRIPrep"
    assert desc["GeneratedBy"][0]["Version"] == tiny.fmriprep_version == "23.2.1"
    assert {"Name", "BIDSVersion", "HowToAcknowledge"} <= set(desc)


def test_sidecars_carry_fmriprep_keys(tiny):
    run = tiny.runs[0]
    bold = json.loads(run.bold_json.read_text())
    assert bold == {
        "RepetitionTime": PRESETS["tiny"]["t_r"],
        "SkullStripped": False,
        "SliceTimingCorrected": False,
        "TaskName": "rest",
    }
    mask = json.loads(run.mask_json.read_text())
    assert mask["Type"] == "Brain"
    assert mask["RawSources"] == ["sub-01/func/sub-01_task-rest_run-1_bold.nii.gz"]


def test_images_have_the_bold_grid_and_realistic_intensity(tiny):
    run = tiny.runs[0]
    img = nib.load(run.bold)
    data = np.asarray(img.dataobj)
    assert data.dtype == np.float32
    assert img.shape == (*tiny.shape, run.n_volumes)
    assert img.header.get_zooms() == (8.0, 8.0, 8.0, PRESETS["tiny"]["t_r"])
    assert img.header.get_xyzt_units() == ("mm", "sec")
    assert int(img.header["sform_code"]) == 4
    np.testing.assert_array_equal(img.affine, tiny.affine)
    mask_img = nib.load(run.mask)
    mask = np.asarray(mask_img.dataobj)
    assert mask_img.get_data_dtype() == np.uint8 and set(np.unique(mask)) == {0, 1}
    np.testing.assert_array_equal(mask_img.affine, tiny.affine)
    steady = data[mask.astype(bool)][:, run.n_dummy :]
    assert 400 < steady.mean() < 1200  # scanner units, not z-scores
    assert np.all(data[0, 0, 0] == 0)  # outside the head
    boldref = nib.load(run.boldref)
    assert boldref.ndim == 3 and boldref.get_data_dtype() == np.float32
    maps = nib.load(tiny.maps)
    assert maps.shape == (*tiny.shape, tiny.n_maps) and maps.get_data_dtype() == np.float32
    np.testing.assert_array_equal(maps.affine, tiny.affine)


def test_non_steady_state_volumes_overshoot(tiny):
    run = tiny.runs[0]
    data = np.asarray(nib.load(run.bold).dataobj)
    mask = np.asarray(nib.load(run.mask).dataobj).astype(bool)
    mean = data[mask].mean(axis=0)
    steady = mean[run.n_dummy :].mean()
    assert mean[0] > 2 * steady
    assert np.all(mean[: run.n_dummy] > 1.2 * steady)
    assert abs(mean[run.n_dummy] / steady - 1) < 0.05


# ------------------------------------------------------------------------------------------------
# Confounds
# ------------------------------------------------------------------------------------------------
def test_confounds_have_every_fmriprep_column_family(tiny):
    run = tiny.runs[0]
    cols = read_confounds(run.confounds)
    fam = cf.column_families(cols)
    assert fam["motion"] == list(cf.MOTION_COLUMNS)
    assert len(fam["motion_expansion"]) == 18
    for base in ("global_signal", "csf", "white_matter"):
        for suffix in ("", "_derivative1", "_power2", "_derivative1_power2"):
            assert base + suffix in cols
    assert {"csf_wm", "tcompcor", *NA_FIRST_ROW} <= set(cols)
    n_cos = int(np.floor(2 * (run.n_volumes - run.n_dummy) * tiny.t_r / 128)) - 1
    assert fam["cosine"] == [f"cosine{i:02d}" for i in range(n_cos)]
    assert fam["non_steady_state"] == [
        f"non_steady_state_outlier{i:02d}" for i in range(run.n_dummy)
    ]
    for i, name in enumerate(fam["non_steady_state"]):
        np.testing.assert_array_equal(np.flatnonzero(cols[name]), [i])
    for prefix in ("t_comp_cor_", "c_comp_cor_", "w_comp_cor_", "a_comp_cor_"):
        assert f"{prefix}00" in cols
    assert len(fam["edge"]) == 24
    assert fam["motion_outlier"] and not fam["other"]
    # CompCor and cosines are zero over the non-steady-state volumes, as nipype pads them.
    for name in fam["compcor"] + fam["cosine"] + fam["edge"]:
        assert np.all(cols[name][: run.n_dummy] == 0)


def test_na_only_in_the_first_row_of_difference_columns(tiny):
    header, rows = read_table(tiny.runs[1].confounds)
    for j, name in enumerate(header):
        na_rows = [i for i, row in enumerate(rows) if row[j] == "n/a"]
        if "_derivative1" in name or name in NA_FIRST_ROW:
            assert na_rows == [0], name
        else:
            assert na_rows == [], name


def test_compcor_metadata_matches_columns(tiny):
    run = tiny.runs[0]
    cols = read_confounds(run.confounds)
    meta = json.loads(run.confounds_json.read_text())
    masks = {
        "c_comp_cor_": "CSF",
        "w_comp_cor_": "WM",
        "a_comp_cor_": "combined",
        "edge_comp_": "Edge",
    }
    for name in cols:
        prefix = next((p for p in (*masks, "t_comp_cor_") if name.startswith(p)), None)
        if prefix is None:
            continue
        entry = meta[name]
        assert {
            "Method",
            "SingularValue",
            "VarianceExplained",
            "CumulativeVarianceExplained",
            "Retained",
        } <= set(entry)
        assert entry["Retained"] is True and entry["VarianceExplained"] > 0
        assert entry.get("Mask") == masks.get(prefix)
        assert entry["Method"] == {"t_comp_cor_": "tCompCor", "edge_comp_": "EdgeRegressor"}.get(
            prefix, "aCompCor"
        )
    assert meta["global_signal"] == {"Method": "Mean"}
    assert meta["trans_x"]["Units"] == "mm" and meta["rot_z"]["Units"] == "rad"
    assert not [k for k in meta if k.startswith("dropped_")]


def test_framewise_displacement_is_power_fd_of_the_motion_columns(tiny):
    for run in tiny.runs:
        cols = read_confounds(run.confounds)
        motion = np.column_stack([cols[c] for c in cf.MOTION_COLUMNS])
        np.testing.assert_allclose(motion, run.motion, rtol=0, atol=1e-12)
        diff = np.abs(np.diff(motion, axis=0))
        fd = diff[:, :3].sum(axis=1) + 50.0 * diff[:, 3:].sum(axis=1)
        np.testing.assert_allclose(cols["framewise_displacement"][1:], fd, rtol=1e-12)
        np.testing.assert_allclose(
            cols["trans_x_derivative1"][1:], np.diff(cols["trans_x"]), rtol=1e-12
        )


def test_motion_spikes_show_in_fd_dvars_outliers_and_bold(tiny):
    for run in tiny.runs:
        assert run.spikes, "each tiny run has a planted spike"
        cols = read_confounds(run.confounds)
        flagged = {
            int(np.flatnonzero(v)[0]) for k, v in cols.items() if k.startswith("motion_outlier")
        }
        data = np.asarray(nib.load(run.bold).dataobj)
        mask = np.asarray(nib.load(run.mask).dataobj).astype(bool)
        jumps = np.abs(np.diff(data[mask].mean(axis=0)))
        typical = np.median(jumps[run.n_dummy :])
        for t in run.spikes:
            assert cols["framewise_displacement"][t] > cf.FD_SPIKE_THRESHOLD
            assert t in flagged
            assert max(cols["std_dvars"][t], cols["std_dvars"][t + 1]) > cf.DVARS_SPIKE_THRESHOLD
            assert jumps[t - 1] > 3 * typical  # the signal jumps into the spike volume
        quiet = cols["framewise_displacement"][run.n_dummy + 1 :]
        assert np.median(quiet) < 0.25


# ------------------------------------------------------------------------------------------------
# Ground truth
# ------------------------------------------------------------------------------------------------
def _design(cols: dict[str, np.ndarray]) -> np.ndarray:
    """36P-like design: motion and tissue signals with expansions, plus cosines."""
    fam = cf.column_families(cols)
    names = fam["motion"] + fam["motion_expansion"] + fam["cosine"]
    names += [
        c
        for c in fam["tissue"]
        if c.split("_derivative1")[0].split("_power2")[0]
        in ("global_signal", "csf", "white_matter")
    ]
    return np.nan_to_num(np.column_stack([cols[n] for n in names]))


def test_planted_signals_are_recovered_after_denoising(tiny):
    weights = tiny.planted.weights
    for run in tiny.runs:
        cols = read_confounds(run.confounds)
        keep = np.ones(run.n_volumes, dtype=bool)
        keep[: run.n_dummy] = False
        for name in cf.column_families(cols)["motion_outlier"]:
            keep &= cols[name] == 0
        design = _design(cols)
        x = np.column_stack([design[keep], np.ones(keep.sum())])
        data = np.asarray(nib.load(run.bold).dataobj, dtype=np.float64)
        expected = tiny.expected_signals(run, design=design, sample_mask=keep)
        for b, k in enumerate(tiny.blob_map):
            support = tiny.planted.blob_labels == b + 1
            ts = (data[support] * weights[support][:, [k]]).sum(axis=0)[keep]
            beta, *_ = np.linalg.lstsq(x, ts, rcond=None)
            cleaned = ts - x @ beta
            r = [np.corrcoef(cleaned, expected[:, j])[0, 1] for j in range(tiny.planted.n_blobs)]
            assert r[b] > 0.8, (run.subject, run.run, b, r[b])
            others = [r[j] for j in range(len(r)) if tiny.blob_map[j] != k]
            assert r[b] > max(others) + 0.1


def test_blobs_split_each_map_into_separate_components(tiny):
    maps = np.asarray(nib.load(tiny.maps).dataobj)
    full = ndimage.generate_binary_structure(3, 3)
    for k in range(tiny.n_maps):
        labels, n = ndimage.label(maps[..., k] != 0, structure=full)
        blobs = np.flatnonzero(tiny.blob_map == k)
        assert n == len(blobs) >= 2
        for b in blobs:
            support = tiny.planted.blob_labels == b + 1
            assert len(np.unique(labels[support])) == 1
            assert tiny.blob_of(np.where(support, maps[..., k], 0)) == b
    assert np.all(
        np.isin(np.unique(tiny.planted.blob_labels), np.arange(tiny.planted.n_blobs + 1))
    )


def test_maps_stay_out_of_the_wm_and_csf_masks(tiny):
    maps = np.asarray(nib.load(tiny.maps).dataobj)
    dseg = np.asarray(nib.load(next(tiny.root.rglob("*_dseg.nii.gz"))).dataobj)
    assert np.all(maps[dseg == 1] == 0)  # CSF


def test_labels_tsv_and_json_name_every_map(tiny):
    header, rows = read_table(tiny.maps_labels)
    assert header == ["index", "name"]
    assert [r[1] for r in rows] == list(tiny.map_names) and [r[0] for r in rows] == ["1", "2", "3"]
    assert json.loads(tiny.maps_json.read_text())["LabelMap"] == list(tiny.map_names)


def test_coverage_below_one_for_the_cut_subject(tiny):
    assert np.all(tiny.coverage["01"] == 1.0)
    partial = tiny.coverage["02"][tiny.coverage["02"] < 1]
    assert len(partial) >= 1 and np.all(partial > 0.3)
    mask = np.asarray(nib.load(tiny.run_info("02").mask).dataobj).astype(bool)
    for b, c in enumerate(tiny.coverage["02"]):
        support = tiny.planted.blob_labels == b + 1
        assert mask[support].mean() == pytest.approx(c)


def test_ground_truth_files(tiny):
    gt = tiny.ground_truth_dir
    header, rows = read_table(gt / "blobs.tsv")
    assert len(rows) == tiny.planted.n_blobs and "coverage_sub-02" in header
    latent = read_confounds(gt / "sub-01_task-rest_run-1_latent.tsv")
    np.testing.assert_allclose(
        np.column_stack([latent[n] for n in tiny.map_names]), tiny.runs[0].latent
    )


def test_same_seed_gives_byte_identical_files(tiny, tmp_path):
    again = make_preset(tmp_path, "tiny", ground_truth=True)
    for a, b in (
        (tiny.root, again.root),
        (tiny.maps_dir, again.maps_dir),
        (tiny.ground_truth_dir, again.ground_truth_dir),
    ):
        assert tree(a) == tree(b)
    other = make_preset(tmp_path / "seed1", "tiny", seed=1)
    assert other.runs[0].bold.read_bytes() != tiny.runs[0].bold.read_bytes()


def test_pybids_can_query_the_dataset(tiny, tmp_path):
    bids = pytest.importorskip("bids")
    layout = bids.BIDSLayout(
        tiny.root, validate=False, config=["bids", "derivatives"], database_path=tmp_path / "db"
    )
    bolds = layout.get(suffix="bold", desc="preproc", extension=".nii.gz")
    assert len(bolds) == 4
    assert {b.entities["space"] for b in bolds} == {"MNI152NLin2009cAsym"}
    assert bolds[0].get_metadata()["RepetitionTime"] == PRESETS["tiny"]["t_r"]
    confounds = layout.get(desc="confounds", suffix="timeseries", extension=".tsv")
    assert len(confounds) == 4
    assert layout.get_subjects() == ["01", "02"]
    assert not list(tiny.root.rglob("*.sqlite"))


# ------------------------------------------------------------------------------------------------
# Variants, faults, CLI, errors
# ------------------------------------------------------------------------------------------------
FAST = dict(n_volumes=24, n_dummy=1, anat=False)


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        (
            "sessions",
            "sub-01/ses-2/func/sub-01_ses-2_task-rest_run-1_{SPACE}_desc-preproc_bold.nii.gz",
        ),
        ("multitask", "sub-02/func/sub-02_task-nback_run-2_{SPACE}_desc-preproc_bold.nii.gz"),
        ("res", "sub-01/func/sub-01_task-rest_run-1_{SPACE}_res-2_desc-brain_mask.nii.gz"),
        ("legacy_confounds", "sub-01/func/sub-01_task-rest_run-1_desc-confounds_regressors.tsv"),
        ("fmriprep20", "sub-01/func/sub-01_task-rest_run-2_desc-confounds_timeseries.tsv"),
        ("raw", "sub-01/func/sub-01_task-rest_run-1_{SPACE}_desc-preproc_bold.nii.gz"),
    ],
)
def test_variants_write_the_expected_names(tmp_path, variant, expected):
    info = make_variant(tmp_path, variant, **FAST)
    assert (info.root / expected.format(SPACE=SPACE)).is_file()
    if variant == "res":
        assert json.loads(info.runs[0].bold_json.read_text())["Resolution"] == "8mm, isotropic"
        assert info.maps.name.endswith("_atlas-Synthetic_res-2_probseg.nii.gz")
    if variant == "raw":
        assert info.root == tmp_path / "bids" / "derivatives" / "fmriprep"
        raw = json.loads((info.raw_root / "dataset_description.json").read_text())
        assert raw["DatasetType"] == "raw"
        raw_bold = info.raw_root / "sub-02/func/sub-02_task-rest_run-2_bold.nii.gz"
        assert nib.load(raw_bold).shape[-1] == FAST["n_volumes"]
        assert (info.raw_root / "task-rest_bold.json").is_file()


@pytest.mark.parametrize("version", ["1.4.1", "20.2.7"])
def test_legacy_confounds_layouts(tmp_path, version):
    info = make_fmriprep_dataset(tmp_path / "fmriprep", fmriprep_version=version, **FAST)
    run = info.runs[0]
    cols = read_confounds(run.confounds)
    meta = json.loads(run.confounds_json.read_text())
    assert run.confounds.name.endswith(
        "confounds_regressors.tsv" if version == "1.4.1" else "confounds_timeseries.tsv"
    )
    assert not [c for c in cols if c.startswith(("c_comp_cor", "w_comp_cor", "edge_comp"))]
    pooled = [c for c in cols if c.startswith("a_comp_cor_")]
    assert {meta[c]["Mask"] for c in pooled} == {"CSF", "WM", "combined"}
    assert any(k.startswith("dropped_") and meta[k]["Retained"] is False for k in meta)
    assert ("rmsd" in cols) == (version != "1.4.1")


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_inject_fault(tmp_path, fault):
    info = make_fmriprep_dataset(tmp_path / "fmriprep", n_subjects=1, n_runs=1, **FAST)
    path = inject_fault(info, fault)
    if (
        fault.startswith(("missing_", "no_"))
        and fault != "missing_tr"
        and fault != "missing_column"
    ):
        assert not path.exists()
        return
    if fault == "missing_tr":
        assert "RepetitionTime" not in json.loads(path.read_text())
    elif fault == "bad_json":
        with pytest.raises(json.JSONDecodeError):
            json.loads(path.read_text())
    elif fault == "short_confounds":
        assert len(read_table(path)[1]) == FAST["n_volumes"] - 3
    elif fault == "missing_column":
        assert not [c for c in read_table(path)[0] if c.startswith("csf")]
    elif fault == "nan_confounds":
        assert np.isnan(read_confounds(path)["white_matter"]).sum() == 1
    elif fault == "empty_bold":
        assert path.stat().st_size == 0
    elif fault == "bold_3d":
        assert nib.load(path).ndim == 3
    elif fault == "mask_grid":
        assert not np.allclose(nib.load(path).affine, info.affine)
    elif fault == "not_derivative":
        assert json.loads(path.read_text())["DatasetType"] == "raw"


def test_cli_writes_a_preset(tmp_path, capsys):
    assert main([str(tmp_path), "--preset", "tiny", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "fmriprep:" in out and "blobs" in out
    assert (tmp_path / "fmriprep" / "dataset_description.json").is_file()
    assert (tmp_path / "ground_truth" / "blobs.tsv").is_file()
    assert main([str(tmp_path), "--preset", "tiny"]) == 73  # refuses to overwrite
    assert main([str(tmp_path), "--preset", "tiny", "--overwrite"]) == 0


@pytest.mark.parametrize(
    ("options", "parameter"),
    [
        (dict(n_volumes=5), "n_volumes"),
        (dict(confounds_name="regressor"), "confounds_name"),
        (dict(maps_kind="dictionary"), "maps_kind"),
        (dict(n_dummy=30), "n_dummy"),
        (dict(fmriprep_version="latest"), "fmriprep_version"),
        (dict(n_maps=40), "n_maps"),
        (dict(tasks=("rest-state",)), "tasks"),
    ],
)
def test_bad_options_name_the_parameter(tmp_path, options, parameter):
    with pytest.raises(ValueError, match=parameter):
        make_fmriprep_dataset(tmp_path / "fmriprep", **options)


def test_nilearn_connected_components_recover_the_blobs(tiny):
    regions = pytest.importorskip("nilearn.regions")
    ex = regions.RegionExtractor(
        str(tiny.maps),
        extractor="connected_components",
        thresholding_strategy="img_value",
        threshold=0.5,
        min_region_size=1000,
    ).fit()
    data = ex.regions_img_.get_fdata()
    blobs = [tiny.blob_of(data[..., i]) for i in range(data.shape[-1])]
    assert sorted(blobs) == list(range(tiny.planted.n_blobs))
    assert [int(tiny.blob_map[b]) for b in blobs] == [int(i) for i in ex.index_]


@pytest.mark.slow
def test_demo_preset_regions_with_nilearn_defaults(tmp_path):
    regions = pytest.importorskip("nilearn.regions")
    info = make_preset(tmp_path, "demo", n_subjects=1, n_runs=1)
    ex = regions.RegionExtractor(str(info.maps)).fit()  # local_regions, ratio_n_voxels, 6 mm
    data = ex.regions_img_.get_fdata()
    blobs = [info.blob_of(data[..., i]) for i in range(data.shape[-1])]
    assert sorted(blobs) == list(range(info.planted.n_blobs))
