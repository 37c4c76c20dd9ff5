"""Same-story detection for the dedupe stage (pure: no I/O, no clock).

Wire stories are republished by many outlets with reworded titles, trimmed summaries and
different links. For each topic the first matched entry of a story opens it; later entries
judged the same story within the window are attached to it instead of alerting.

The pairwise decision (`same_story_score`) compares the *prepared* forms of two entries:

- text goes through `watcher.matching.text.match_form` (NFKC, Latin, case-folded, no punctuation,
  transliteration variants folded: "Khinshteyn"/"Hinshtein"), then dedupe-specific steps:
  an outlet suffix such as " - BBC News" or " | Reuters" is cut from the title, English and
  (transliterated) Russian stop words and wire credits are dropped, numbers are set aside,
  and every word is cut to its first 5 letters — a crude stemmer that lets
  "evacuated"/"evacuation" and Russian case endings ("zhiteley"/"zhitelya") meet;
- title score = mean of rapidfuzz `token_set_ratio` of the titles and the Dice overlap of
  their word sets (x100); summary score = the same on the first words of both summaries;
- score = max(title, summary); the summary may only lift a pair whose titles share some
  ground (title score >= 30), and a summary sharing no word with its own title is taken for
  boilerplate ("Read more on our site") and ignored, so such feeds cannot merge everything;
- numbers decide between look-alike announcements ("46 residents returned" vs "33 residents
  returned"): two titles with numbers and none in common lose 50 points; a title number
  found anywhere in the other entry gains 15.

`StoryIndex` keeps the open stories of each topic with an inverted index from rare words to
stories, so a lookup reads a bounded number of postings and scores a few candidates, whatever
the size of the history (~0.3-0.4 ms CPU per find with 10,000 open stories in one topic;
benchmarks/dedupe_speed.py).

Thresholds and weights were chosen on the labelled sets in tests/data/stories
(benchmarks/dedupe_quality.py; 35-45 is a plateau, 40 its middle). At 40, streaming entries
through the index: real Kursk-evacuation headlines, precision 0.97 and same-language recall
0.97 (0.96/0.97 on titles alone); UCI News Aggregator titles, precision 0.94 on its noisy
labels (0.98 with its two split stories merged), recall 0.33 on its topic-sized clusters.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from operator import itemgetter

from rapidfuzz import fuzz

from watcher.matching.text import STOPWORDS, match_form

SAME_STORY_THRESHOLD: float = 40.0

STEM = 5  # letters kept of each word
LEAD_WORDS = 40  # words of the summary compared (summaries are often trimmed)
TEXT_LIMIT = 600  # characters of a summary read at all
TITLE_FLOOR = 30.0  # title score below which the summary may not lift a pair
NUMBER_CLASH = 50.0
NUMBER_SHARED = 15.0
CANDIDATES = 12  # stories scored per lookup
POSTINGS_BUDGET = 1000  # postings read per lookup
MAX_KEY_SHARE = 0.2  # a word carried by more than this share of a topic's stories is no key
MIN_KEY_DF = 64  # ... unless it is carried by fewer stories than this

_STOP_WORDS = (
    # English, and words of wire credits and live pages
    "a about after against all also amid an and are as at be been before being but by can"
    " could did do does for from had has have he her his how i if in into is it its just may"
    " more most new no not now of off on or our out over s says said say she should so than"
    " that the their them then there these they this those through to under up us was we"
    " were what when where which while who why will with would you your"
    " reuters afp ap tass sputnik ria interfax update updated live video photos watch"
    # Russian, transliterated
    " i v vo na s so k ko po iz ot do za o ob ne a no ili chto kak eto eti etot u uzhe zhe li"
    " pro pri dlya bez pod nad cherez posle takzhe kotoryy kotoraya kotorye eshche byl byla"
    " byli budet soobshchil soobshchila zayavil zayavila"
)
# In match form, whatever spelling folds `watcher.matching.text` applies ("eshche" -> "esche").
_STOP = frozenset(match_form(_STOP_WORDS).split()) | STOPWORDS
_SEPARATOR = re.compile(r"\s+(?:-|\||–|—|::)\s+")
_NUMBER = re.compile(r"\d+(?:[.,\u00a0\u202f ]\d{3})*")
_YEAR = re.compile(r"(?:19|20)\d\d")
_RANK = itemgetter(1, 0)  # (shared keys, story id)


@dataclass(frozen=True, slots=True)
class StoryText:
    """What the index remembers of a story's first entry."""

    title: str
    summary: str


