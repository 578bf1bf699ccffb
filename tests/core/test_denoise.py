"""Tests for bids_regionx.core.denoise: strategies, design matrices, censoring, run exclusion.

Small fMRIPrep-shaped tables are generated here (:func:`make_confounds`); real tables from
``/work/shared/realdata`` are used when present. nilearn's ``load_confounds`` is the oracle.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bids_regionx.core.denoise import (
    REASONS,
    CompCorSpec,
    Strategy,
    StrategyError,
    build_design,
    build_sample_mask,
    censoring_summary,
    check_run_usable,
    list_strategies,
    load_strategy,
    read_confounds,
    select_compcor,
    strategy_from_dict,
)
from bids_regionx.errors import DataError, NoInputError, UsageError

REALDATA = Path("/work/shared/realdata")
FMRIPREP_14 = REALDATA / "confounds" / "fmriprep-1.4_desc-confounds_regressors.tsv"
MOTION_ONLY = (
    REALDATA / "confounds" / "sub-01_task-mixedgamblestask_run-01_desc-motion_timeseries.tsv"
)
DS001_FUNC = REALDATA / "bids" / "ds000001-fmriprep" / "sub-16" / "func"
# fMRIPrep 20.2 sidecar describing 189 retained aCompCor components (CSF, WM, combined).
SIDECAR_20_2 = (
    DS001_FUNC / "sub-16_task-balloonanalogrisktask_run-3_desc-confounds_timeseries.json"
)

MOTION = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
FULL = ["", "_derivative1", "_power2", "_derivative1_power2"]
M24 = [f"{m}{s}" for m in MOTION for s in FULL]
M12 = [f"{m}{s}" for m in MOTION for s in ["", "_derivative1"]]


# ------------------------------------------------------------------------------ fixtures


def make_confounds(
    n_volumes: int = 60,
    *,
    n_dummy: int = 0,
    fd_spikes: tuple[int, ...] = (),
    dvars_spikes: tuple[int, ...] = (),
    compcor: str | None = "split",
    n_cosine: int = 3,
    seed: int = 0,
) -> tuple[pd.DataFrame, dict]:
    """A small fMRIPrep-like confounds table and its JSON sidecar.

    ``compcor="split"`` uses fMRIPrep >= 21 names (a_/c_/w_comp_cor per mask),
    ``"legacy"`` fMRIPrep 1.4-20.2 names (one a_comp_cor series, masks only in the JSON).
    Derivative, FD and DVARS columns start with n/a, as fMRIPrep writes them.
    """
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {}
    meta: dict = {}

    def expanded(name, base):
        d = np.r_[np.nan, np.diff(base)]
        cols.update(
            {
                name: base,
                f"{name}_derivative1": d,
                f"{name}_power2": base**2,
                f"{name}_derivative1_power2": d**2,
            }
        )

    for name in ["global_signal", "csf", "white_matter"]:
        expanded(name, rng.normal(100, 5, n_volumes))
    fd = np.abs(rng.normal(0.08, 0.03, n_volumes))
    fd[list(fd_spikes)] = 0.9
    std_dvars = np.abs(rng.normal(1.0, 0.1, n_volumes))
    std_dvars[list(dvars_spikes)] = 2.5
    fd[0] = std_dvars[0] = np.nan
    cols.update(framewise_displacement=fd, std_dvars=std_dvars, dvars=std_dvars * 20, rmsd=fd / 2)
    for name in MOTION:
        expanded(name, np.cumsum(rng.normal(0, 0.01, n_volumes)))
    for k in range(n_cosine):
        cols[f"cosine_{k:02d}"] = np.cos(
            np.pi * (k + 1) * (np.arange(n_volumes) + 0.5) / n_volumes
        )
    for k in range(n_dummy):
        cols[f"non_steady_state_outlier_{k:02d}"] = (np.arange(n_volumes) == k).astype(float)

    def component(name, method, mask=None, retained=True):
        cols[name] = rng.standard_normal(n_volumes) if retained else None
        meta[name] = {"Method": method, "Retained": retained, **({"Mask": mask} if mask else {})}

    if compcor == "split":
        for prefix, mask, n in [("a", "combined", 6), ("c", "CSF", 7), ("w", "WM", 7)]:
            for k in range(n):
                component(f"{prefix}_comp_cor_{k:02d}", "aCompCor", mask)
        meta["dropped_0"] = {"Method": "aCompCor", "Mask": "CSF", "Retained": False}
    elif compcor == "legacy":
        masks = ["CSF"] * 4 + ["WM"] * 6 + ["combined"] * 5
        for k, mask in enumerate(masks):
            component(f"a_comp_cor_{k:02d}", "aCompCor", mask)
    if compcor is not None:
        for k in range(3):
            component(f"t_comp_cor_{k:02d}", "tCompCor")
    cols = {k: v for k, v in cols.items() if v is not None}
    return pd.DataFrame(cols), meta


EXPECTED_COLUMNS = {
    "none": [],
    "simple": M24 + ["csf", "white_matter"],
    "simple+gsr": M24 + ["csf", "white_matter", "global_signal"],
    "24P": M24,
    "36P": M24 + [f"{t}{s}" for t in ["global_signal", "csf", "white_matter"] for s in FULL],
    "compcor": M24 + [f"a_comp_cor_{k:02d}" for k in range(6)],
    "acompcor": M12
    + [f"w_comp_cor_{k:02d}" for k in range(5)]
    + [f"c_comp_cor_{k:02d}" for k in range(5)],
    "acompcor_gsr": M12
    + ["global_signal"]
    + [f"w_comp_cor_{k:02d}" for k in range(5)]
    + [f"c_comp_cor_{k:02d}" for k in range(5)],
}
for _fd in ("2", "5"):
    _scrub = M24 + [f"{t}{s}" for t in ["csf", "white_matter"] for s in FULL]
    EXPECTED_COLUMNS[f"scrubbing.{_fd}"] = _scrub
    EXPECTED_COLUMNS[f"scrubbing.{_fd}+gsr"] = [*_scrub, "global_signal"]
COSINES = ["cosine_00", "cosine_01", "cosine_02"]


def nilearn_load(tmp_path, df, meta, **kwargs):
    """Run nilearn's load_confounds(_strategy) on a table written as an fMRIPrep run."""
    fmriprep = pytest.importorskip("nilearn.interfaces.fmriprep")
    stem = tmp_path / "sub-01_task-rest"
    df.to_csv(f"{stem}_desc-confounds_timeseries.tsv", sep="\t", index=False, na_rep="n/a")
    Path(f"{stem}_desc-confounds_timeseries.json").write_text(json.dumps(meta))
    img = Path(f"{stem}_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz")
    img.touch()
    func = (
        fmriprep.load_confounds_strategy
        if "denoise_strategy" in kwargs
        else fmriprep.load_confounds
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func(str(img), **kwargs)


# ------------------------------------------------------------------------------ built-ins


def test_builtin_strategies_cover_the_product_spec():
    required = {
        "none",
        "simple",
        "simple+gsr",
        "scrubbing.5",
        "scrubbing.2",
        "compcor",
        "24P",
        "36P",
    }
    assert required <= set(list_strategies())
    assert set(EXPECTED_COLUMNS) == set(list_strategies())


@pytest.mark.parametrize("name", list_strategies())
def test_builtin_strategy_is_valid_and_round_trips(name):
    strategy = load_strategy(name)
    assert strategy.name == name and strategy.builtin and strategy.source
    if name != "none":
        assert "[@" in strategy.description
    assert strategy.dummy_scans == "auto"
    if strategy.compcor is not None:
        assert strategy.high_pass
    assert strategy_from_dict(json.loads(json.dumps(strategy.to_dict()))) == strategy


@pytest.mark.parametrize("name", list_strategies())
def test_builtin_strategy_selects_exact_columns(name):
    df, meta = make_confounds()
    strategy = load_strategy(name)
    design = build_design(df, strategy, confounds_meta=meta)
    expected = EXPECTED_COLUMNS[name] + (COSINES if strategy.high_pass else [])
    assert list(design.columns) == expected
    assert design.dtypes.eq(np.float64).all() and not design.isna().any().any()


@pytest.mark.parametrize(
    ("name", "fd", "dvars", "segment"),
    [
        ("scrubbing.5", 0.5, None, 5),
        ("scrubbing.5+gsr", 0.5, None, 5),
        ("scrubbing.2", 0.2, None, 5),
        ("scrubbing.2+gsr", 0.2, None, 5),
        ("simple", None, None, 0),
        ("36P", None, None, 0),
    ],
)
def test_builtin_censoring(name, fd, dvars, segment):
    cens = load_strategy(name).censoring
    assert (cens.fd_threshold, cens.dvars_threshold, cens.min_segment) == (fd, dvars, segment)
    assert cens.enabled == (fd is not None)


# ------------------------------------------------------------------------------ nilearn parity


@pytest.mark.parametrize(
    ("name", "nilearn_kwargs"),
    [
        ("simple", {"denoise_strategy": "simple"}),
        ("simple+gsr", {"denoise_strategy": "simple", "global_signal": "basic"}),
        # nilearn ignores std_dvars_threshold=None; an unreachable value switches DVARS off.
        (
            "scrubbing.5",
            {"denoise_strategy": "scrubbing", "fd_threshold": 0.5, "std_dvars_threshold": 1e9},
        ),
        (
            "scrubbing.2+gsr",
            {
                "denoise_strategy": "scrubbing",
                "fd_threshold": 0.2,
                "std_dvars_threshold": 1e9,
                "global_signal": "basic",
            },
        ),
        ("compcor", {"denoise_strategy": "compcor"}),
    ],
)
@pytest.mark.parametrize("compcor", ["split", "legacy"])
def test_matches_nilearn_load_confounds_strategy(tmp_path, name, nilearn_kwargs, compcor):
    df, meta = make_confounds(80, n_dummy=2, fd_spikes=(20, 23, 50), compcor=compcor)
    expected, nl_mask = nilearn_load(tmp_path, df, meta, **nilearn_kwargs)
    strategy = load_strategy(name)
    mask = build_sample_mask(df, **strategy.censoring_kwargs())
    design = build_design(df, strategy, confounds_meta=meta, demean=True, sample_mask=mask.keep)
    assert sorted(design.columns) == sorted(expected.columns)
    np.testing.assert_allclose(design.to_numpy(), expected[design.columns].to_numpy(), atol=1e-12)
    np.testing.assert_array_equal(np.flatnonzero(mask.keep), nl_mask)


def test_acompcor_matches_nilearn_anat_separated(tmp_path):
    df, meta = make_confounds(50, compcor="legacy")
    expected, _ = nilearn_load(
        tmp_path,
        df,
        meta,
        strategy=("high_pass", "motion", "compcor"),
        motion="derivatives",
        compcor="anat_separated",
        n_compcor=5,
    )
    design = build_design(df, load_strategy("acompcor"), confounds_meta=meta)
    assert sorted(design.columns) == sorted(expected.columns)
    # WM first, then CSF, top components of each (legacy numbering: CSF 0-3, WM 4-9).
    assert [c for c in design.columns if "comp_cor" in c] == [
        f"a_comp_cor_{k:02d}" for k in [4, 5, 6, 7, 8, 0, 1, 2, 3]
    ]


@pytest.mark.skipif(not SIDECAR_20_2.exists(), reason="real fMRIPrep 20.2 sidecar not available")
@pytest.mark.parametrize(
    ("spec", "nilearn_compcor"),
    [
        (CompCorSpec("aCompCor", ("combined",), None), {"compcor": "anat_combined"}),
        (CompCorSpec("aCompCor", ("WM", "CSF"), 5), {"compcor": "anat_separated", "n_compcor": 5}),
        (CompCorSpec("tCompCor", (), None), {"compcor": "temporal"}),
    ],
)
def test_compcor_with_real_fmriprep_20_2_sidecar(tmp_path, spec, nilearn_compcor):
    meta = json.loads(SIDECAR_20_2.read_text())
    retained = [k for k, v in meta.items() if "comp_cor" in k and v.get("Retained")]
    rng = np.random.default_rng(0)
    df = pd.DataFrame({k: rng.standard_normal(30) for k in retained})
    df["cosine_00"] = np.linspace(-1, 1, 30)
    ours = select_compcor(df, spec, confounds_meta=meta)
    expected, _ = nilearn_load(
        tmp_path, df, meta, strategy=("high_pass", "compcor"), **nilearn_compcor
    )
    assert sorted(ours) == sorted(c for c in expected.columns if "comp_cor" in c)
    if spec.masks == ("combined",):
        assert ours[0] == "a_comp_cor_102" and len(ours) == 87
    # Without the sidecar the a_comp_cor_XX names are ambiguous in 20.2.
    if spec.method == "aCompCor":
        with pytest.raises(DataError, match="needs the confounds JSON sidecar"):
            select_compcor(df, spec, source="run-3_confounds.tsv")


# ------------------------------------------------------------------------------ design details


def test_compcor_by_names_without_sidecar_for_split_naming():
    df, _ = make_confounds()
    cols = select_compcor(df, CompCorSpec("aCompCor", ("CSF", "combined"), 2))
    assert cols == ["c_comp_cor_00", "c_comp_cor_01", "a_comp_cor_00", "a_comp_cor_01"]
    assert select_compcor(df, CompCorSpec("tCompCor")) == [f"t_comp_cor_{k:02d}" for k in range(3)]


def test_compcor_errors():
    df, meta = make_confounds()
    with pytest.raises(DataError, match="no aCompCor components for mask 'WM' in the JSON"):
        select_compcor(
            df,
            CompCorSpec("aCompCor", ("WM",)),
            confounds_meta={k: v for k, v in meta.items() if not k.startswith("w_")},
        )
    with pytest.raises(DataError, match=r"'c_comp_cor_00'.* missing from the table"):
        select_compcor(
            df.drop(columns="c_comp_cor_00"),
            CompCorSpec("aCompCor", ("CSF",)),
            confounds_meta=meta,
        )


def test_fewer_components_than_requested_takes_what_exists():
    df, meta = make_confounds()
    cols = select_compcor(df, CompCorSpec("aCompCor", ("combined",), 50), confounds_meta=meta)
    assert cols == [f"a_comp_cor_{k:02d}" for k in range(6)]


def _custom(confounds, **extra):
    return strategy_from_dict(
        {"name": "custom", "description": "x", "confounds": confounds, **extra}
    )


def test_regex_families_natural_order_and_optional():
    df = pd.DataFrame({f"motion_outlier_{k}": np.zeros(5) for k in (10, 2, 1)})
    df["cosine00"] = df["cosine01"] = np.ones(5)  # fMRIPrep 1.x cosine naming
    strategy = _custom([r"^motion_outlier_\d+$", r"^aroma_motion_\d+$"], high_pass=True)
    design = build_design(df, strategy)
    assert list(design.columns) == [
        "motion_outlier_1",
        "motion_outlier_2",
        "motion_outlier_10",
        "cosine00",
        "cosine01",
    ]
    required = _custom([{"regex": r"^aroma_motion_\d+$", "required": True}])
    with pytest.raises(DataError, match=r"aroma_motion.*required by denoising strategy 'custom'"):
        build_design(df, required, source="sub-01_desc-confounds_timeseries.tsv")


def test_regex_is_anchored_and_duplicates_dropped():
    df = pd.DataFrame({"csf": np.ones(4), "csf_wm": np.ones(4), "csf_derivative1": np.ones(4)})
    design = build_design(df, _custom(["csf", r"^csf(_derivative1)?$"]))
    assert list(design.columns) == ["csf", "csf_derivative1"]


def test_leading_na_filled_like_nilearn_and_demean():
    df, _ = make_confounds(10)
    design = build_design(df, _custom(["trans_x_derivative1"]))
    assert design.iloc[0, 0] == design.iloc[1, 0] == df["trans_x_derivative1"].iloc[1]
    keep = np.ones(10, dtype=bool)
    keep[[0, 1]] = False
    demeaned = build_design(df, _custom(["csf"]), demean=True, sample_mask=keep)
    assert demeaned["csf"][keep].mean() == pytest.approx(0.0, abs=1e-12)


def test_na_strings_are_understood():
    df = pd.DataFrame({"csf": ["n/a", "1.5", "2.5"]}, dtype=object)
    assert build_design(df, _custom(["csf"]))["csf"].tolist() == [1.5, 1.5, 2.5]


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ([1.0, np.nan, 2.0], r"column 'csf' has n/a at row 2 \(after valid values\)"),
        ([1.0, 2.0, np.nan], "column 'csf' has n/a at row 3"),
        ([np.nan] * 3, "column 'csf' is entirely n/a"),
        (["1", "x", "2"], "column 'csf' has a non-numeric value 'x' at row 2"),
    ],
)
def test_bad_values_name_file_and_column(values, match):
    df = pd.DataFrame({"csf": values})
    with pytest.raises(DataError, match=f"^run_confounds.tsv: {match}"):
        build_design(df, _custom(["csf"]), source="run_confounds.tsv")


