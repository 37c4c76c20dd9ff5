"""Word rarity learned online: document frequencies, term weights, language centres (pure).

`DocFreq` counts in how many recent entries each term occurs, per language (name keys under
`NAMES`, shared by all languages), in day buckets (`expire` drops old days), and `Rarity`
turns those counts into weights in [0, 1]: a word in every entry weighs ~0, a word never
seen before 1. A topic's own words (its phrases, and whatever most of its entries carry)
are weighed down by a per-topic `DocFreq` and an `ignore` set, so they are no evidence that
two of its entries are one story. The stream's `DocFreq` also keeps `Centres`, the running
mean embedding per language that is subtracted before cosines. What callers use of it is
re-exported by watcher.story.evidence, where they import it from.
"""

from __future__ import annotations

import base64
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from watcher.story.evidence import Evidence
else:
    from watcher.lazy import numpy as np

NAMES = "~"  # DocFreq language key of name keys (shared by all languages)

CENTRE_PRIOR_WEIGHT = 50  # entries the shipped prior centre counts for
CENTRE_MAX_WEIGHT = 5000  # the running mean forgets slowly past this many entries


class Centres:
    """Running mean embedding per language, to centre vectors before the cosine.

    multilingual-e5 vectors share a large language-specific component, so raw cosines of
    unrelated texts of one language sit high (~0.8); subtracting the language's mean vector
    lifts the cosine's ranking of same-story pairs on SemEval from AUC 0.894 to 0.944.
    Starts from per-language means shipped in `watcher.story.centres` (SemEval articles).
    """

    def __init__(self) -> None:
        self._mean: dict[str, np.ndarray] = {}
        self._weight: dict[str, float] = {}
        self._prior_due = True  # the shipped means join at the first vector (numpy: lazy)

    def _prior(self) -> None:
        """The shipped means, under what a saved state already holds."""
        if self._prior_due:
            self._prior_due = False
            from watcher.story import centres as shipped

            for code, vec in shipped.prior().items():
                self._mean.setdefault(code, vec)
                self._weight.setdefault(code, CENTRE_PRIOR_WEIGHT)

    def add(self, lang: str, vector: np.ndarray) -> None:
        self._prior()
        for code in (lang, ""):
            mean = self._mean.get(code)
            if mean is not None and mean.shape != vector.shape:  # another model's: start over
                mean = None
                self._weight[code] = 0.0
            weight = min(self._weight.get(code, 0.0) + 1, CENTRE_MAX_WEIGHT)
            self._mean[code] = (
                vector.astype(np.float32) if mean is None else mean + (vector - mean) / weight
            )
            self._weight[code] = weight

    def get(self, lang: str) -> np.ndarray | None:
        """The language's mean vector (the all-language one for a language not seen yet)."""
        self._prior()
        found = self._mean.get(lang)
        if found is None or self._weight.get(lang, 0) < CENTRE_PRIOR_WEIGHT // 2:
            found = self._mean.get("")
            if self._weight.get("", 0) < CENTRE_PRIOR_WEIGHT // 2:
                return None  # a mean of a few vectors (a new model's first) centres badly
        return found

    def to_state(self) -> dict[str, object]:
        """The means learnt or restored (the shipped ones join again at the next start)."""
        return {
            code: [
                float(self._weight[code]),
                base64.b64encode(vec.astype("<f4").tobytes()).decode("ascii"),
            ]
            for code, vec in self._mean.items()
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Centres:
        centres = cls()
        for code, (weight, raw) in state.items():
            centres._weight[code] = float(weight)
            centres._mean[code] = np.frombuffer(base64.b64decode(str(raw)), dtype="<f4").copy()
        return centres


class DocFreq:
    """Document frequencies per language over recent days (online; serialisable)."""

    def __init__(self, keep_days: int = 14, *, centres: bool = True) -> None:
        self.keep_days = keep_days
        self.centres = Centres()
        self.track_centres = centres  # False: a topic's counts (cosines centre on the stream)
        self._days: dict[str, dict[date, Counter[str]]] = {}  # lang -> day -> term -> docs
        self._day_docs: dict[str, Counter[date]] = {}
        self._df: dict[str, Counter[str]] = {}
        self._docs: Counter[str] = Counter()
        self.version = 0  # changes whenever the counts do (weights cached on it)

    def add(self, lang: str, keys: Iterable[str], at: datetime) -> None:
        """Count one document of `lang` carrying `keys` (each counted once)."""
        day = at.astimezone(UTC).date()
        unique = set(keys)
        self.version += 1
        self._days.setdefault(lang, {}).setdefault(day, Counter()).update(unique)
        self._day_docs.setdefault(lang, Counter())[day] += 1
        self._df.setdefault(lang, Counter()).update(unique)
        self._docs[lang] += 1

    def observe(self, ev: Evidence) -> None:
        """Count an entry's terms under its language and its name keys under NAMES."""
        self.add(ev.lang, ev.terms | ev.numbers, ev.at)
        self.add(NAMES, ev.names, ev.at)
        if ev.vector is not None and self.track_centres:
            self.centres.add(ev.lang, ev.vector)

    def subtract(self, lang: str, keys: Iterable[str], at: datetime) -> None:
        """Uncount one document counted by `add` (nothing if its day has expired)."""
        day = at.astimezone(UTC).date()
        counts = self._days.get(lang, {}).get(day)
        if counts is None or not self._day_docs[lang][day]:
            return
        unique = {k for k in set(keys) if counts[k] > 0}
        self.version += 1
        counts.subtract(unique)
        self._df[lang].subtract(unique)
        for key in unique:
            if counts[key] <= 0:
                del counts[key]
            if self._df[lang][key] <= 0:
                del self._df[lang][key]
        self._day_docs[lang][day] -= 1
        self._docs[lang] -= 1

    def forget(self, ev: Evidence) -> None:
        """Undo `observe` of an entry (language centres, kept by the stream only, stay)."""
        self.subtract(ev.lang, ev.terms | ev.numbers, ev.at)
        self.subtract(NAMES, ev.names, ev.at)

    def docs(self, lang: str) -> int:
        return self._docs[lang]

    def df(self, lang: str, key: str) -> int:
        counts = self._df.get(lang)
        return counts[key] if counts else 0

    def expire(self, now: datetime) -> None:
        """Forget days older than `keep_days` before `now`."""
        horizon = now.astimezone(UTC).date().toordinal() - self.keep_days
        for code, days in self._days.items():
            for day in [d for d in days if d.toordinal() < horizon]:
                self.version += 1
                counts = days.pop(day)
                self._df[code].subtract(counts)
                self._df[code] = +self._df[code]
                self._docs[code] -= self._day_docs[code].pop(day)

    def to_state(self) -> dict[str, object]:
        """The means learnt or restored (the shipped ones join again at the next start)."""
        return {
            "keep_days": self.keep_days,
            "centres": self.centres.to_state(),
            "days": {
                code: {
                    day.isoformat(): [dict(counts), self._day_docs[code][day]]
                    for day, counts in days.items()
                }
                for code, days in self._days.items()
            },
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], *, centres: bool = True) -> DocFreq:
        freq = cls(int(state["keep_days"]), centres=centres)
        freq.centres = Centres.from_state(state.get("centres") or {})
        days: dict[str, dict[str, list[Any]]] = state["days"]
        for code, by_day in days.items():
            for iso, (counts, docs) in by_day.items():
                day = date.fromisoformat(iso)
                counter: Counter[str] = Counter(counts)
                freq._days.setdefault(code, {})[day] = counter
                freq._day_docs.setdefault(code, Counter())[day] = int(docs)
                freq._df.setdefault(code, Counter()).update(counter)
                freq._docs[code] += int(docs)
        return freq


