"""Construction of the participant workflow over a grid of options (nothing is executed).

The inputs are real (tiny synthetic datasets, collected with pybids) so that every ``File``
input exists; the graph is flattened as nipype does before running and checked for what the
pipeline promises: region extraction once per maps image, shared by all runs; one resampling
of the regions per distinct BOLD grid; combine nodes only with ``--combine-runs``; every node
name valid, every mandatory input set or connected, every output name unique.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from nipype.interfaces.base import isdefined

from bids_regionx.cli.parser import parse_args
from bids_regionx.interfaces.bids import WriteAtlas, WriteRunOutputs
from bids_regionx.interfaces.regions import ResampleRegions, SplitRegions
from bids_regionx.interfaces.signals import (
    STAT_LABELS,
    CombineRuns,
    Connectivity,
    ExtractRunSignals,
)
from bids_regionx.io.derivatives import output_path
from bids_regionx.io.maps import collect_maps
from bids_regionx.io.queries import collect_runs
from bids_regionx.synthetic.dataset import make_variant
from bids_regionx.workflows.base import combine_groups, grid_key, init_bids_regionx_wf

VARIANTS = ("single_run", "sessions", "multitask", "res")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
#: Two sets of options that change the graph's contents (not only the node inputs).
OPTION_SETS = {
    "defaults": [],
    "many": ["--connectivity", "correlation", "partial correlation", "covariance", "precision",
             "--fisher-z", "--denoise-strategy", "scrubbing.5", "--dummy-scans", "3",
             "--resampling-target", "none", "--no-allow-overlap", "--dtype", "float32",
             "--smoothing-fwhm", "0", "--extractor", "connected_components"],
}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("graph_data")
    return {name: make_variant(root / name, name) for name in VARIANTS}


@pytest.fixture(scope="module")
def collected(datasets, tmp_path_factory):
    """Runs and maps of each dataset, collected once (selection does not vary below)."""
    cache = {}

    def get(name: str, n_maps: int):
        key = (name, n_maps)
        if key not in cache:
            settings = make_settings(datasets[name], tmp_path_factory.mktemp(name), n_maps, [])
            specs = collect_maps(settings)
            cache[key] = (collect_runs(settings, maps_space=specs[0].space), specs)
        return cache[key]

    return get


def make_settings(info, tmp: Path, n_maps: int, extra: list[str]):
    maps = [str(info.maps)] * n_maps
    labels = ["--maps-label", *[f"Net{k}" for k in range(n_maps)]] if n_maps > 1 else []
    return parse_args([str(info.root), str(tmp / "out"), "participant", "--maps", *maps,
                       *labels, "-w", str(tmp / "work"), *extra])


def flat_graph(settings, runs, specs):
    """The execution graph, as ``Workflow.run`` builds it (identity nodes removed)."""
    from nipype.pipeline.engine.utils import generate_expanded_graph

    workflow = init_bids_regionx_wf(settings, runs, specs)
    assert workflow.base_dir == str(settings.execution.work_dir)
    return generate_expanded_graph(copy.deepcopy(workflow._create_flat_graph()))


def nodes_of(graph, interface) -> list:
    return [node for node in graph.nodes if isinstance(node.interface, interface)]


def sources(graph, node, field: str) -> list:
    """Nodes feeding ``field`` of ``node``."""
    return [src for src, _, data in graph.in_edges(node, data=True)
            if any(dest == field for _, dest in data["connect"])]


@pytest.mark.parametrize("options", sorted(OPTION_SETS))
@pytest.mark.parametrize("n_maps", [1, 2])
@pytest.mark.parametrize("combine", [False, True])
@pytest.mark.parametrize("variant", VARIANTS)
def test_graph(collected, datasets, tmp_path, variant, combine, n_maps, options):
    runs, specs = collected(variant, n_maps)
    extra = [*OPTION_SETS[options], *(["--combine-runs"] if combine else [])]
    settings = make_settings(datasets[variant], tmp_path, n_maps, extra)
    graph = flat_graph(settings, runs, specs)
    labels = [spec.label for spec in specs]
    assert len(set(labels)) == n_maps

    # Node names: valid, and unique once flattened.
    names = [node.fullname for node in graph.nodes]
    assert len(names) == len(set(names))
    assert all(_NAME.match(part) for name in names for part in name.split(".")), names

    # Every mandatory input is set or connected.
    for node in graph.nodes:
        connected = {dest for _, _, data in graph.in_edges(node, data=True)
                     for _, dest in data["connect"]}
        for field in node.inputs.copyable_trait_names():
            trait = node.inputs.trait(field)
            if trait.mandatory and not isdefined(getattr(node.inputs, field)):
                assert field in connected, f"{node.fullname}.{field}: not set, not connected"

    # Region extraction: once per maps image, feeding every run through the resampling nodes.
    split = nodes_of(graph, SplitRegions)
    assert len(split) == n_maps
    assert len(nodes_of(graph, WriteAtlas)) == n_maps
    n_grids = len({grid_key(run) for run in runs})
    resample = nodes_of(graph, ResampleRegions)
    assert len(resample) == n_grids * n_maps
    for node in resample:
        (upstream,) = sources(graph, node, "regions_file")
        assert isinstance(upstream.interface, SplitRegions)
        assert node.inputs.resampling_target == settings.regions.resampling_target
        assert node.inputs.allow_overlap == settings.regions.allow_overlap
    extract = nodes_of(graph, ExtractRunSignals)
    assert len(extract) == len(runs) * n_maps
    per_split = Counter()
    for node in extract:
        (upstream,) = sources(graph, node, "regions_file")
        assert isinstance(upstream.interface, ResampleRegions)
        (regions,) = sources(graph, upstream, "regions_file")
        per_split[regions.fullname] += 1
        # The label of the maps is the same along the chain.
        label = regions.fullname.split(".")[1].removeprefix("regions_").removesuffix("_wf")
        assert node.fullname.split(".")[1].endswith(f"_{label}_wf")
        assert upstream.fullname.endswith(f"resample_{label}_grid{upstream.name[-1]}")
        run = next(r for r in runs if str(r.bold) == node.inputs.bold_file)
        assert json.loads(node.inputs.options)["t_r"] == run.t_r
        assert node.inputs.strategy == settings.denoise.strategy
    assert sorted(per_split.values()) == [len(runs)] * n_maps

    # Connectivity and writers: one per run and maps, plus one per combined group and maps.
    groups = combine_groups(runs) if combine else {}
    assert len(nodes_of(graph, CombineRuns)) == len(groups) * n_maps
    n_outputs = (len(runs) + len(groups)) * n_maps
    measures = [m for m in settings.connectivity.measures if m != "tangent"]
    connectivity = nodes_of(graph, Connectivity)
    assert len(connectivity) == n_outputs
    for node in connectivity:
        assert list(node.inputs.measures) == measures
        assert node.inputs.fisher_z == settings.connectivity.fisher_z
    writers = nodes_of(graph, WriteRunOutputs)
    assert len(writers) == n_outputs
    series_names = []
    for node in writers:
        entities = json.loads(node.inputs.entities)
        spec = next(s for s in specs if s.label == entities["atlas"])
        # The regions URI names the atlas file written from these maps.
        regions = output_path(settings.output_dir, "atlas_regions", space=spec.space,
                              atlas=spec.label, seg="regions", res=spec.res,
                              suffix="probseg", extension=".tsv")
        assert node.inputs.regions_uri == f"bids::{regions.relative_to(settings.output_dir)}"
        assert node.inputs.dtype == (settings.denoise.dtype or "")
        combined = isdefined(node.inputs.combined_from) and bool(node.inputs.combined_from)
        assert ("run" in entities) is not combined
        if combined:
            assert isinstance(sources(graph, node, "timeseries_file")[0].interface, CombineRuns)
            assert len(sources(graph, node, "summary_files")) == 1
        series_names.append(output_path(settings.output_dir, "region_timeseries", stat="mean",
                                        suffix="timeseries", extension=".tsv", **entities))
    assert len(set(series_names)) == len(series_names), "two writers share an output name"


def test_combine_groups_by_subject_session_task(datasets, collected):
    """``--combine-runs`` joins the runs of one subject, session and task; nothing else."""
    runs, _ = collected("multitask", 1)
    groups = combine_groups(runs)
    assert len(groups) == 4  # 2 subjects x 2 tasks
    for members in groups.values():
        assert len(members) == 2
        assert len({(r.subject, r.entities["task"]) for r in members}) == 1
    runs, _ = collected("sessions", 1)
    assert all(len(members) == 1 for members in combine_groups(runs).values())
    assert len(combine_groups(runs)) == 4  # 2 subjects x 2 sessions, one run each


def test_one_resampling_per_distinct_grid(datasets, collected, tmp_path):
    """Runs on the same grid share one resampling of the regions; other grids get their own."""
    runs, specs = collected("multitask", 1)
    shifted = tuple(tuple(v + (4.0 if (i, j) == (0, 3) else 0.0) for j, v in enumerate(row))
                    for i, row in enumerate(runs[0].affine))
    runs = [dataclasses.replace(runs[0], affine=shifted), *runs[1:]]
    settings = make_settings(datasets["multitask"], tmp_path, 1, [])
    graph = flat_graph(settings, runs, specs)
    resample = nodes_of(graph, ResampleRegions)
    assert len(resample) == 2
    fan_out = defaultdict(int)
    for node in nodes_of(graph, ExtractRunSignals):
        (upstream,) = sources(graph, node, "regions_file")
        fan_out[upstream.name] += 1
    assert sorted(fan_out.values()) == [1, len(runs) - 1]


def test_graph_inputs_are_deterministic(datasets, collected, tmp_path):
    """Two builds give the same node inputs (and so the same hashes: reruns find the cache)."""
    runs, specs = collected("single_run", 2)
    settings = make_settings(datasets["single_run"], tmp_path, 2, ["--combine-runs"])

    def inputs(graph):
        return {node.fullname: node.inputs.get_hashval()[1] for node in graph.nodes}

    assert inputs(flat_graph(settings, runs, specs)) == inputs(flat_graph(settings, runs, specs))


def test_stat_labels_match_output_patterns():
    """Every measure's ``stat-`` label is one the frozen relmat pattern accepts."""
    for stat in STAT_LABELS.values():
        output_path("/out", "relmat", subject="01", task="rest", space="MNI", atlas="A",
                    seg="regions", stat=stat, suffix="relmat", extension=".tsv")
