"""BibTeX references and pandoc-style citations (``[@key]``, ``[@a; @b]``) for the methods text.

Only what ``boilerplate/references.bib`` needs: entries ``@type{key, field = {value}, ...}`` with
brace- or quote-delimited values, UTF-8 text, ``{...}`` to protect capitals and ``\\&``. Each
citation becomes an author-year label (``Abraham et al., 2014``; ``2014a``/``2014b`` when two
cited works share authors and year) and each cited entry a formatted reference.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["BibEntry", "CitationError", "Citations", "parse_bibtex"]

#: ``[@key]`` or ``[@key1; @key2]`` (pandoc syntax), as written in templates and strategies.
CITATION_RE = re.compile(r"\[(@[\w:.+-]+(?:\s*;\s*@[\w:.+-]+)*)\]")
_ENTRY_RE = re.compile(r"@(\w+)\s*\{\s*([^,\s]+)\s*,", re.MULTILINE)
_FIELD_RE = re.compile(r"\s*([A-Za-z][\w-]*)\s*=\s*")


class CitationError(ValueError):
    """A BibTeX file that cannot be parsed (the message names the entry)."""


@dataclass(frozen=True)
class BibEntry:
    """One BibTeX entry.

    Attributes
    ----------
    key : str
    type : str
        Lower-case entry type (``article``, ``inproceedings``, ``misc``...).
    fields : dict of str to str
        Lower-case field names to their raw values (braces kept).
    source : str
        The entry as written in the file (copied verbatim into ``CITATION.bib``).
    """

    key: str
    type: str
    fields: Mapping[str, str]
    source: str

    def text(self, name: str) -> str:
        """A field as plain text (braces and TeX escapes removed; ``""`` if absent)."""
        return plain_text(self.fields.get(name, ""))

    @property
    def authors(self) -> list[tuple[str, str]]:
        """``(last, first)`` per author; ``("others", "")`` for BibTeX's ``and others``."""
        raw = self.fields.get("author", "")
        if not raw:
            return []
        out = []
        for name in _split_authors(raw):
            name = name.strip()
            if name.startswith("{") and name.endswith("}"):  # a corporate author
                out.append((plain_text(name), ""))
            elif "," in name:
                last, first = name.split(",", 1)
                out.append((plain_text(last).strip(), plain_text(first).strip()))
            else:
                parts = plain_text(name).split()
                out.append((parts[-1], " ".join(parts[:-1])) if parts else ("", ""))
        return out

    @property
    def year(self) -> str:
        return self.text("year") or "n.d."

    def short_authors(self) -> str:
        """``Grady``, ``Ledoit & Wolf`` or ``Abraham et al.``."""
        names = [last for last, _ in self.authors]
        real = [n for n in names if n != "others"]
        if not real:
            return self.text("title") or self.key
        if len(names) == 1:
            return real[0]
        if len(names) == 2 and len(real) == 2:
            return f"{real[0]} & {real[1]}"
        return f"{real[0]} et al."


def plain_text(value: str) -> str:
    """BibTeX value to plain text: no protecting braces, ``\\&`` -> ``&``, ``--`` -> en dash."""
    text = value.replace("\\&", "&").replace("\\%", "%").replace("\\_", "_")
    text = text.replace("{", "").replace("}", "").replace("--", "\u2013")
    return " ".join(text.split())


def _split_authors(raw: str) -> list[str]:
    """Split on `` and `` at brace depth 0."""
    parts, depth, start = [], 0, 0
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif depth == 0 and raw.startswith(" and ", i):
            parts.append(raw[start:i])
            start = i + 5
            i += 4
        i += 1
    parts.append(raw[start:])
    return [p for p in (p.strip() for p in parts) if p]


def _read_value(text: str, pos: int, key: str) -> tuple[str, int]:
    """A braced, quoted or bare value starting at ``pos``; returns it and the end position."""
    if text[pos] == "{":
        depth = 0
        for end in range(pos, len(text)):
            if text[end] == "{":
                depth += 1
            elif text[end] == "}":
                depth -= 1
                if depth == 0:
                    return text[pos + 1 : end], end + 1
        raise CitationError(f"references: entry {key!r}: unbalanced braces")
    if text[pos] == '"':
        end = text.find('"', pos + 1)
        if end < 0:
            raise CitationError(f"references: entry {key!r}: unterminated quoted value")
        return text[pos + 1 : end], end + 1
    match = re.match(r"[\w.-]+", text[pos:])
    if not match:
        raise CitationError(
            f"references: entry {key!r}: cannot read a value at {text[pos:pos + 20]!r}"
        )
    return match.group(0), pos + match.end()


def parse_bibtex(text: str) -> dict[str, BibEntry]:
    """Parse BibTeX text into entries by key (file order kept).

    Raises
    ------
    CitationError
        Unbalanced braces, a malformed field, or a key given twice.
    """
    entries: dict[str, BibEntry] = {}
    for match in _ENTRY_RE.finditer(text):
        kind, key = match.group(1).lower(), match.group(2)
        if kind in ("comment", "preamble", "string"):
            continue
        pos = match.end()
        fields: dict[str, str] = {}
        while True:
            while pos < len(text) and text[pos] in " \t\r\n,":
                pos += 1
            if pos >= len(text):
                raise CitationError(f"references: entry {key!r} is not closed")
            if text[pos] == "}":
                pos += 1
                break
            field_match = _FIELD_RE.match(text, pos)
            if not field_match:
                raise CitationError(
                    f"references: entry {key!r}: expected 'name = value' at {text[pos:pos+30]!r}"
                )
            value, pos = _read_value(text, field_match.end(), key)
            fields[field_match.group(1).lower()] = value
        if key in entries:
            raise CitationError(f"references: key {key!r} is defined twice")
        entries[key] = BibEntry(key, kind, fields, text[match.start() : pos].strip())
    return entries


