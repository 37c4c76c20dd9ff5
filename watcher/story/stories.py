"""The records of the story index: stories, their members, and what it hands back.

A `Story` is one open story of a topic: its first and latest members (`Member`: an entry id
and its `Evidence`), the keys its entries carry (what the postings list it under), the sum
of its members' vectors and its row in the topic's vector matrix, and what its last attach
changed (for `StoryIndex.detach`). `Verdict` is where `StoryIndex.find` / `assign` place an
entry (with the open stories it bridges), and `Merge` what `StoryIndex.merge` changed (for
`unmerge`). All are importable from watcher.story.index, where callers import them from.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING

from msgspec import Struct, field

from watcher.story.evidence import Evidence

if TYPE_CHECKING:
    import numpy as np
else:
    from watcher.lazy import numpy as np


class Verdict(Struct, frozen=True):
    """Where an entry goes: an open story (`story_id`) or a new one (None)."""

    story_id: str | None
    probability: float  # of the best candidate (0 when there was none)
    bridges: tuple[str, ...] = ()  # other open stories it matches with p >= BRIDGE


class Member(Struct):
    entry_id: str
    ev: Evidence


class Story(Struct):
    story_id: str
    opened_at: datetime  # date of its first entry
    touched: datetime  # wall clock of the last open/attach
    members: list[Member]
    size: int = 1  # entries ever attached
    keys: Counter[str] = field(default_factory=Counter)  # key -> entries carrying it
    row: int = -1  # row in the topic's vector matrix, -1 without vectors
    vector_sum: np.ndarray | None = None
    limit: int = 0  # members kept (0: the index's `members`; more once stories merged)
    # what the last attach changed, for `detach`: the member it pushed out, the old `touched`
    evicted: Member | None = None
    touched_before: datetime | None = None


class Merge(Struct, frozen=True):
    """What `StoryIndex.merge` changed: the target story as it was, and the stories folded."""

    topic: str
    into: str
    members: list[Member]
    keys: Counter[str]
    limit: int
    vector_sum: np.ndarray | None
    size: int
    touched: datetime
    folded: list[Story]
