"""Fixtures of the report tests: one real participant run on the ``tiny`` synthetic dataset.

The run is made once per session with ``--no-reports`` and then ``--reports-only``, so the
reports every test looks at were rebuilt from the files on disk, as after the fact.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from bids_regionx.cli.run import main
from bids_regionx.reports import participant as report

#: Hostile strings for the injection tests: markup, attribute breaking, template syntax, a URL
#: scheme, mathtext.
PAYLOADS = (
    "<script>window.__pwned=1</script>",
    '"><img src=x onerror="window.__pwned=1">',
    "' onmouseover='window.__pwned=1' x='",
    '</td></tr></table><iframe src="https://evil.example/"></iframe>',
    "{{ 7*7 }}{% raw %}",
    "javascript:alert(1)",
    "$5 $\\alpha",
)

#: Options of the session run: regions from connected components, scrubbing (censored volumes
#: and short segments), a region of sub-02 under the coverage minimum, two measures, Fisher z,
#: combined runs.
OPTIONS = (
    "--extractor", "connected_components", "--min-region-size", "10",
    "--denoise-strategy", "scrubbing.5", "--min-coverage", "0.9",
    "--connectivity", "correlation", "covariance", "--fisher-z", "--combine-runs",
    "--plugin", "Linear",
)


def _argv(data: Path, out: Path, work: Path, maps: Path, *extra: str) -> list[str]:
    return [str(data / "fmriprep"), str(out), "participant", "--maps", str(maps),
            "-w", str(work), *OPTIONS, *extra]


@pytest.fixture(scope="session")
def participant_run(tmp_path_factory):
    """The tiny dataset processed with :data:`OPTIONS` (reports built by ``--reports-only``).

    Returns
    -------
    SimpleNamespace
        ``data`` (the dataset folder), ``out`` (output dir), ``maps`` (the maps file),
        ``argv(*extra)`` (the command line into ``out``), ``no_reports`` (what ``--no-reports``
        left: the set of HTML files and whether logs/CITATION.md existed), ``codes``.
    """
    from bids_regionx.synthetic.dataset import make_preset

    root = tmp_path_factory.mktemp("reports")
    info = make_preset(root / "data", "tiny", seed=0)
    maps = Path(info.maps)
    out, work = root / "out", root / "work"
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MPLCONFIGDIR", "NIPYPE_CONFIG_DIR", "XDG_CACHE_HOME", "JOBLIB_TEMP_FOLDER"):
            mp.setenv(var, str(root / "cache" / var))
        first = main(_argv(root / "data", out, work, maps, "--no-reports"))
        no_reports = SimpleNamespace(
            html=sorted(p.name for p in out.glob("*.html")),
            figures=sorted(out.glob("sub-*/figures")),
            citation=(out / "logs" / "CITATION.md").is_file(),
        )
        second = main(_argv(root / "data", out, work, maps, "--reports-only"))
    return SimpleNamespace(
        root=root,
        data=root / "data",
        out=out,
        work=work,
        maps=maps,
        argv=lambda *extra, out=out: _argv(root / "data", out, work, maps, *extra),
        no_reports=no_reports,
        codes=(first, second),
    )


@pytest.fixture
def outputs_copy(participant_run, tmp_path):
    """A private copy of the session's output dir (for tests that change files)."""
    target = tmp_path / "out"
    shutil.copytree(participant_run.out, target)
    return target


_RUNS_CACHE: dict[str, list] = {}


@pytest.fixture
def load_inputs():
    """``load(argv) -> (settings, maps_specs, runs)``, as the participant level builds them.

    The runs of an input dataset are queried once per session (pybids indexing is the slow
    part; they do not depend on the output dir).
    """
    from bids_regionx.cli.parser import parse_args
    from bids_regionx.io.maps import collect_maps
    from bids_regionx.io.queries import collect_runs

    def load(argv):
        settings = parse_args(argv)
        specs = collect_maps(settings)
        key = str(settings.fmriprep_dir)
        if key not in _RUNS_CACHE:
            _RUNS_CACHE[key] = collect_runs(settings, maps_space=specs[0].space)
        return settings, specs, _RUNS_CACHE[key]

    return load


def _poison_table(path: Path, column: str, names: list[str]) -> None:
    table = pd.read_csv(path, sep="\t", keep_default_na=False)
    table[column] = names[: len(table)]
    table.to_csv(path, sep="\t", index=False)


@pytest.fixture
def payloads():
    """:data:`PAYLOADS`."""
    return PAYLOADS


@pytest.fixture
def poisoned(participant_run, outputs_copy, load_inputs):
    """The session's outputs with hostile strings everywhere a name or a reason comes from."""
    out = outputs_copy
    regions_tsv = next(out.glob("atlases/tpl-*/*_seg-regions_probseg.tsv"))
    n = len(pd.read_csv(regions_tsv, sep="\t"))
    names = [PAYLOADS[i % len(PAYLOADS)] + f" {i}" for i in range(n)]
    _poison_table(regions_tsv, "name", names)
    _poison_table(regions_tsv, "map_name", names)
    for path in out.glob("sub-01/func/*_timeseries.tsv"):
        table = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=False)
        table.columns = names
        table.to_csv(path, sep="\t", index=False, na_rep="n/a")
    for path in out.glob("sub-01/func/*_relmat.tsv"):
        table = pd.read_csv(path, sep="\t", index_col=0, na_values=["n/a"],
                            keep_default_na=False)
        table.columns = names
        table.index = names
        table.to_csv(path, sep="\t", na_rep="n/a")
    for path in out.glob("sub-01/func/*_stat-coverage_bold.tsv"):
        _poison_table(path, "name", names)
    for path in out.glob("sub-01/func/*_timeseries.json"):
        meta = json.loads(path.read_text())
        meta["RegionsSetToNA"] = list(PAYLOADS)
        path.write_text(json.dumps(meta))
    sidecar = next(out.glob("sub-01/func/*_run-1_outliers.json"))
    meta = json.loads(sidecar.read_text())
    meta.update(RunStatus=PAYLOADS[1], DropReason=PAYLOADS[0], NumberOfVolumes=PAYLOADS[3])
    sidecar.write_text(json.dumps(meta))
    report.record_errors(out, "01", "20990101-000000_ffffffff",
                         [{"where": PAYLOADS[2], "error": PAYLOADS[3]}])
    settings, specs, runs = load_inputs(participant_run.argv(out=out))
    specs = [dataclasses.replace(spec, map_names=tuple(PAYLOADS[: spec.n_maps]))
             for spec in specs]
    failed = [(runs[1].key, PAYLOADS[0]), ("maps", PAYLOADS[1])]
    return report.write_participant_report(settings, specs, "01", runs=runs, failed=failed)