def _initials(first: str) -> str:
    parts = re.split(r"([\s-])", first)
    out = ""
    for part in parts:
        if part in (" ", ""):
            out += " " if part else ""
        elif part == "-":
            out = out.rstrip() + "-"
        elif part.endswith(".") and len(part) <= 3:
            out += part
        else:
            out += part[0] + "."
    return " ".join(out.split())


def format_reference(entry: BibEntry, label_year: str | None = None) -> dict[str, str]:
    """An APA-like reference as text pieces.

    Returns
    -------
    dict
        ``text`` (the reference without its link), ``url`` (DOI or URL link, may be ``""``).
    """
    authors = entry.authors
    names = []
    for last, first in authors:
        if last == "others":
            continue
        names.append(f"{last}, {_initials(first)}" if first else last)
    if len(names) > 20:
        author_text = ", ".join(names[:19]) + ", ... " + names[-1]
        if any(last == "others" for last, _ in authors):
            author_text += ", et al."
    elif any(last == "others" for last, _ in authors):
        author_text = ", ".join(names) + ", et al."
    elif len(names) > 1:
        author_text = ", ".join(names[:-1]) + ", & " + names[-1]
    else:
        author_text = names[0] if names else ""
    year = label_year or entry.year
    title = entry.text("title")
    pieces = [f"{author_text} ({year}). {title}."]
    venue = entry.text("journal") or entry.text("booktitle")
    if venue:
        where = venue
        if entry.text("booktitle") and not entry.text("journal"):
            where = f"In {venue}"
        volume, number, pages = entry.text("volume"), entry.text("number"), entry.text("pages")
        if volume:
            where += f", {volume}"
            if number:
                where += f"({number})"
        if pages:
            where += f", {pages}"
        pieces.append(where + ".")
    elif entry.text("howpublished"):
        pieces.append(entry.text("howpublished") + ".")
    doi = entry.text("doi")
    url = f"https://doi.org/{doi}" if doi else entry.text("url")
    return {"text": " ".join(pieces), "url": url}


@dataclass
class Citations:
    """Resolve ``[@key]`` citations of several texts against a bibliography.

    Call :meth:`cite_keys` on every text first (so that labels can be disambiguated over all of
    them), then :meth:`label` / :meth:`references`.

    Parameters
    ----------
    entries : mapping of str to BibEntry
    """

    entries: Mapping[str, BibEntry]
    cited: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    _year_labels: dict[str, str] | None = field(default=None, repr=False)

    def cite_keys(self, text: str) -> None:
        """Record the keys cited in ``text`` (first-citation order)."""
        self._year_labels = None
        for group in CITATION_RE.findall(text):
            for key in _group_keys(group):
                target = self.cited if key in self.entries else self.missing
                if key not in target:
                    target.append(key)

    def _years(self) -> dict[str, str]:
        """Year label per cited key, with a/b suffixes for identical author-year labels."""
        if self._year_labels is None:
            self._year_labels = self._compute_years()
        return self._year_labels

    def _compute_years(self) -> dict[str, str]:
        groups: dict[tuple[str, str], list[str]] = {}
        for key in self.cited:
            entry = self.entries[key]
            groups.setdefault((entry.short_authors(), entry.year), []).append(key)
        years = {}
        for (_, year), keys in groups.items():
            if len(keys) == 1:
                years[keys[0]] = year
            else:
                for i, key in enumerate(sorted(keys)):
                    years[key] = f"{year}{chr(ord('a') + i)}"
        return years

    def label(self, key: str) -> str:
        """``Abraham et al., 2014a`` (the key itself, with ``@``, when unknown)."""
        if key not in self.entries:
            return f"@{key}"
        entry = self.entries[key]
        return f"{entry.short_authors()}, {self._years().get(key, entry.year)}"

    def split(self, text: str) -> list[tuple[str, list[str]]]:
        """``text`` as ``(plain, keys)`` pieces: each citation group ends a piece.

        Joining ``plain`` with a rendering of ``keys`` gives the text with citations resolved.
        """
        pieces = []
        last = 0
        for match in CITATION_RE.finditer(text):
            pieces.append((text[last : match.start()], _group_keys(match.group(1))))
            last = match.end()
        pieces.append((text[last:], []))
        return pieces

    def render_text(self, text: str) -> str:
        """Citations as ``(Abraham et al., 2014; Grady, 2006)``."""
        out = []
        for plain, keys in self.split(text):
            out.append(plain)
            if keys:
                out.append("(" + "; ".join(self.label(k) for k in keys) + ")")
        return "".join(out)

    def references(self) -> list[dict[str, str]]:
        """Formatted cited references, sorted by author-year label: ``key``, ``text``, ``url``."""
        years = self._years()
        refs = []
        for key in self.cited:
            ref = format_reference(self.entries[key], years.get(key))
            refs.append({"key": key, **ref})
        return sorted(refs, key=lambda r: (r["text"].lower(), r["key"]))

    def bibtex(self) -> str:
        """The cited entries as BibTeX, in citation order."""
        return "\n\n".join(self.entries[key].source for key in self.cited) + "\n"


def _group_keys(group: str) -> list[str]:
    return [part.strip().lstrip("@") for part in group.split(";") if part.strip()]


def cited_keys(texts: Iterable[str]) -> list[str]:
    """Keys cited in ``texts``, first-citation order."""
    keys: list[str] = []
    for text in texts:
        for group in CITATION_RE.findall(text):
            for key in _group_keys(group):
                if key not in keys:
                    keys.append(key)
    return keys
