"""What the story engine knows of one entry, in the form it compares (pure).

`Evidence` is computed once per entry (`evidence(...)`) and is all the engine compares: the
language, stemmed terms of title and lead, name keys (capitalised words transliterated to
Latin, final vowels cut, then cut to 5 letters, so "Москальковой" and "Moskalkova" meet
across scripts), numbers, the time, and the embedding when there is one. It round-trips
through plain JSON (`to_dict` / `from_dict`, the vector as base64 float16) for the store.
`topic_terms` turns a topic's phrases into the same terms and name keys (its `ignore` set).
How rare those words are (`DocFreq`, `Rarity`, `Centres`, `NAMES`) is in
watcher.story.rarity, re-exported here where callers import it from.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from watcher import lang as langs
from watcher.matching.text import match_form
from watcher.story.rarity import CENTRE_PRIOR_WEIGHT, NAMES, Centres, DocFreq, Rarity

if TYPE_CHECKING:
    import numpy as np
else:
    from watcher.lazy import numpy as np

# What callers and tests import from here, wherever it is defined.
__all__ = ["CENTRE_PRIOR_WEIGHT", "NAMES", "Centres", "DocFreq", "Evidence", "Rarity", "evidence",
           "strip_outlet", "topic_terms"]

LEAD_CHARS = 600  # characters of a summary read
NAME_PREFIX = 5
_CAPITALISED = re.compile(r"(?<![\w'’])[A-ZÀ-ÖØ-ÞĀ-ſА-ЯЁІЇЄҐ][\w'’\-]{2,}")
_YEAR = re.compile(r"(?:19|20)\d\d")
_SEPARATOR = re.compile(r"\s+(?:-|\||–|—|::)\s+")


def strip_outlet(title: str) -> str:
    """Cut a trailing outlet: "Fed holds rates - BBC News" -> "Fed holds rates"."""
    parts = _SEPARATOR.split(title.strip())
    if len(parts) > 1 and len(parts[-1].split()) <= 4 and len(" ".join(parts[:-1]).split()) >= 3:
        return " ".join(parts[:-1])
    return title.strip()


# Dates and times are no evidence (a feed's summary may start "October 17, 2021 8:00 PM").
_DATE_TIME = re.compile(
    r"\b\d{1,2}[:.]\d{2}\b(?:\s*[ap]\.?m\.?)?"
    r"|\b\d{1,2}\s+(?:"
    + "|".join(
        _MONTHS := (
            "jan",
            "feb",
            "mar",
            "apr",
            "may",
            "jun",
            "jul",
            "aug",
            "sep",
            "oct",
            "nov",
            "dec",
            "янв",
            "фев",
            "мар",
            "апр",
            "мая",
            "июн",
            "июл",
            "авг",
            "сен",
            "окт",
            "ноя",
            "дек",
        )
    )
    + r")\w*"
    r"|\b(?:" + "|".join(_MONTHS) + r")\w*\.?\s+\d{1,2}\b",
    re.IGNORECASE,
)


def _numbers(text: str) -> frozenset[str]:
    """Numbers of two digits or more that are not years, dates or times of day."""
    text = _DATE_TIME.sub(" ", text)
    return frozenset(n for n in langs.numbers(text) if len(n) >= 2 and not _YEAR.fullmatch(n))


def _names(text: str) -> frozenset[str]:
    keys = set()
    for word in _CAPITALISED.findall(text):
        folded = match_form(word).replace(" ", "")
        if len(folded) >= 3 and not folded.isdigit():
            # case endings are vowels as often as not: "Sudzha"/"Суджи" -> "suj"
            keys.add((folded.rstrip("aeiou") or folded)[:NAME_PREFIX])
    return frozenset(keys)


@dataclass(frozen=True, slots=True)
class Evidence:
    """The comparison form of one entry."""

    lang: str
    title_terms: frozenset[str]
    terms: frozenset[str]  # title and lead
    names: frozenset[str]
    title_numbers: frozenset[str]
    numbers: frozenset[str]
    at: datetime
    has_lead: bool
    vector: np.ndarray | None = field(default=None, compare=False)
    model: str = field(default="", compare=False)  # the embedder's name ("": the bundled one)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-able form (the vector as base64 float16, 768 bytes for 384 dims)."""
        vec = None
        if self.vector is not None:
            vec = base64.b64encode(self.vector.astype("<f2").tobytes()).decode("ascii")
        return {
            "lang": self.lang,
            "title_terms": sorted(self.title_terms),
            "terms": sorted(self.terms),
            "names": sorted(self.names),
            "title_numbers": sorted(self.title_numbers),
            "numbers": sorted(self.numbers),
            "at": self.at.isoformat(),
            "has_lead": self.has_lead,
            "vector": vec,
            **({"model": self.model} if vec is not None and self.model else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evidence:
        raw = data.get("vector")
        vector = None
        if isinstance(raw, str):
            vector = np.frombuffer(base64.b64decode(raw), dtype="<f2").astype(np.float32)
        return cls(
            lang=str(data["lang"]),
            title_terms=frozenset(data["title_terms"]),
            terms=frozenset(data["terms"]),
            names=frozenset(data["names"]),
            title_numbers=frozenset(data["title_numbers"]),
            numbers=frozenset(data["numbers"]),
            at=datetime.fromisoformat(str(data["at"])),
            has_lead=bool(data["has_lead"]),
            vector=vector,
            model=str(data.get("model") or "") if vector is not None else "",
        )

    def with_vector(self, vector: np.ndarray | None, model: str = "") -> Evidence:
        """This evidence with the entry's vector, made by the embedder named `model`."""
        return Evidence(
            self.lang,
            self.title_terms,
            self.terms,
            self.names,
            self.title_numbers,
            self.numbers,
            self.at,
            self.has_lead,
            vector,
            model if vector is not None else "",
        )


def evidence(
    title: str,
    summary: str,
    at: datetime,
    *,
    lang: str | None = None,
    vector: np.ndarray | None = None,
) -> Evidence:
    """The evidence of an entry; `lang` is the feed's declared language when it has one."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at!r}: the story engine needs aware (UTC) datetimes")
    title = strip_outlet(title)
    lead = summary.strip()[:LEAD_CHARS]
    code = langs.guess(f"{title} {lead}", lang)
    title_terms = frozenset(langs.terms(_DATE_TIME.sub(" ", title), code))
    lead_terms = frozenset(langs.terms(_DATE_TIME.sub(" ", lead), code))
    has_lead = bool(lead_terms & title_terms) or not title_terms  # else boilerplate
    terms = title_terms | lead_terms if has_lead else title_terms
    text = f"{title} {lead}" if has_lead else title
    title_numbers = _numbers(title)
    return Evidence(
        lang=code,
        title_terms=title_terms,
        terms=terms,
        names=_names(text),
        title_numbers=title_numbers,
        numbers=title_numbers | (_numbers(lead) if has_lead else frozenset()),
        at=at,
        has_lead=has_lead and bool(lead_terms),
        vector=vector,
    )


def topic_terms(phrases: Iterable[str]) -> frozenset[str]:
    """Stemmed words of a topic's phrases in every language they may be in (for `ignore`)."""
    out: set[str] = set()
    for phrase in phrases:
        code = langs.guess(phrase)
        out.update(langs.terms(phrase, code))
        out.update(_names(phrase))
    return frozenset(out)