@dataclass(frozen=True, slots=True)
class _Prepared:
    title: str  # stemmed content words, space-separated
    lead: str  # the same for the first words of the summary
    title_numbers: frozenset[str]
    numbers: frozenset[str]  # title and summary
    keys: frozenset[str]  # words and numbers used to retrieve candidates


@dataclass(slots=True)
class _Story:
    story_id: str
    topic: str
    opened_at: datetime
    text: StoryText
    prepared: _Prepared


def strip_outlet(title: str) -> str:
    """Cut a trailing outlet or attribution: "Fed holds rates - BBC News" -> "Fed holds rates"."""
    parts = _SEPARATOR.split(title.strip())
    if len(parts) > 1 and len(parts[-1].split()) <= 4 and len(" ".join(parts[:-1]).split()) >= 3:
        return " ".join(parts[:-1])
    return title


def _numbers(text: str) -> frozenset[str]:
    found = (re.sub(r"\D", "", n) for n in _NUMBER.findall(text))
    return frozenset(n for n in found if not _YEAR.fullmatch(n))


def _words(text: str) -> list[str]:
    """Stemmed content words; falls back to stop words, then numbers, rather than nothing."""
    words = match_form(text).split()
    letters = [w for w in words if not w.isdigit()]
    content = [w for w in letters if w not in _STOP]
    return [w[:STEM] for w in (content or letters or words)]


def prepare(text: StoryText) -> _Prepared:
    """The comparison form of an entry (pure; cached by the index for stored stories).

    A summary that shares no word with its own title is taken for boilerplate (a site's
    tagline, "Read more...") and ignored: every real lead in the measured sets repeats at
    least one word of its headline.
    """
    summary = text.summary[:TEXT_LIMIT]
    title_words = _words(strip_outlet(text.title))
    lead_words = _words(summary)[:LEAD_WORDS]
    if title_words and not set(title_words) & set(lead_words):
        lead_words, summary = [], ""
    title_numbers = _numbers(text.title)
    numbers = title_numbers | _numbers(summary)
    return _Prepared(
        title=" ".join(title_words),
        lead=" ".join(lead_words),
        title_numbers=title_numbers,
        numbers=numbers,
        keys=frozenset(title_words) | frozenset(lead_words) | numbers,
    )


def _ratio(a: str, b: str) -> float:
    """Mean of rapidfuzz token_set_ratio (spelling-tolerant) and the Dice overlap of the words
    (exact after stemming; unrelated texts score ~0 on it, where letter-level ratios give ~40)."""
    if not a or not b:
        return 0.0
    if a == b:
        return 100.0
    words_a, words_b = set(a.split()), set(b.split())
    dice = 200.0 * len(words_a & words_b) / (len(words_a) + len(words_b))
    return (fuzz.token_set_ratio(a, b) + dice) / 2


def _number_adjustment(a: _Prepared, b: _Prepared) -> float:
    if a.title_numbers and b.title_numbers and not a.title_numbers & b.title_numbers:
        return -NUMBER_CLASH
    shared = (a.title_numbers & b.numbers) | (b.title_numbers & a.numbers)
    return NUMBER_SHARED if any(len(n) >= 2 for n in shared) else 0.0


def _score(a: _Prepared, b: _Prepared) -> float:
    """Unbounded score (an exact copy with shared numbers exceeds 100; ranks candidates)."""
    title = _ratio(a.title, b.title)
    if not a.title and not b.title:  # nothing but numbers/stop words: compare summaries
        title = _ratio(a.lead, b.lead)
    score = title
    if title >= TITLE_FLOOR:
        score = max(title, _ratio(a.lead, b.lead))
    return score + _number_adjustment(a, b)


def same_story_score(a: StoryText, b: StoryText) -> float:
    """0..100: how surely two entries report the same story (>= threshold: same)."""
    return max(0.0, min(100.0, _score(prepare(a), prepare(b))))


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at!r}: StoryIndex needs aware (UTC) datetimes")
    return at


