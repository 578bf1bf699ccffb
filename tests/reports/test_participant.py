"""``sub-<label>.html``: sections, figures, statuses, errors, --reports-only/--no-reports/
--boilerplate-only, and report failures that never touch the derivatives."""

from __future__ import annotations

import hashlib
import html.parser
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bids_regionx.cli.run import main
from bids_regionx.reports import participant as report

SPACE = "MNI152NLin2009cAsym"


class Page(html.parser.HTMLParser):
    """Ids, images, links, table rows and text of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.ids: set[str] = set()
        self.images: list[dict] = []
        self.links: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "img":
            self.images.append(attrs)
        if tag == "a" and "href" in attrs:
            self.links.append(attrs["href"])

    def handle_data(self, data):
        self.text.append(data)

    @property
    def plain(self) -> str:
        return " ".join(" ".join(self.text).split())


def page(path: Path) -> Page:
    return Page(path.read_text(encoding="utf-8"))


def status_rows(path: Path) -> dict[str, tuple[str, str]]:
    """run key -> (status, why) from the summary table."""
    tables = pd.read_html(path, attrs={"class": "runs"})
    table = tables[0]
    return {row["run"]: (row["status"], "" if pd.isna(row["why"]) else row["why"])
            for _, row in table.iterrows()}


def digest(root: Path, pattern: str) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.glob(pattern)) if p.is_file()}


# --------------------------------------------------------------------------------------------
def test_no_reports_then_reports_only(participant_run):
    assert participant_run.codes == (0, 0)
    before = participant_run.no_reports
    assert before.html == [] and before.figures == []
    assert before.citation  # --no-reports still writes the methods text
    assert sorted(p.name for p in participant_run.out.glob("*.html")) == ["sub-01.html",
                                                                           "sub-02.html"]


def test_sections_summary_and_region_table(participant_run):
    out = participant_run.out
    doc = page(out / "sub-02.html")
    for section in ("summary", "regions", "atlas-Synthetic", "atlas-Synthetic-table", "runs",
                    "run-sub-02_task-rest_run-1", "run-sub-02_task-rest_run-2", "combined",
                    "methods", "about"):
        assert section in doc.ids, section
    assert "errors" not in doc.ids  # nothing failed
    assert "script" not in doc.tags and "iframe" not in doc.tags
    for href in doc.links:  # every in-page link resolves; the only others are DOIs
        assert href[1:] in doc.ids if href.startswith("#") else href.startswith("https://")
    statuses = status_rows(out / "sub-02.html")
    assert statuses == {"sub-02_task-rest_run-1": ("used", ""),
                        "sub-02_task-rest_run-2": ("used", "")}
    regions = pd.read_csv(next(out.glob("atlases/tpl-*/*_seg-regions_probseg.tsv")), sep="\t")
    (table,) = pd.read_html(out / "sub-02.html", attrs={"class": "regions"})
    assert list(table["name"]) == list(regions["name"])
    assert list(table["parent map"]) == list(regions["map_name"])
    assert list(table["volume (mm³)"]) == pytest.approx(list(regions["volume_mm3"]))
    assert "Abraham et al., 2014" in doc.plain  # the methods text, with its citations


def test_regions_set_to_na_are_listed(participant_run):
    out = participant_run.out
    sidecar = next(out.glob("sub-02/func/sub-02_task-rest_run-1_*_stat-mean_timeseries.json"))
    na = json.loads(sidecar.read_text())["RegionsSetToNA"]
    assert na, "the fixture should set a region of sub-02 to n/a (--min-coverage 0.9)"
    text = page(out / "sub-02.html").plain
    assert f"Regions set to n/a (coverage below the minimum): {', '.join(na)}." in text


def test_every_figure_is_a_bids_named_file(participant_run):
    out = participant_run.out
    doc = page(out / "sub-01.html")
    sources = [img["src"] for img in doc.images]
    assert all(not s.startswith(("/", "http", "data:")) for s in sources)
    assert all((out / s).is_file() for s in sources)
    names = {Path(s).name for s in sources}
    assert {Path(s).parent.as_posix() for s in sources} == {"sub-01/figures"}
    prefix = f"space-{SPACE}_atlas-Synthetic"
    expected = {f"sub-01_{prefix}_seg-regions_regions.png"}
    expected |= {f"sub-01_{prefix}_desc-map0{k}_maps.png" for k in (1, 2, 3)}
    for source in ("task-rest_run-1", "task-rest_run-2", "task-rest"):
        stem = f"sub-01_{source}_{prefix}_seg-regions"
        expected |= {f"{stem}_carpet.png", f"{stem}_stat-covariance_relmat.svg",
                     f"{stem}_stat-pearsoncorrelation_relmat.svg",
                     f"{stem}_stat-pearsoncorrelation_desc-fisherz_relmat.svg"}
        if source != "task-rest":
            expected |= {f"sub-01_{source}_fd.svg", f"{stem}_coverage.svg"}
    assert names == expected
    assert all(img["alt"] for img in doc.images)
    assert "Background: the subject's T1w image in MNI152NLin2009cAsym space" in doc.plain


def test_reports_only_rebuilds_the_same_bytes(participant_run, outputs_copy, load_inputs):
    reports = digest(outputs_copy, "*.html") | digest(outputs_copy, "sub-*/figures/*")
    for path in [*outputs_copy.glob("*.html"), *outputs_copy.glob("sub-*/figures/*")]:
        path.unlink()
    settings, specs, runs = load_inputs(participant_run.argv(out=outputs_copy))
    for subject in ("01", "02"):
        report.write_participant_report(settings, specs, subject, runs=runs)
    assert digest(outputs_copy, "*.html") | digest(outputs_copy, "sub-*/figures/*") == reports


def test_statuses_dropped_failed_and_not_processed(participant_run, outputs_copy, load_inputs):
    settings, specs, runs = load_inputs(participant_run.argv(out=outputs_copy))
    run1, run2 = [r for r in runs if r.subject == "01"]
    func = outputs_copy / "sub-01" / "func"
    sidecar = func / "sub-01_task-rest_run-1_outliers.json"
    meta = json.loads(sidecar.read_text())
    meta.update(RunStatus="dropped", DropReason="only 12 s of data left after censoring")
    sidecar.write_text(json.dumps(meta))
    for path in func.glob("sub-01_task-rest_run-1_space-*"):
        path.unlink()
    for path in func.glob("sub-01_task-rest_run-2_*"):
        path.unlink()

    path = report.write_participant_report(settings, specs, "01", runs=runs)
    assert status_rows(path) == {
        "sub-01_task-rest_run-1": ("dropped", "only 12 s of data left after censoring"),
        "sub-01_task-rest_run-2": ("not processed", "no outputs found for this run"),
    }
    text = page(path).plain
    assert "No time series: the run was dropped." in text
    assert "Runs dropped 1" in text and "Runs without outputs 1" in text

    path = report.write_participant_report(
        settings, specs, "01", runs=runs, failed=[(run2.key, "DataError: confounds: broken")])
    assert status_rows(path)["sub-01_task-rest_run-2"] == ("failed",
                                                           "DataError: confounds: broken")
    doc = page(path)
    assert "errors" in doc.ids and "Runs failed 1" in doc.plain


def test_recorded_errors_reach_a_later_reports_only(participant_run, outputs_copy, load_inputs):
    settings, specs, runs = load_inputs(participant_run.argv(out=outputs_copy))
    key = next(r.key for r in runs if r.subject == "02")
    failed = [(key, "ValueError: no region left"), ("maps", "maps.nii.gz: unreadable")]
    for subject in ("01", "02"):
        report.record_errors(outputs_copy, subject, "20990101-000000_ffffffff",
                             report.subject_errors(failed, subject))
    sub01 = page(report.write_participant_report(settings, specs, "01", runs=runs)).plain
    sub02 = page(report.write_participant_report(settings, specs, "02", runs=runs)).plain
    assert "maps.nii.gz: unreadable" in sub01 and "maps.nii.gz: unreadable" in sub02
    assert "no region left" in sub02 and "no region left" not in sub01


@pytest.mark.parametrize(
    ("where", "subjects"),
    [("sub-01_task-rest_run-1_space-X", {"01"}),
     ("bids_regionx_wf.sub_01_task_rest_run_1_space_X_Syn_wf.extract_signals", {"01"}),
     ("bids_regionx_wf.combine_space_X_subject_01_task_rest_Syn", {"01"}),
     ("bids_regionx_wf.sub_011_task_rest_run_1_space_X_Syn_wf.write", {"011"}),
     ("maps", {"01", "011"}),
     ("bids_regionx_wf.regions_Syn_wf.split_regions", {"01", "011"})],
)
def test_subject_errors(where, subjects):
    assert {s for s in ("01", "011") if report.subject_errors([(where, "e")], s)} == subjects


def test_background_fallbacks(participant_run, tmp_path, load_inputs):
    fmriprep = tmp_path / "fmriprep"
    shutil.copytree(participant_run.data / "fmriprep", fmriprep)
    argv = participant_run.argv(out=tmp_path / "out")
    argv[0] = str(fmriprep)
    settings, _, runs = load_inputs(argv)
    runs = [r for r in runs if r.subject == "01"]

    def caption():
        return report._background(settings, "01", SPACE, None, runs)[1]

    assert caption().startswith("the subject's T1w image")
    for path in fmriprep.glob("sub-01/anat/*_desc-preproc_T1w.nii.gz"):
        path.unlink()
    assert caption().startswith("the reference volume of one of the subject's BOLD runs")
    for path in fmriprep.glob("sub-01/func/*_boldref.nii.gz"):
        path.unlink()
    assert caption().startswith("the mean of one of the subject's BOLD runs")
    for path in fmriprep.glob("sub-01/func/*_desc-preproc_bold.nii.gz"):
        path.unlink()
    assert caption().startswith("none:") and "maps are drawn alone" in caption()


def test_a_report_failure_never_touches_the_outputs(participant_run, outputs_copy, monkeypatch,
                                                    capsys):
    outputs = digest(outputs_copy, "sub-*/func/*") | digest(outputs_copy, "atlases/**/*")

    def broken(*args, **kwargs):
        raise RuntimeError("the figure backend exploded")

    monkeypatch.setattr(report, "write_participant_report", broken)
    code = main(participant_run.argv("--reports-only", out=outputs_copy))
    assert code == 1
    assert "report failed: sub-01: the figure backend exploded" in capsys.readouterr().err
    assert digest(outputs_copy, "sub-*/func/*") | digest(outputs_copy, "atlases/**/*") == outputs
    text = page(outputs_copy / "sub-01.html").plain
    assert "could not be built" in text and "the figure backend exploded" in text
    (log,) = outputs_copy.glob("sub-01/log/*/report-error.txt")
    assert "RuntimeError: the figure backend exploded" in log.read_text()


def test_boilerplate_only_writes_only_the_methods(participant_run, tmp_path):
    out = tmp_path / "out"
    assert main(participant_run.argv("--boilerplate-only", out=out)) == 0
    assert sorted(p.name for p in (out / "logs").iterdir()) == [
        "CITATION.bib", "CITATION.html", "CITATION.md"]
    assert not list(out.glob("*.html")) and not list(out.glob("sub-*/func"))
    assert not list(out.glob("atlases"))