def test_missing_columns_listed_together():
    df, _ = make_confounds(compcor=None)
    with pytest.raises(DataError) as info:
        build_design(df.drop(columns=["csf", "rot_z"]), load_strategy("simple"), source="f.tsv")
    assert str(info.value).startswith("f.tsv: column(s) 'rot_z', 'csf' required by denoising")
    assert info.value.exit_code == 65


def test_camel_case_headers_hint_old_fmriprep():
    df = pd.DataFrame({"FramewiseDisplacement": np.zeros(3), "WhiteMatter": np.zeros(3)})
    with pytest.raises(DataError, match="fMRIPrep < 1.2"):
        build_design(df, _custom(["white_matter"]))


@pytest.mark.parametrize("n_volumes", [59, 61])
def test_row_count_must_match_bold(n_volumes):
    df, _ = make_confounds(60)
    relation = "more" if n_volumes < 60 else "fewer"
    with pytest.raises(DataError, match=f"has 60 rows, {relation} than the {n_volumes} volumes"):
        build_design(df, load_strategy("none"), n_volumes=n_volumes)
    with pytest.raises(DataError, match="rows"):
        build_sample_mask(df, n_volumes=n_volumes)


# ------------------------------------------------------------------------------ censoring


def test_dummy_scans_auto_int_and_none():
    df, _ = make_confounds(20, n_dummy=3)
    auto = build_sample_mask(df)
    assert auto.reasons["dummy"].tolist() == [True] * 3 + [False] * 17
    assert list(auto.reasons.columns) == list(REASONS) and auto.reasons.index.name == "volume"
    assert build_sample_mask(df, dummy_scans=5).keep.sum() == 15
    assert build_sample_mask(df, dummy_scans=None).keep.all()
    no_nss, _ = make_confounds(20)
    assert build_sample_mask(no_nss, dummy_scans="auto").keep.all()
    with pytest.raises(DataError, match="20 dummy scans requested but the run has only 20"):
        build_sample_mask(df, dummy_scans=20, source="f.tsv")


