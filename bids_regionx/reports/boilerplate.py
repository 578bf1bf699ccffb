"""Methods text ("boilerplate") from the options of a run, with its references.

``boilerplate/methods.md.jinja`` (shipped in the wheel as ``bids_regionx/boilerplate``) is
rendered with :func:`methods_facts` -- the options actually used, the denoising strategy with
its command-line overrides, the software versions and the fMRIPrep version of the input -- and
its ``[@key]`` citations are resolved against ``boilerplate/references.bib``. The result is
written to ``logs/CITATION.md`` (author-year citations and a reference list), ``CITATION.html``
and ``CITATION.bib`` (the cited entries), and shown in every participant report.

The text depends on options only (never on data such as the number of regions), so the shared
``logs/`` files are identical for every participant and every rerun with the same options.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape

from bids_regionx.reports.citations import BibEntry, Citations, parse_bibtex
from bids_regionx.reports.templating import html_environment, text_environment

__all__ = [
    "MethodsText",
    "boilerplate_dir",
    "load_references",
    "methods_facts",
    "render_methods",
    "write_boilerplate",
]

METHODS_TEMPLATE = "methods.md.jinja"
REFERENCES = "references.bib"
#: Distributions whose versions the methods text states (import name does not matter).
SOFTWARE = {
    "nipype": "nipype",
    "pybids": "pybids",
    "numpy": "numpy",
    "scipy": "scipy",
    "scikit-learn": "scikit-learn",
    "scikit-image": "scikit-image",
    "nibabel": "nibabel",
    "pandas": "pandas",
}
_MEASURE_TEXT = {
    "correlation": "Pearson correlation",
    "partial correlation": "partial correlation",
    "covariance": "covariance",
    "precision": "precision (inverse covariance)",
    "tangent": "tangent-space embedding of the covariance [@varoquaux2010]",
}
_INTEGRATED_CLEAN_ARGS = ("filter", "butterworth__order")


def boilerplate_dir() -> Path:
    """The folder of the methods templates and ``references.bib``.

    ``bids_regionx/boilerplate`` in an installed wheel, else ``boilerplate/`` at the root of a
    source checkout (editable installs).
    """
    here = Path(__file__).resolve()
    for candidate in (here.parents[1] / "boilerplate", here.parents[2] / "boilerplate"):
        if (candidate / METHODS_TEMPLATE).is_file():
            return candidate
    raise FileNotFoundError(
        "boilerplate: the methods templates are missing from this installation "
        f"(looked in {here.parents[1] / 'boilerplate'} and {here.parents[2] / 'boilerplate'})"
    )


@functools.lru_cache(maxsize=4)
def _references(path: str) -> dict[str, BibEntry]:
    return parse_bibtex(Path(path).read_text(encoding="utf-8"))


def load_references(directory: Path | None = None) -> dict[str, BibEntry]:
    """Entries of ``references.bib`` by key."""
    return _references(str((directory or boilerplate_dir()) / REFERENCES))


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "(unknown version)"


def _fmriprep(fmriprep_dir: Path) -> dict[str, str] | None:
    """Name and version of fMRIPrep from the input's ``GeneratedBy``, if it says so."""
    try:
        description = json.loads((fmriprep_dir / "dataset_description.json").read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    entries = description.get("GeneratedBy") if isinstance(description, dict) else None
    if not isinstance(entries, list):
        legacy = description.get("PipelineDescription") if isinstance(description, dict) else None
        entries = [legacy] if isinstance(legacy, dict) else []
    for entry in entries:
        if isinstance(entry, dict) and str(entry.get("Name", "")).lower() == "fmriprep":
            version = str(entry.get("Version") or "(unknown version)")
            return {"name": "fMRIPrep", "version": version}
    return None


def _filter_text(low: float | None, high: float | None, clean_args: dict) -> tuple[str, str]:
    """How the signals were filtered (``""`` when they were not) and the filter kind."""
    from bids_regionx.reports.templating import num

    kind = clean_args.get("filter", "butterworth")
    if kind is False or kind in ("none", None) or (low is None and high is None):
        return "", "none"
    if kind == "cosine":
        if high is None:
            return "", "none"
        return f"high-pass filtered at {num(high)} Hz with discrete cosine regressors", kind
    order = clean_args.get("butterworth__order", 5)
    filt = f"(zero-phase Butterworth filter of order {order})"
    if low is not None and high is not None:
        return f"band-pass filtered between {num(high)} and {num(low)} Hz {filt}", kind
    if high is not None:
        return f"high-pass filtered at {num(high)} Hz {filt}", kind
    return f"low-pass filtered at {num(low)} Hz {filt}", kind


def _measures_text(measures) -> str:
    names = [_MEASURE_TEXT[m] for m in measures]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def methods_facts(settings, maps_specs, *, strategy=None) -> dict[str, Any]:
    """Everything the methods template states, from the settings of a run.

    Parameters
    ----------
    settings : bids_regionx.config.Settings
    maps_specs : sequence of bids_regionx.io.maps.MapsSpec
    strategy : bids_regionx.core.denoise.Strategy, optional
        The denoising strategy with overrides applied (default: loaded from the settings, with
        the command-line censoring overrides, as the workflow does).

    Returns
    -------
    dict
        The template context (plain data).
    """
    from bids_regionx import __version__
    from bids_regionx.core.denoise import load_strategy
    from bids_regionx.io.derivatives import _code_url

    d, r, c = settings.denoise, settings.regions, settings.connectivity
    if strategy is None:
        strategy = load_strategy(d.strategy_path or d.strategy).with_overrides(
            **d.strategy_overrides()
        )
    clean_args = dict(d.clean_args)
    filter_text, filter_kind = _filter_text(d.low_pass, d.high_pass, clean_args)
    extra_args = {k: v for k, v in clean_args.items() if k not in _INTEGRATED_CLEAN_ARGS}
    censoring = strategy.censoring
    has_confounds = bool(
        strategy.confounds or strategy.high_pass or strategy.compcor or d.high_variance_confounds
    )
    censored = (
        censoring.enabled or strategy.dummy_scans == "auto" or bool(strategy.dummy_scans)
    )
    measures = [m for m in c.measures if settings.analysis_level == "group" or m != "tangent"]
    mask = settings.maps.mask
    return {
        "version": __version__,
        "code_url": _code_url(__version__),
        "software": {name: _version(dist) for name, dist in SOFTWARE.items()},
        "fmriprep": _fmriprep(Path(settings.fmriprep_dir)),
        "space": settings.selection.space
        or (maps_specs[0].space if maps_specs else None),
        "maps": [
            {
                "label": spec.label,
                "file": Path(spec.path).name,
                "n_maps": int(spec.n_maps),
                "space": spec.space,
                "res": spec.res,
            }
            for spec in maps_specs
        ],
        "mask": None if mask is None else Path(mask).name,
        "regions": {
            "thresholding_strategy": r.thresholding_strategy,
            "threshold": r.threshold,
            "two_sided": r.two_sided,
            "extractor": r.extractor,
            "smoothing_fwhm": r.smoothing_fwhm,
            "min_region_size": r.min_region_size,
            "resampling_target": r.resampling_target,
            "allow_overlap": r.allow_overlap,
        },
        "signals": {
            "smoothing_fwhm": r.smoothing_fwhm,
            "min_coverage": d.min_coverage,
            "t_r": d.t_r,
            "detrend": d.detrend,
            "standardize": d.standardize,
            "standardize_confounds": d.standardize_confounds,
            "filter": filter_kind,
            "filter_text": filter_text,
            "censored": censored,
            "has_confounds": has_confounds,
            "clean_args_text": json.dumps(extra_args, sort_keys=True) if extra_args else "",
        },
        "denoise": {
            "name": strategy.name,
            "description": strategy.description.strip(),
            "dummy_scans": strategy.dummy_scans,
            "fd_threshold": censoring.fd_threshold,
            "dvars_threshold": censoring.dvars_threshold,
            "min_segment": censoring.min_segment if censoring.enabled else 0,
            "high_variance_confounds": d.high_variance_confounds,
            "min_time": d.min_time,
        },
        "connectivity": {
            "measures": measures,
            "measures_text": _measures_text(measures),
            "cov_estimator": c.cov_estimator,
            "fisher_z": c.fisher_z
            and bool({"correlation", "partial correlation"} & set(measures)),
            "combine_runs": c.combine_runs,
        },
    }




@dataclass(frozen=True)
class Block:
    """A heading or a paragraph: ``pieces`` of ``(text, cited keys)``."""

    kind: str  # "heading" or "paragraph"
    level: int
    source: str


@dataclass(frozen=True)
class MethodsText:
    """The rendered methods text.

    Attributes
    ----------
    blocks : list of Block
        Headings and paragraphs, citations still as ``[@key]``.
    citations : Citations
        Labels and references of the cited keys.
    """

    blocks: tuple[Block, ...]
    citations: Citations

    @property
    def missing_keys(self) -> list[str]:
        """Cited keys that ``references.bib`` does not have (left as ``@key`` in the text)."""
        return list(self.citations.missing)

    def markdown(self) -> str:
        """``CITATION.md``: author-year citations, then the reference list."""
        lines = []
        for block in self.blocks:
            text = self.citations.render_text(block.source)
            lines.append(("#" * block.level + " " + text) if block.kind == "heading" else text)
        refs = self.citations.references()
        if refs:
            lines.append("## References")
            lines.append("\n".join(
                f"- {ref['text']}" + (f" {ref['url']}" if ref["url"] else "") for ref in refs
            ))
        return "\n\n".join(lines) + "\n"

    def bibtex(self) -> str:
        """``CITATION.bib``: the cited entries only."""
        return self.citations.bibtex()

    def html_fragment(self, *, heading_offset: int = 0, id_prefix: str = "ref-") -> Markup:
        """The text as escaped HTML: headings, paragraphs, citations linked to the references.

        Parameters
        ----------
        heading_offset : int
            Added to heading levels (1 puts ``#`` headings at ``<h2>``).
        id_prefix : str
            Prefix of the reference anchors.
        """
        parts = []
        for block in self.blocks:
            inner = self._inline_html(block.source, id_prefix)
            if block.kind == "heading":
                level = min(6, block.level + heading_offset)
                parts.append(Markup("<h{0}>{1}</h{0}>").format(level, inner))
            else:
                parts.append(Markup("<p>{}</p>").format(inner))
        refs = self.citations.references()
        if refs:
            level = min(6, 2 + heading_offset)
            parts.append(Markup("<h{0}>References</h{0}>").format(level))
            items = []
            for ref in refs:
                link = (
                    Markup(' <a href="{0}">{0}</a>').format(ref["url"]) if ref["url"] else ""
                )
                items.append(Markup('<li id="{}{}">{}{}</li>').format(
                    id_prefix, ref["key"], ref["text"], link
                ))
            parts.append(Markup('<ul class="references">{}</ul>').format(Markup("").join(items)))
        return Markup("\n").join(parts)

    def _inline_html(self, text: str, id_prefix: str) -> Markup:
        out = []
        for plain, keys in self.citations.split(text):
            out.append(_emphasis(plain))
            if keys:
                links = []
                for key in keys:
                    label = self.citations.label(key)
                    if key in self.citations.entries:
                        link = Markup('<a href="#{}{}">{}</a>').format(id_prefix, key, label)
                        links.append(link)
                    else:
                        links.append(escape(label))
                out.append(Markup("({})").format(Markup("; ").join(links)))
        return Markup("").join(out)


_EMPHASIS_RE = re.compile(r"\*([^*\n]+)\*")


def _emphasis(text: str) -> Markup:
    """Escape ``text``, turning ``*word*`` into ``<em>word</em>``."""
    out, last = [], 0
    for match in _EMPHASIS_RE.finditer(text):
        out.append(escape(text[last : match.start()]))
        out.append(Markup("<em>{}</em>").format(match.group(1)))
        last = match.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)