def _weight(docs: int, df: int) -> float:
    """BM25-style idf scaled to [0, 1]: 1 for a term no document had, ~0 for one all had."""
    top = math.log(1.0 + (docs + 0.5) / 0.5)
    return math.log(1.0 + (docs - df + 0.5) / (df + 0.5)) / top


TOPIC_MIN_DOCS = 20  # a topic's own frequencies count once it has this many entries


class Rarity:
    """Term weights for comparing entries of one topic."""

    def __init__(
        self,
        stream: DocFreq,
        topic: DocFreq | None = None,
        ignore: frozenset[str] = frozenset(),
    ) -> None:
        self.stream = stream
        self.topic = topic
        self.ignore = ignore
        self._cache: dict[tuple[str, str], float] = {}
        self._versions = (-1, -1)

    def weight(self, lang: str, key: str) -> float:
        if key in self.ignore:
            return 0.0
        versions = (self.stream.version, self.topic.version if self.topic is not None else 0)
        if versions != self._versions:  # counts changed: cached weights are stale
            self._cache.clear()
            self._versions = versions
        found = self._cache.get((lang, key))
        if found is not None:
            return found
        value = _weight(self.stream.docs(lang), self.stream.df(lang, key))
        topic = self.topic
        if topic is not None and topic.docs(lang) >= TOPIC_MIN_DOCS:
            value = min(value, _weight(topic.docs(lang), topic.df(lang, key)))
        self._cache[(lang, key)] = value
        return value

    def centre(self, lang: str) -> np.ndarray | None:
        """Mean embedding of `lang` in the stream (subtracted before cosines)."""
        return self.stream.centres.get(lang)