def test_fd_and_dvars_reasons():
    df, _ = make_confounds(40, fd_spikes=(10,), dvars_spikes=(10, 30))
    mask = build_sample_mask(df, fd_threshold=0.5, dvars_threshold=1.5)
    assert np.flatnonzero(mask.reasons["fd"]).tolist() == [10]
    assert np.flatnonzero(mask.reasons["dvars"]).tolist() == [10, 30]
    assert np.flatnonzero(~mask.keep).tolist() == [10, 30]
    # Volume 0 has n/a FD and DVARS: never an outlier.
    assert not build_sample_mask(df, fd_threshold=1e-9).reasons.loc[0, "fd"]


def test_short_segments_and_summary():
    df, _ = make_confounds(40, n_dummy=2, fd_spikes=(6, 9, 36))
    mask = build_sample_mask(df, fd_threshold=0.5, min_segment=5)
    # Kept runs: 2-5 (4 volumes, short), 7-8 (short), 10-35, 37-39 (short).
    assert np.flatnonzero(mask.reasons["short_segment"]).tolist() == [2, 3, 4, 5, 7, 8, 37, 38, 39]
    assert np.flatnonzero(mask.keep).tolist() == list(range(10, 36))
    summary = censoring_summary(mask.reasons)
    assert summary == {
        "n_volumes": 40,
        "n_kept": 26,
        "n_dummy": 2,
        "n_motion": 3,
        "n_fd": 3,
        "n_dvars": 0,
        "n_short_segment": 9,
    }
    # No motion outlier: nothing is pruned, however short the run.
    assert build_sample_mask(
        df.iloc[:4], fd_threshold=5.0, min_segment=5, dummy_scans=0
    ).keep.all()