def _blocks(text: str) -> tuple[Block, ...]:
    blocks = []
    for chunk in re.split(r"\n\s*\n", text):
        joined = " ".join(line.strip() for line in chunk.splitlines() if line.strip())
        # A citation or punctuation after a line break must not be preceded by a space.
        joined = re.sub(r"\s+([.,;:)])", r"\1", joined)
        if not joined:
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)$", joined)
        if heading:
            blocks.append(Block("heading", len(heading.group(1)), heading.group(2)))
        else:
            blocks.append(Block("paragraph", 0, joined))
    return tuple(blocks)


def render_methods(facts: dict[str, Any], *, directory: Path | None = None) -> MethodsText:
    """Render the methods template with ``facts`` (see :func:`methods_facts`).

    Parameters
    ----------
    facts : dict
    directory : Path, optional
        Folder holding ``methods.md.jinja`` and ``references.bib`` (default:
        :func:`boilerplate_dir`).
    """
    directory = directory or boilerplate_dir()
    template = text_environment(str(directory)).get_template(METHODS_TEMPLATE)
    blocks = _blocks(template.render(**facts))
    citations = Citations(load_references(directory))
    for block in blocks:
        citations.cite_keys(block.source)
    return MethodsText(blocks, citations)


def methods_for(settings, maps_specs) -> MethodsText:
    """:func:`render_methods` of :func:`methods_facts`."""
    return render_methods(methods_facts(settings, maps_specs))


def citation_page(methods: MethodsText) -> str:
    """``CITATION.html``: a standalone page of the methods text."""
    return html_environment().get_template("citation.html").render(
        methods=methods.html_fragment(heading_offset=0)
    )


def write_boilerplate(settings, maps_specs) -> list[Path]:
    """Write ``logs/CITATION.md``, ``.html`` and ``.bib`` (shared files) for a run's options.

    Returns
    -------
    list of Path
        The three files.
    """
    import logging

    from bids_regionx.io.derivatives import write_text

    methods = methods_for(settings, maps_specs)
    if methods.missing_keys:
        logging.getLogger("bids_regionx").warning(
            "methods text: no reference for %s in references.bib (left as @key)",
            ", ".join(methods.missing_keys),
        )
    logs = Path(settings.output_dir) / "logs"
    return [
        write_text(logs / "CITATION.md", methods.markdown()),
        write_text(logs / "CITATION.html", citation_page(methods)),
        write_text(logs / "CITATION.bib", methods.bibtex()),
    ]
