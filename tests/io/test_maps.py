"""Tests of bids_regionx.io.maps: --maps files, BIDS-Atlas datasets, TemplateFlow, names."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bids_regionx.config import ExecutionSettings, MapsSettings, SelectionSettings, Settings
from bids_regionx.errors import DataError, NoInputError, UsageError
from bids_regionx.io.maps import (
    MapsSpec,
    collect_maps,
    default_map_names,
    maps_label_from_name,
    parse_entities,
    read_map_names,
)
from bids_regionx.synthetic.dataset import make_variant

SPACE = "MNI152NLin2009cAsym"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """The tiny dataset with its maps as a BIDS-Atlas dataset (do not modify)."""
    return make_variant(tmp_path_factory.mktemp("maps"), "res")


def write_image(path: Path, shape=(4, 5, 6, 3)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), path)
    return path


def write_table(path: Path, rows: list[tuple], header=("index", "name")) -> Path:
    lines = ["\t".join(header)] + ["\t".join(map(str, row)) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def make_settings(tmp_path: Path, *, datasets=None, space=None, **maps) -> Settings:
    return Settings(
        bids_dir=tmp_path / "fmriprep",
        output_dir=tmp_path / "out",
        analysis_level="participant",
        selection=SelectionSettings(datasets=datasets or {}, space=space),
        maps=MapsSettings(**maps),
        execution=ExecutionSettings(work_dir=tmp_path / "work"),
    )


def files_settings(tmp_path, *files, **options) -> Settings:
    return make_settings(tmp_path, files=files, **options)


# --------------------------------------------------------------------------------------------
# --maps files
# --------------------------------------------------------------------------------------------
def test_synthetic_maps_file(synthetic, tmp_path):
    (spec,) = collect_maps(files_settings(tmp_path, synthetic.maps))
    assert spec == MapsSpec(
        label="Synthetic",
        path=synthetic.maps,
        space=SPACE,
        res="2",
        map_names=synthetic.map_names,
        n_maps=3,
        source="maps",
        labels_file=synthetic.maps_labels,
        dataset_name="maps",
        dataset_root=synthetic.maps_dir,
        description_file=synthetic.maps_dir / "atlas-Synthetic_description.json",
    )
    assert spec.uri == f"bids:maps:tpl-{SPACE}/{synthetic.maps.name}"
    assert hash(spec) == hash(collect_maps(files_settings(tmp_path, synthetic.maps))[0])


@pytest.mark.parametrize(
    ("name", "label"),
    [
        (f"tpl-{SPACE}_atlas-Smith09_probseg.nii.gz", "Smith09"),
        ("DiFuMo64.nii.gz", "DiFuMo64"),
        ("canica_resting-state.nii.gz", "CanicaRestingState"),
        ("smith_2009_rsn10.nii", "Smith2009Rsn10"),
        ("___.nii.gz", "maps"),
    ],
)
def test_label_derived_from_the_file_name(name, label):
    assert maps_label_from_name(name) == label


def test_derived_labels_are_made_unique_and_links_numbered(tmp_path):
    first = write_image(tmp_path / "a" / "maps.nii.gz")
    second = write_image(tmp_path / "b" / "maps.nii.gz")
    specs = collect_maps(files_settings(tmp_path, first, second))
    assert [s.label for s in specs] == ["Maps", "Maps2"]
    assert [s.dataset_name for s in specs] == ["maps", "maps2"]
    assert [s.dataset_root for s in specs] == [first.parent, second.parent]


def test_maps_label_option_wins(tmp_path):
    image = write_image(tmp_path / "atlas-Foo_probseg.nii.gz")
    (spec,) = collect_maps(files_settings(tmp_path, image, labels=("Bar",)))
    assert spec.label == "Bar"


@pytest.mark.parametrize(
    ("name", "space_option", "space", "res"),
    [
        ("tpl-MNI152NLin6Asym_res-2_atlas-X_probseg.nii.gz", None, "MNI152NLin6Asym", "2"),
        ("space-MNIPediatricAsym_desc-ica_components.nii.gz", None, "MNIPediatricAsym", None),
        ("tpl-MNI152NLin6Asym_atlas-X_probseg.nii.gz", "Other", "MNI152NLin6Asym", None),
        ("components.nii.gz", "MNI152NLin6Asym", "MNI152NLin6Asym", None),
        ("components.nii.gz", None, SPACE, None),
    ],
)
def test_space_from_name_then_option_then_default(tmp_path, name, space_option, space, res):
    image = write_image(tmp_path / name)
    (spec,) = collect_maps(files_settings(tmp_path, image, space=space_option))
    assert (spec.space, spec.res) == (space, res)


def test_a_3d_image_is_one_map(tmp_path):
    image = write_image(tmp_path / "one.nii.gz", shape=(4, 5, 6))
    (spec,) = collect_maps(files_settings(tmp_path, image))
    assert (spec.n_maps, spec.map_names, spec.labels_file) == (1, ("map00",), None)


def test_default_names_grow_with_the_number_of_maps():
    assert default_map_names(3) == ("map00", "map01", "map02")
    assert default_map_names(101)[-1] == "map100"
    assert default_map_names(100)[-1] == "map99"


def test_labels_tsv_option_is_read_in_index_order(tmp_path):
    image = write_image(tmp_path / "c.nii.gz")
    table = write_table(tmp_path / "names.tsv", [(3, "C"), (1, "A"), (2, "B")])
    (spec,) = collect_maps(files_settings(tmp_path, image, labels_tsv=(table,)))
    assert (spec.map_names, spec.labels_file) == (("A", "B", "C"), table)


def test_names_from_a_json_label_map_beside_the_image(tmp_path):
    image = write_image(tmp_path / "c.nii.gz")
    (tmp_path / "c.json").write_text(json.dumps({"LabelMap": ["x", "y", "z"]}))
    (spec,) = collect_maps(files_settings(tmp_path, image))
    assert spec.map_names == ("x", "y", "z")


def test_table_without_index_keeps_row_order(tmp_path):
    table = write_table(tmp_path / "n.tsv", [("b",), ("a",)], header=("name",))
    assert read_map_names(table, 2, image=tmp_path / "x.nii.gz") == ("b", "a")


@pytest.mark.parametrize(
    ("rows", "header", "message"),
    [
        ([(1, "A"), (2, "B")], ("index", "name"), r"names.tsv: 2 names for 3 maps in c.nii.gz"),
        ([(1, "A"), (2, "B"), (3, "C")], ("index", "label"), "no.*'name' column|'name' column"),
        ([(1, "A"), (2, "A"), (3, "C")], ("index", "name"), r"unique \(A repeated\)"),
        ([(1, "A"), (1, "B"), (3, "C")], ("index", "name"), "repeated values in the 'index'"),
        ([("x", "A"), (2, "B"), (3, "C")], ("index", "name"), "must hold integers"),
        ([(1, "A"), (2, ""), (3, "C")], ("index", "name"), "non-empty"),
    ],
)
def test_bad_names_tables_are_data_errors(tmp_path, rows, header, message):
    image = write_image(tmp_path / "c.nii.gz")
    table = write_table(tmp_path / "names.tsv", rows, header=header)
    with pytest.raises(DataError, match=message) as caught:
        collect_maps(files_settings(tmp_path, image, labels_tsv=(table,)))
    assert caught.value.exit_code == 65


def test_missing_file_is_no_input(tmp_path):
    with pytest.raises(NoInputError, match=r"--maps .*absent.nii.gz: no such file") as caught:
        collect_maps(files_settings(tmp_path, tmp_path / "absent.nii.gz"))
    assert caught.value.exit_code == 66


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("maps.txt", b"hello", "not a NIfTI file"),
        ("maps.nii.gz", b"", r"the file is empty \(0 bytes\)"),
        ("maps.nii.gz", b"\x1f\x8b garbage", "cannot read it as NIfTI"),
    ],
)
def test_files_that_are_not_maps_are_data_errors(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        collect_maps(files_settings(tmp_path, path))


def test_5d_image_is_refused(tmp_path):
    image = write_image(tmp_path / "five.nii.gz", shape=(2, 2, 2, 2, 2))
    with pytest.raises(DataError, match="a 5D image, expected 3D"):
        collect_maps(files_settings(tmp_path, image))


def test_parse_entities():
    assert parse_entities("tpl-A_res-02_atlas-B_desc-64d_probseg.nii.gz") == {
        "tpl": "A",
        "res": "02",
        "atlas": "B",
        "desc": "64d",
    }


# --------------------------------------------------------------------------------------------
# BIDS-Atlas datasets (-d atlases=PATH --atlas LABEL)
# --------------------------------------------------------------------------------------------
def atlas_tree(root: Path, names: list[str], *, tsv: bool = True) -> Path:
    """Images (3 maps each) under ``root``; a TSV beside each unless ``tsv`` is False."""
    (root / "dataset_description.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text('{"Name": "atlases"}')
    for name in names:
        tpl = parse_entities(name)["tpl"]
        image = write_image(root / f"tpl-{tpl}" / name)
        if tsv:
            stem = name.split(".")[0]
            write_table(image.with_name(f"{stem}.tsv"), [(1, "a"), (2, "b"), (3, "c")])
    return root


def atlas_settings(tmp_path, root, label, **options) -> Settings:
    return make_settings(tmp_path, datasets={"atlases": root}, atlas=label, **options)


def test_atlas_dataset(synthetic, tmp_path):
    (spec,) = collect_maps(atlas_settings(tmp_path, synthetic.maps_dir, "Synthetic"))
    assert (spec.path, spec.source, spec.dataset_name) == (synthetic.maps, "atlases", "atlases")
    assert (spec.space, spec.res, spec.map_names) == (SPACE, "2", synthetic.map_names)
    assert spec.description_file == synthetic.maps_dir / "atlas-Synthetic_description.json"
    assert spec.uri == f"bids:atlases:tpl-{SPACE}/{synthetic.maps.name}"


def test_dseg_is_not_a_maps_image(tmp_path):
    root = atlas_tree(tmp_path / "atl", [f"tpl-{SPACE}_atlas-Schaefer_dseg.nii.gz"])
    with pytest.raises(DataError, match="is a dseg image .*needs a probseg"):
        collect_maps(atlas_settings(tmp_path, root, "Schaefer"))


def test_unknown_atlas_lists_those_found(tmp_path):
    root = atlas_tree(tmp_path / "atl", [f"tpl-{SPACE}_atlas-Smith_probseg.nii.gz"])
    with pytest.raises(NoInputError, match=r"atlases found: Smith\)"):
        collect_maps(atlas_settings(tmp_path, root, "DiFuMo"))


def test_atlas_space_default_and_option(tmp_path):
    names = [f"tpl-{tpl}_atlas-A_probseg.nii.gz" for tpl in (SPACE, "MNI152NLin6Asym")]
    root = atlas_tree(tmp_path / "atl", names)
    assert collect_maps(atlas_settings(tmp_path, root, "A"))[0].space == SPACE
    chosen = collect_maps(atlas_settings(tmp_path, root, "A", space="MNI152NLin6Asym"))[0]
    assert chosen.space == "MNI152NLin6Asym"
    with pytest.raises(UsageError, match="not available in --space Other"):
        collect_maps(atlas_settings(tmp_path, root, "A", space="Other"))


def test_atlas_in_several_non_default_spaces_needs_space(tmp_path):
    names = [f"tpl-{tpl}_atlas-A_probseg.nii.gz" for tpl in ("Ped1", "Ped2")]
    root = atlas_tree(tmp_path / "atl", names)
    with pytest.raises(UsageError, match=r"spaces \(Ped1, Ped2\); choose one with --space"):
        collect_maps(atlas_settings(tmp_path, root, "A"))


def test_atlas_descriptions_are_chosen_by_glued_label(tmp_path):
    names = [f"tpl-{SPACE}_atlas-DiFuMo_desc-{d}dimensions_probseg.nii.gz" for d in (64, 128)]
    root = atlas_tree(tmp_path / "atl", names)
    with pytest.raises(UsageError, match="of --atlas DiFuMo128dimensions, --atlas DiFuMo64dim"):
        collect_maps(atlas_settings(tmp_path, root, "DiFuMo"))
    (spec,) = collect_maps(atlas_settings(tmp_path, root, "DiFuMo64dimensions"))
    assert spec.label == "DiFuMo64dimensions" and "desc-64dimensions" in spec.path.name


def test_atlas_resolution_without_res_then_lowest(tmp_path):
    names = [f"tpl-{SPACE}_atlas-A_res-{r}_probseg.nii.gz" for r in ("02", "01", "3")]
    root = atlas_tree(tmp_path / "atl", names)
    assert collect_maps(atlas_settings(tmp_path, root, "A"))[0].res == "01"
    atlas_tree(root, [f"tpl-{SPACE}_atlas-A_probseg.nii.gz"])
    assert collect_maps(atlas_settings(tmp_path, root, "A"))[0].res is None


# --------------------------------------------------------------------------------------------
# TemplateFlow (local cache only)
# --------------------------------------------------------------------------------------------
@pytest.fixture
def templateflow(tmp_path, monkeypatch):
    home = tmp_path / "templateflow"
    name = f"tpl-{SPACE}_res-02_atlas-DiFuMo_desc-64dimensions_probseg.nii.gz"
    atlas_tree(home, [name], tsv=False)
    # TemplateFlow keeps one look-up table for every resolution.
    write_table(
        home / f"tpl-{SPACE}" / f"tpl-{SPACE}_atlas-DiFuMo_desc-64dimensions_probseg.tsv",
        [(1, "Cerebellum"), (2, "Precuneus"), (3, "Insula")],
    )
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(home))
    return home / f"tpl-{SPACE}" / name


def test_templateflow_cache(templateflow, tmp_path):
    (spec,) = collect_maps(make_settings(tmp_path, atlas="DiFuMo64dimensions"))
    assert (spec.path, spec.source, spec.res) == (templateflow, "templateflow", "02")
    assert spec.map_names == ("Cerebellum", "Precuneus", "Insula")


def test_templateflow_placeholder_is_never_downloaded(templateflow, tmp_path):
    templateflow.write_bytes(b"")  # what an unfetched TemplateFlow skeleton file looks like
    with pytest.raises(DataError, match="TemplateFlow has not downloaded it"):
        collect_maps(make_settings(tmp_path, atlas="DiFuMo64dimensions"))


def test_no_templateflow_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tmp_path / "nowhere"))
    with pytest.raises(NoInputError, match="no -d atlases=PATH and no TemplateFlow cache"):
        collect_maps(make_settings(tmp_path, atlas="DiFuMo"))