@pytest.mark.parametrize("seed", range(20))
def test_short_segments_match_nilearn_optimize_scrub(seed):
    scrub = pytest.importorskip("nilearn.interfaces.fmriprep.load_confounds_scrub")
    rng = np.random.default_rng(seed)
    n = 60
    spikes = tuple(sorted(rng.choice(n - 1, size=rng.integers(1, 8), replace=False) + 1))
    df, _ = make_confounds(n, fd_spikes=spikes, compcor=None, seed=seed)
    min_segment = int(rng.integers(1, 8))
    mask = build_sample_mask(df, fd_threshold=0.5, min_segment=min_segment)
    expected = scrub.optimize_scrub(np.asarray(spikes), n, min_segment)
    np.testing.assert_array_equal(np.flatnonzero(~mask.keep), expected)


def test_short_segment_counts_after_dummy_scans_unlike_nilearn():
    # nilearn keeps volumes 2-4 (its first segment 0-4 has 5 volumes, dummies included).
    df, _ = make_confounds(30, n_dummy=2, fd_spikes=(5,))
    mask = build_sample_mask(df, fd_threshold=0.5, min_segment=5)
    assert mask.reasons["short_segment"].tolist()[:6] == [False, False, True, True, True, False]


def test_censoring_needs_its_column():
    df, _ = make_confounds(10)
    with pytest.raises(DataError, match="f.tsv: column 'std_dvars' is missing"):
        build_sample_mask(df.drop(columns="std_dvars"), dvars_threshold=1.5, source="f.tsv")
    df.loc[5, "framewise_displacement"] = np.nan
    with pytest.raises(DataError, match="'framewise_displacement' has n/a at row 6"):
        build_sample_mask(df, fd_threshold=0.5)