class StoryIndex:
    """Open stories per topic, with candidate retrieval by rare words.

    A story is open for `window` around the moment it was opened: `find(at=...)` considers
    stories opened within `window` before `at` — and, for feeds that deliver late, within
    `window` after it. Call `expire(now)` regularly (the pipeline does on each cycle) so the
    index holds only open stories; rebuild it on start by `add`-ing the stored open stories.
    """

    def __init__(self, window: timedelta, *, threshold: float | None = None) -> None:
        if window <= timedelta(0):
            raise ValueError("window must be positive")
        self.window = window
        self.threshold = SAME_STORY_THRESHOLD if threshold is None else threshold
        self._stories: dict[tuple[str, str], _Story] = {}
        self._postings: dict[str, dict[str, set[str]]] = {}  # topic -> key -> story ids
        self._sizes: dict[str, int] = {}  # topic -> open stories
        self._heap: list[tuple[datetime, str, str]] = []  # (opened_at, topic, story_id)

    def __len__(self) -> int:
        return len(self._stories)

    def has(self, topic: str, story_id: str) -> bool:
        return (topic, story_id) in self._stories

    def text(self, topic: str, story_id: str) -> StoryText | None:
        story = self._stories.get((topic, story_id))
        return story.text if story else None

    def add(self, story_id: str, topic: str, title: str, summary: str, opened_at: datetime) -> None:
        """Remember a newly opened story (replaces one with the same id in that topic)."""
        self._discard(topic, story_id)
        text = StoryText(title, summary)
        story = _Story(story_id, topic, _aware(opened_at), text, prepare(text))
        self._stories[(topic, story_id)] = story
        postings = self._postings.setdefault(topic, {})
        for key in story.prepared.keys:
            postings.setdefault(key, set()).add(story_id)
        self._sizes[topic] = self._sizes.get(topic, 0) + 1
        heapq.heappush(self._heap, (story.opened_at, topic, story_id))

    def find(self, topic: str, title: str, summary: str, at: datetime) -> str | None:
        """The open story of `topic` this entry belongs to, or None (then it opens one)."""
        at = _aware(at)
        query = prepare(StoryText(title, summary))
        best: tuple[float, datetime, str] | None = None
        for story_id in self._candidates(topic, query):
            story = self._stories[(topic, story_id)]
            if abs(at - story.opened_at) > self.window:
                continue
            score = _score(query, story.prepared)
            if score < self.threshold:
                continue
            if best is None or score > best[0] or (score == best[0] and story.opened_at < best[1]):
                best = (score, story.opened_at, story_id)
        return best[2] if best else None

    def remove(self, topic: str, story_id: str) -> bool:
        """Forget one story (e.g. its opening transaction failed); False if it was not held."""
        held = (topic, story_id) in self._stories
        self._discard(topic, story_id)
        return held

    def expire(self, now: datetime) -> int:
        """Forget stories opened more than `window` before `now`; return how many."""
        horizon = _aware(now) - self.window
        dropped = 0
        while self._heap and self._heap[0][0] < horizon:
            opened_at, topic, story_id = heapq.heappop(self._heap)
            story = self._stories.get((topic, story_id))
            if story is not None and story.opened_at == opened_at:
                self._discard(topic, story_id)
                dropped += 1
        return dropped

    def _discard(self, topic: str, story_id: str) -> None:
        story = self._stories.pop((topic, story_id), None)
        if story is None:
            return  # its heap entry, if any, is skipped by expire
        postings = self._postings[topic]
        for key in story.prepared.keys:
            ids = postings.get(key)
            if ids is not None:
                ids.discard(story_id)
                if not ids:
                    del postings[key]
        self._sizes[topic] -= 1
        if not self._sizes[topic]:
            del self._sizes[topic], self._postings[topic]

    def _candidates(self, topic: str, query: _Prepared) -> list[str]:
        """Stories sharing the most of the query's rarer keys (bounded work).

        Keys are read rarest first until POSTINGS_BUDGET postings have been read; keys held by
        a large share of the topic's stories (its own topic words) are never read at all.
        """
        postings = self._postings.get(topic)
        if not postings:
            return []
        limit = max(MIN_KEY_DF, int(self._sizes[topic] * MAX_KEY_SHARE))
        lists = sorted(
            (ids for key in query.keys if (ids := postings.get(key)) and len(ids) <= limit),
            key=len,
        )
        counts: Counter[str] = Counter()
        budget = POSTINGS_BUDGET
        for ids in lists:
            if len(ids) > budget:
                break
            budget -= len(ids)
            counts.update(ids)
        # ties broken by id, not by set order (string hashes differ between processes)
        return [story_id for story_id, _ in heapq.nlargest(CANDIDATES, counts.items(), _RANK)]
