"""Strings that reach a report -- participant labels, sidecar fields, maps labels and names,
region names, error messages -- cannot inject markup or script.

Two layers are checked: the real report rebuilt from outputs whose tables and sidecars were
rewritten with hostile strings, and every template rendered with *every* string of its context
replaced by one (which covers values the inputs cannot normally carry, such as a participant or
maps label, which must be BIDS labels). The browser test loads the first one in Chromium.
"""

from __future__ import annotations

import html.parser
from pathlib import Path

import pytest
from markupsafe import Markup

from bids_regionx.config import InvalidSettingsError, MapsSettings, SelectionSettings
from bids_regionx.reports import participant as report
from bids_regionx.reports.templating import html_environment

#: Elements the reports never contain.
FORBIDDEN_TAGS = {"script", "iframe", "object", "embed", "base", "form", "frame", "link", "meta2"}


class Audit(html.parser.HTMLParser):
    """Everything in a page that could run code or fetch something."""

    def __init__(self):
        super().__init__()
        self.tags, self.handlers, self.urls, self.ids, self.data = [], [], [], set(), []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for name, value in attrs:
            if name.startswith("on"):
                self.handlers.append((tag, name, value))
            if name in ("src", "href", "action", "formaction", "data", "srcset", "poster"):
                self.urls.append(value or "")
            if name == "id":
                self.ids.add(value)

    def handle_data(self, data):
        self.data.append(data)


def audit(text: str, root: Path | None = None) -> Audit:
    page = Audit()
    page.feed(text)
    assert not FORBIDDEN_TAGS & set(page.tags), set(page.tags) & FORBIDDEN_TAGS
    assert page.handlers == []
    assert page.tags.count("style") <= 2  # ours: the page's and the estimator body's
    for url in page.urls:
        if url.startswith("#"):
            assert url[1:] in page.ids, url
        elif url.startswith("https://"):
            assert url.startswith(("https://doi.org/", "https://hal.inria.fr/")), url
        elif url.startswith("data:"):
            assert url.startswith(("data:image/png;base64,", "data:image/svg+xml;base64,"))
        else:
            assert ":" not in url.split("/")[0], url  # no javascript:, file:, http:
            if root is not None:
                assert (root / url).is_file(), url
    return page


def test_hostile_strings_from_disk_are_shown_not_run(poisoned, payloads):
    text = poisoned.read_text(encoding="utf-8")
    page = audit(text, poisoned.parent)
    shown = " ".join(page.data)
    for payload in payloads:
        assert payload in shown, payload  # displayed as text, not interpreted
    assert "{{ 7*7 }}{% raw %}" in shown  # never rendered as a template
    assert "could not be drawn" not in shown  # "$" in names did not break matplotlib
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in text


#: Context keys whose values the code makes, never the data: figure files (named from BIDS
#: labels by ``output_path``, or ``data:`` URIs) and region colours (hex from the colormap).
_OURS = {"src", "figure", "color"}


def _poison(value, payloads):
    """Every string of a template context replaced by a payload (Markup kept: ours)."""
    if isinstance(value, Markup):
        return value
    if isinstance(value, str):
        return payloads[len(value) % len(payloads)]
    if isinstance(value, dict):
        return {key: item if key in _OURS else _poison(item, payloads)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_poison(item, payloads) for item in value)
    return value


def test_every_string_of_the_participant_context_is_escaped(participant_run, load_inputs,
                                                           outputs_copy, payloads):
    settings, specs, runs = load_inputs(participant_run.argv(out=outputs_copy))
    context = report.participant_context(settings, specs, "02", runs,
                                         failed=[("maps", "broken")])
    context = _poison(context, payloads)
    assert context["subject"] in payloads
    context["problems"] = [{"where": payloads[0], "error": payloads[1]}]
    audit(html_environment().get_template("participant.html").render(**context))


def test_every_string_of_the_other_pages_is_escaped(payloads):
    """The failure page, CITATION.html and the estimator report (``group.html`` belongs to the
    group level: ``tests/cli/test_group.py``)."""
    env = html_environment()
    audit(env.get_template("failed.html").render(**_poison(
        {"subject": "01", "version": "1", "error": "e", "details": "tb"}, payloads)))
    audit(env.get_template("citation.html").render(methods=Markup("<p>ours</p>")))
    body = env.get_template("estimator_body.html").render(**_poison({
        "title": "t", "page_title": "p", "docstring": "d", "description": "x",
        "transform_note": "n", "number_of_maps": 3, "n_displayed": 2,
        "has_plotting_engine": True, "warnings": ["w1", "w2"], "date": "now", "version": "v",
        "figures": [{"src": "data:image/png;base64,AAAA", "caption": "c", "alt": "a"}],
        "rows": [{"map": 0, "color": "#000000", "parent": 0, "n_voxels": 1, "volume": 1.0,
                  "peak": [1, 2, 3], "centre": [1, 2, 3]}],
        "parameters": [("name", "value")],
    }, payloads))
    audit(env.get_template("estimator_page.html").render(body=Markup(body), page_title="p"))


@pytest.mark.parametrize(
    ("section", "values"),
    [(SelectionSettings, {"participant_labels": ("<script>",)}),
     (MapsSettings, {"labels": ('a"b',), "files": ("/m.nii.gz",)})],
)
def test_labels_that_name_files_must_be_bids_labels(section, values):
    """Participant and maps labels also name output files: only letters and digits pass."""
    with pytest.raises(InvalidSettingsError, match="is not a BIDS label"):
        section(**values)