# ------------------------------------------------------------------------------ run exclusion


@pytest.mark.parametrize(
    ("args", "min_time", "expected"),
    [
        ((200, 40, 2.0), 240.0, None),
        ((100, 40, 2.0), 240.0, "only 200 s of data left after censoring"),
        ((40, 40, 2.0), 0.0, "40 confound regressors for 40 kept volumes"),
        ((39, 40, 2.0), 0.0, "leave no degrees of freedom"),
        ((0, 0, 2.0), 0.0, "no volume left"),
        ((41, 40, 2.0), 0.0, None),
    ],
)
def test_check_run_usable(args, min_time, expected):
    reason = check_run_usable(*args, min_time=min_time)
    if expected is None:
        assert reason is None
    else:
        assert expected in reason


@pytest.mark.parametrize("args", [(-1, 0, 2.0), (10, 2, 0.0), (10, 2, float("nan"))])
def test_check_run_usable_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        check_run_usable(*args)


# ------------------------------------------------------------------------------ user files


def _write(tmp_path, doc, name="mine.json"):
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


VALID = {
    "name": "mine",
    "description": "Six motion parameters [@friston1996].",
    "confounds": MOTION + [r"^cosine_\d+$"],
    "censoring": {"fd_threshold": 0.3, "dvars_threshold": None, "min_segment": 0},
    "dummy_scans": 4,
}


