"""Candidate stories for an entry: one topic's open stories, postings and vectors (`_Topic`).

`_Topic` holds a topic's open stories, the postings of their keys (`_keys`: terms, name keys
and numbers), the matrix of their normalised mean member vectors, and the topic's word
frequencies. The candidates it offers `StoryIndex` are bounded whatever the number of open
stories: from the rare-key postings, the entry's keys rarest first until `POSTINGS_BUDGET`
postings were read, keys held by a large share of the topic's stories (its own words)
never read, and the `CANDIDATES` stories sharing most keys scored; from the embeddings, the
`NEAREST` stories whose mean member vector is closest (one matrix-vector product over the
topic's open stories). `CANDIDATES` and `NEAREST` are also importable from
watcher.story.index.
"""

from __future__ import annotations

import heapq
from collections import Counter
from typing import TYPE_CHECKING

from watcher.story.evidence import Evidence
from watcher.story.rarity import DocFreq, Rarity
from watcher.story.stories import Story

if TYPE_CHECKING:
    import numpy as np
else:
    from watcher.lazy import numpy as np

CANDIDATES = 12  # stories scored per lookup from the postings
NEAREST = 8  # stories scored per lookup from the embeddings
POSTINGS_BUDGET = 1000
MAX_KEY_SHARE = 0.2  # a key held by more than this share of a topic's stories is not read
MIN_KEY_DF = 64  # ... unless fewer stories than this hold it


def _keys(ev: Evidence) -> set[str]:
    return {f"t{t}" for t in ev.terms} | {f"n{n}" for n in ev.names} | {f"#{n}" for n in ev.numbers}


class _Topic:
    """One topic's open stories, postings, vectors and word frequencies."""

    def __init__(self, stream: DocFreq, ignore: frozenset[str]) -> None:
        self.stories: dict[str, Story] = {}
        self.postings: dict[str, set[str]] = {}
        self.freq = DocFreq(centres=False)
        self.rarity = Rarity(stream, self.freq, ignore)
        self.matrix: np.ndarray | None = None  # made at the first vector (numpy: lazy)
        self.row_story: list[str | None] = []
        self.free_rows: list[int] = []

    def set_vector(self, story: Story) -> None:
        if story.vector_sum is None:
            return
        norm = float(np.linalg.norm(story.vector_sum))
        vec = story.vector_sum / (norm or 1.0)
        matrix = self.matrix
        if story.row < 0:
            if matrix is None or matrix.shape[1] != len(vec):
                matrix = np.zeros((16, len(vec)), dtype=np.float32)
                self.row_story = [None] * 16
                self.free_rows = list(range(15, -1, -1))
            if not self.free_rows:
                grown = len(self.row_story)
                matrix = np.vstack([matrix, np.zeros_like(matrix)])
                self.row_story += [None] * grown
                self.free_rows = list(range(2 * grown - 1, grown - 1, -1))
            story.row = self.free_rows.pop()
            self.row_story[story.row] = story.story_id
        assert matrix is not None  # a story with a row was given one above or before
        matrix[story.row] = vec
        self.matrix = matrix

    def drop_vector(self, story: Story) -> None:
        if story.row >= 0 and self.matrix is not None:
            self.matrix[story.row] = 0.0
            self.row_story[story.row] = None
            self.free_rows.append(story.row)
            story.row = -1

    def nearest(self, vector: np.ndarray, n: int) -> list[str]:
        if not self.stories or self.matrix is None or self.matrix.shape[1] != len(vector):
            return []
        scores = self.matrix @ vector
        n = min(n, len(scores))
        top = np.argpartition(-scores, n - 1)[:n]
        return [sid for i in top if (sid := self.row_story[int(i)]) is not None]

    def by_postings(self, ev: Evidence) -> list[str]:
        limit = max(MIN_KEY_DF, int(len(self.stories) * MAX_KEY_SHARE))
        lists = sorted(
            (ids for key in _keys(ev) if (ids := self.postings.get(key)) and len(ids) <= limit),
            key=len,
        )
        counts: Counter[str] = Counter()
        budget = POSTINGS_BUDGET
        for ids in lists:
            if len(ids) > budget:
                break
            budget -= len(ids)
            counts.update(ids)
        ranked = heapq.nlargest(CANDIDATES, counts.items(), key=lambda item: (item[1], item[0]))
        return [story_id for story_id, _ in ranked]