def test_user_file_loads(tmp_path):
    strategy = load_strategy(_write(tmp_path, VALID))
    assert strategy.name == "mine" and not strategy.builtin and strategy.path.name == "mine.json"
    assert strategy.censoring.fd_threshold == 0.3 and strategy.dummy_scans == 4
    assert load_strategy(str(tmp_path / "mine.json")) == strategy
    df, _ = make_confounds(20)
    assert list(build_design(df, strategy).columns) == MOTION + COSINES


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"fd_treshold": 1}, r"unknown key\(s\) \['fd_treshold'\]"),
        ({"name": None}, "key 'name'"),
        ({"name": "a b"}, "key 'name'"),
        ({"description": 3}, "key 'description': expected str, got int"),
        ({"confounds": "csf"}, "key 'confounds': expected a list"),
        ({"confounds": ["csf", "csf"]}, r"key 'confounds\[1\]': 'csf' is listed twice"),
        ({"confounds": ["^cosine"]}, r"key 'confounds\[0\]': regex '\^cosine' must be anchored"),
        ({"confounds": ["^cos(ine$"]}, "invalid regex"),
        ({"confounds": [{"pattern": "x"}]}, "needs 'regex'"),
        ({"confounds": [1]}, "expected a column name"),
        ({"high_pass": "yes"}, "key 'high_pass': expected bool"),
        (
            {"compcor": {"method": "aCompCor", "masks": ["combined"]}},
            "must be true when 'compcor'",
        ),
        ({"compcor": {"method": "pca"}, "high_pass": True}, "compcor.method"),
        ({"compcor": {"method": "aCompCor", "masks": ["GM"]}, "high_pass": True}, "compcor.masks"),
        (
            {
                "compcor": {"method": "aCompCor", "masks": ["WM"], "n_components": 0},
                "high_pass": True,
            },
            "compcor.n_components",
        ),
        ({"censoring": {"fd_threshold": "0.5"}}, "censoring.fd_threshold"),
        ({"censoring": {"fd_threshold": -1}}, "censoring.fd_threshold"),
        ({"censoring": {"dvars_threshold": True}}, "censoring.dvars_threshold"),
        ({"censoring": {"min_segment": 2.5}}, "censoring.min_segment"),
        ({"censoring": {"scrub": 5}}, r"key 'censoring': unknown key\(s\) \['scrub'\]"),
        ({"dummy_scans": "all"}, "key 'dummy_scans'"),
        ({"schema_version": 2}, "only version 1"),
    ],
)
def test_user_file_validation_names_file_and_key(tmp_path, change, match):
    path = _write(tmp_path, {**VALID, **change})
    with pytest.raises(StrategyError, match=match) as info:
        load_strategy(path)
    assert str(info.value).startswith(str(path))
    assert isinstance(info.value, ValueError) and isinstance(info.value, UsageError)
    assert info.value.exit_code == 64


def test_user_file_missing_key_and_bad_json(tmp_path):
    doc = dict(VALID)
    del doc["confounds"]
    with pytest.raises(StrategyError, match="key 'confounds' is required"):
        load_strategy(_write(tmp_path, doc))
    with pytest.raises(StrategyError, match=r"bad.json: invalid JSON \(line 1"):
        load_strategy(_write(tmp_path, '{"name": ', "bad.json"))
    with pytest.raises(StrategyError, match="expected a JSON object"):
        load_strategy(_write(tmp_path, "[]", "list.json"))


def test_unknown_name_and_missing_file(tmp_path):
    with pytest.raises(StrategyError, match=r"unknown name 'simpel'; built-ins are 24P, 36P"):
        load_strategy("simpel")
    with pytest.raises(NoInputError, match="not found"):
        load_strategy(tmp_path / "nope.json")


def test_overrides():
    strategy = load_strategy("scrubbing.5")
    new = strategy.with_overrides(fd_threshold=0.3, dvars_threshold=1.5, dummy_scans=2)
    assert new.censoring.fd_threshold == 0.3 and new.censoring.dvars_threshold == 1.5
    assert new.censoring.min_segment == 5 and new.dummy_scans == 2
    assert strategy.censoring.fd_threshold == 0.5  # frozen original untouched
    assert new.censoring_kwargs() == {
        "dummy_scans": 2,
        "fd_threshold": 0.3,
        "dvars_threshold": 1.5,
        "min_segment": 5,
    }
    with pytest.raises(StrategyError, match="fd_threshold"):
        strategy.with_overrides(fd_threshold=0)
    assert isinstance(Strategy(name="x", description="y").censoring.enabled, bool)


# ------------------------------------------------------------------------------ real tables


@pytest.mark.skipif(not FMRIPREP_14.exists(), reason="real fMRIPrep 1.4 table not available")
@pytest.mark.parametrize("name", list_strategies())
def test_real_fmriprep_14_table(name):
    df, meta = read_confounds(FMRIPREP_14)
    assert df.shape == (405, 480) and meta is None
    strategy = load_strategy(name)
    if strategy.compcor is not None:
        # 1.4 numbers CSF, WM and combined components in one a_comp_cor series; no sidecar here.
        with pytest.raises(DataError, match="needs the confounds JSON sidecar"):
            build_design(df, strategy, n_volumes=405, source=FMRIPREP_14.name)
        return
    design = build_design(df, strategy, n_volumes=405)
    cosines = [f"cosine{k:02d}" for k in range(8)] if strategy.high_pass else []
    assert list(design.columns) == EXPECTED_COLUMNS[name] + cosines
    assert np.isfinite(design.to_numpy()).all()
    mask = build_sample_mask(df, n_volumes=405, **strategy.censoring_kwargs())
    kept = int(mask.keep.sum())
    assert kept == {"scrubbing.2": 394, "scrubbing.2+gsr": 394}.get(name, 405)
    assert check_run_usable(kept, design.shape[1], 2.0, min_time=240.0) is None


@pytest.mark.skipif(not FMRIPREP_14.exists(), reason="real fMRIPrep 1.4 table not available")
def test_real_fmriprep_14_table_matches_nilearn(tmp_path):
    df, _ = read_confounds(FMRIPREP_14)
    expected, nl_mask = nilearn_load(
        tmp_path, df, {}, denoise_strategy="scrubbing", fd_threshold=0.2, std_dvars_threshold=1.5
    )
    strategy = load_strategy("scrubbing.2").with_overrides(dvars_threshold=1.5)
    mask = build_sample_mask(df, **strategy.censoring_kwargs())
    design = build_design(df, strategy, demean=True, sample_mask=mask.keep)
    np.testing.assert_array_equal(np.flatnonzero(mask.keep), nl_mask)
    np.testing.assert_allclose(design.to_numpy(), expected[design.columns].to_numpy(), atol=1e-9)
    assert sorted(design.columns) == sorted(expected.columns)


@pytest.mark.skipif(not MOTION_ONLY.exists(), reason="real motion table not available")
def test_real_motion_only_table():
    df, _ = read_confounds(MOTION_ONLY)
    with pytest.raises(DataError, match=r"'trans_x_derivative1'.*and 10 more.*strategy '24P'"):
        build_design(df, load_strategy("24P"), source=MOTION_ONLY.name)
    design = build_design(df, _custom(MOTION), n_volumes=16)
    assert design.shape == (16, 6)
    mask = build_sample_mask(df, fd_threshold=0.1, dummy_scans="auto")
    assert not mask.reasons.loc[0, "fd"]  # first FD is n/a
    assert mask.reasons["fd"].sum() == (df["framewise_displacement"] > 0.1).sum()


def test_read_confounds_errors(tmp_path):
    with pytest.raises(NoInputError, match="confounds file not found"):
        read_confounds(tmp_path / "x.tsv")
    tsv = tmp_path / "c.tsv"
    tsv.write_text("csf\tfd\n1\tn/a\n2\t0.1\n")
    (tmp_path / "c.json").write_text("{")
    with pytest.raises(DataError, match="invalid JSON"):
        read_confounds(tsv, tmp_path / "c.json")
    df, _ = read_confounds(tsv)
    assert np.isnan(df.loc[0, "fd"]) and df["csf"].tolist() == [1, 2]
