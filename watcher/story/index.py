"""Online clustering of a topic's entries into stories (pure: no I/O, no clock of its own).

Each entry of a topic is compared with the open stories of that topic and joins the one it
most probably belongs to (`same_story` >= threshold), else opens a new one. A story is
compared through its *members*, best member wins: the first entry and the latest
`MEMBERS - 1` ones are kept, so a story followed over days is still recognised by its newest
wording, while one outlying member cannot drag the story towards another (a centroid of
bag-of-words would). `benchmarks/story_quality.py --members 1` measures the alternative.

Candidates are bounded whatever the number of open stories: rare-key postings and nearest
embeddings (watcher.story.candidates). The records kept and handed back (`Story`, `Member`,
`Verdict`, `Merge`) are in watcher.story.stories; both are re-exported here.

Bridges: an entry sure (p >= `BRIDGE`) of two or more open stories of a topic joins the
biggest of them and the others fold into it (`merge`), so one story reported in two
wordings (or languages) that opened apart is one for what follows (measured before the
title-only threshold: UCI pairwise R 0.21 -> 0.39 at P 0.95; Kursk + founding P 0.75 ->
0.77, R 0.63 -> 0.71). A merged story keeps a member window as wide as the stories it took
in (up to `MERGED_MEMBERS`) and is compared through the `members` of them nearest the
entry's embedding. The alerts the two already owed stay owed. A merge is decided where the
placement is decided (`assign`, `StoryDecider.place`); the placement's stored event names
the stories it folded, so a restart or another node replaying it merges them too;
`unmerge` undoes it when the poll's transaction fails.

Stories stay open `window` after they were last touched (wall clock, `now` of `open` /
`attach`), so a story about entries dated days ago survives; entries are only compared
with members dated within `window` of their own date. The whole index, including the
per-topic word frequencies, round-trips through `to_state` / `from_state` (plain JSON).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from watcher.story.candidates import CANDIDATES, NEAREST, _keys, _Topic
from watcher.story.decision import same_story
from watcher.story.evidence import Evidence
from watcher.story.rarity import DocFreq, Rarity
from watcher.story.stories import Member, Merge, Story, Verdict

if TYPE_CHECKING:
    import numpy as np
else:
    from watcher.lazy import numpy as np

# What callers, tests and benchmarks import from here, wherever it is defined.
__all__ = ["BRIDGE", "CANDIDATES", "MEMBERS", "NEAREST", "Merge", "StoryIndex", "Verdict"]

MEMBERS = 8  # members a story is compared through: the first and the latest 7
# An entry this sure (p >= BRIDGE) of two open stories joins them: the others fold into the
# one it joins, so later entries like either find one story (benchmarks/story_quality.py
# --bridge measures it).
BRIDGE = 0.92
MERGED_MEMBERS = 32  # members a story made of merged ones may keep


class StoryIndex:
    """Open stories per topic; `assign` is the one entry point the pipeline needs."""

    def __init__(
        self,
        window: timedelta,
        *,
        stream: DocFreq | None = None,
        members: int = MEMBERS,
        bridge: float = BRIDGE,
    ) -> None:
        if window <= timedelta(0):
            raise ValueError("window must be positive")
        self.window = window
        self.members = members
        self.bridge = bridge  # > 1: never merge
        self.stream = stream if stream is not None else DocFreq()
        self._topics: dict[str, _Topic] = {}
        self._ignore: dict[str, frozenset[str]] = {}

    # -- configuration and word statistics ------------------------------------------------
    def configure(self, topic: str, ignore: frozenset[str]) -> None:
        """Set a topic's own words (`evidence.topic_terms(phrases)`): no evidence of a story."""
        self._ignore[topic] = ignore
        if topic in self._topics:
            self._topics[topic].rarity = Rarity(self.stream, self._topics[topic].freq, ignore)

    def observe(self, ev: Evidence) -> None:
        """Count an entry seen on any feed (every new entry, matched or not) in the stream."""
        self.stream.observe(ev)

    def _topic(self, topic: str) -> _Topic:
        found = self._topics.get(topic)
        if found is None:
            found = self._topics[topic] = _Topic(self.stream, self._ignore.get(topic, frozenset()))
        return found

    def rarity(self, topic: str) -> Rarity:
        return self._topic(topic).rarity

    def __len__(self) -> int:
        return sum(len(t.stories) for t in self._topics.values())

    def story(self, topic: str, story_id: str) -> Story | None:
        held = self._topics.get(topic)
        return held.stories.get(story_id) if held else None

    # -- the decision ---------------------------------------------------------------------
    def candidates(self, topic: str, ev: Evidence) -> list[str]:
        held = self._topics.get(topic)
        if held is None or not held.stories:
            return []
        found = held.by_postings(ev)
        if ev.vector is not None:
            found += held.nearest(ev.vector, NEAREST)
        return list(dict.fromkeys(found))

    def find(self, topic: str, ev: Evidence) -> Verdict:
        """The open story of `topic` this entry belongs to, or `Verdict(None, p)`."""
        held = self._topics.get(topic)
        if held is None:
            return Verdict(None, 0.0)
        best: tuple[float, datetime, str] | None = None
        best_p = 0.0
        sure: list[str] = []
        for story_id in self.candidates(topic, ev):
            story = held.stories[story_id]
            for member in self._compared(story, ev):
                if abs(ev.at - member.ev.at) > self.window:
                    continue
                same, p = same_story(ev, member.ev, held.rarity)
                best_p = max(best_p, p)
                if same and p >= self.bridge and story_id not in sure and (
                    ev.vector is not None and member.ev.vector is not None
                ):  # the lexical model's probabilities are too coarse to bridge on
                    sure.append(story_id)
                if same and (
                    best is None or p > best[0] or (p == best[0] and story.opened_at < best[1])
                ):
                    best = (p, story.opened_at, story_id)
        if best is None:
            return Verdict(None, best_p)
        if not any(s != best[2] for s in sure):
            return Verdict(best[2], best[0])
        # a bridge: the entry joins the biggest (then oldest) of the stories, the rest fold in
        group = list(dict.fromkeys([best[2], *sure]))
        into = min(group, key=lambda s: (-held.stories[s].size, held.stories[s].opened_at))
        return Verdict(into, best[0], tuple(s for s in group if s != into))

    def _compared(self, story: Story, ev: Evidence) -> list[Member]:
        """The members an entry is compared with: all, or for a merged story the `members`
        nearest in embedding (the decision is mostly the cosine), so a decision costs the
        same whatever a story's size."""
        if len(story.members) <= self.members or ev.vector is None:
            return story.members
        scored = [
            (float(np.dot(ev.vector, m.ev.vector)) if m.ev.vector is not None else -2.0, i)
            for i, m in enumerate(story.members)
        ]
        top = heapq.nlargest(self.members, scored)
        return [story.members[i] for _, i in sorted(top, key=lambda item: item[1])]

    def assign(
        self,
        topic: str,
        entry_id: str,
        ev: Evidence,
        new_story_id: str,
        now: datetime | None = None,
    ) -> Verdict:
        """Attach the entry to its story, or open `new_story_id` (then `story_id` is it)."""
        verdict = self.find(topic, ev)
        if verdict.story_id is None:
            self.open(topic, new_story_id, entry_id, ev, now)
            return Verdict(new_story_id, verdict.probability)
        self.merge(topic, verdict.story_id, verdict.bridges, now)
        self.attach(topic, verdict.story_id, entry_id, ev, now)
        return verdict

    # -- changes ------------------------------------------------------------------------------
    def open(
        self, topic: str, story_id: str, entry_id: str, ev: Evidence, now: datetime | None = None
    ) -> None:
        """Open a story with its first entry (replaces one with the same id)."""
        self.remove(topic, story_id)
        held = self._topic(topic)
        story = Story(story_id, ev.at, now or ev.at, [])
        held.stories[story_id] = story
        self._add_member(held, story, Member(entry_id, ev), count=False)

    def attach(
        self, topic: str, story_id: str, entry_id: str, ev: Evidence, now: datetime | None = None
    ) -> None:
        held = self._topics[topic]
        story = held.stories[story_id]
        story.touched_before = story.touched
        story.touched = max(story.touched, now or ev.at)
        story.evicted = None
        self._add_member(held, story, Member(entry_id, ev), count=True)

    def merge(
        self, topic: str, into: str, others: Iterable[str], now: datetime | None = None
    ) -> Merge | None:
        """Fold open stories into `into` (a bridge): their members join it, they close.

        Returns what `unmerge` needs to undo it (None when nothing was folded)."""
        held = self._topics.get(topic)
        target = held.stories.get(into) if held else None
        folded = [
            story
            for story_id in dict.fromkeys(others)
            if story_id != into and held is not None and (story := held.stories.get(story_id))
        ]
        if held is None or target is None or not folded:
            return None
        undo = Merge(
            topic,
            into,
            list(target.members),
            Counter(target.keys),
            target.limit,
            None if target.vector_sum is None else target.vector_sum.copy(),
            target.size,
            target.touched,
            folded,
        )
        for story in folded:
            self.remove(topic, story.story_id)
            for key, n in story.keys.items():
                if not target.keys[key]:
                    held.postings.setdefault(key, set()).add(into)
                target.keys[key] += n
            if story.vector_sum is not None:
                target.vector_sum = (
                    story.vector_sum.copy()
                    if target.vector_sum is None
                    else target.vector_sum + story.vector_sum
                )
            # both stories' members stay (up to MERGED_MEMBERS): each wording was recognised by
            # its own, so the merged story keeps a window as wide as both
            target.limit = min(
                MERGED_MEMBERS, (target.limit or self.members) + (story.limit or self.members)
            )
            rest = sorted([*target.members[1:], *story.members], key=lambda m: m.ev.at)
            target.members = [target.members[0], *rest[-(target.limit - 1) :]]
            target.size += story.size
            target.touched = max(target.touched, story.touched, now or target.touched)
        target.evicted = target.touched_before = None
        held.set_vector(target)
        return undo

    def unmerge(self, undo: Merge) -> None:
        """Undo `merge` (the poll that made it failed): the folded stories are open again."""
        held = self._topics.get(undo.topic)
        target = held.stories.get(undo.into) if held else None
        if held is None or target is None:
            return
        for key in [k for k in target.keys if not undo.keys[k]]:
            ids = held.postings.get(key)
            if ids is not None:
                ids.discard(undo.into)
                if not ids:
                    del held.postings[key]
        target.members, target.keys, target.limit = undo.members, undo.keys, undo.limit
        target.vector_sum, target.size, target.touched = undo.vector_sum, undo.size, undo.touched
        target.evicted = target.touched_before = None
        held.set_vector(target)
        for story in undo.folded:
            held.stories[story.story_id] = story
            for key in story.keys:
                held.postings.setdefault(key, set()).add(story.story_id)
            held.set_vector(story)

    def _add_member(self, held: _Topic, story: Story, member: Member, *, count: bool) -> None:
        if count:
            story.size += 1
        held.freq.observe(member.ev)
        story.members.append(member)
        if len(story.members) > (story.limit or self.members):
            story.evicted = story.members.pop(1)  # the first stays; the oldest of the rest goes
        for key in _keys(member.ev):
            if not story.keys[key]:
                held.postings.setdefault(key, set()).add(story.story_id)
            story.keys[key] += 1
        if member.ev.vector is not None:
            vec = member.ev.vector.astype(np.float32)
            story.vector_sum = vec.copy() if story.vector_sum is None else story.vector_sum + vec
            held.set_vector(story)

    def detach(self, topic: str, story_id: str, entry_id: str, ev: Evidence) -> bool:
        """Undo `attach` of this entry (its transaction failed): members, keys, vector and
        word counts as before it. False when the story or the member is not held.

        When the detached entry was the latest attached, the member its attach pushed out of
        a full story comes back and `touched` is as before; otherwise both stay."""
        held = self._topics.get(topic)
        story = held.stories.get(story_id) if held else None
        if held is None or story is None:
            return False
        at = next((i for i, m in enumerate(story.members) if m.entry_id == entry_id), None)
        if at is None or (at == 0 and len(story.members) == 1):
            return False  # not a member, or the opener: `remove` the story instead
        story.members.pop(at)
        if at == len(story.members):  # the latest: what its attach changed is known
            if story.evicted is not None:
                story.members.insert(1, story.evicted)
            if story.touched_before is not None:
                story.touched = story.touched_before
        story.evicted = story.touched_before = None
        story.size = max(1, story.size - 1)
        held.freq.forget(ev)
        for key in _keys(ev):
            story.keys[key] -= 1
            if story.keys[key] <= 0:
                del story.keys[key]
                ids = held.postings.get(key)
                if ids is not None:
                    ids.discard(story_id)
                    if not ids:
                        del held.postings[key]
        if ev.vector is not None and story.vector_sum is not None:
            story.vector_sum = story.vector_sum - ev.vector.astype(np.float32)
            held.set_vector(story)
        return True

    def remove(self, topic: str, story_id: str) -> bool:
        """Forget one story; False if it was not held."""
        held = self._topics.get(topic)
        story = held.stories.pop(story_id, None) if held else None
        if held is None or story is None:
            return False
        for key in story.keys:
            ids = held.postings.get(key)
            if ids is not None:
                ids.discard(story_id)
                if not ids:
                    del held.postings[key]
        held.drop_vector(story)
        return True

    def expire(self, now: datetime) -> int:
        """Forget stories not touched within `window` before `now`; return how many."""
        horizon = now - self.window
        dropped = 0
        for topic, held in self._topics.items():
            for story_id in [s.story_id for s in held.stories.values() if s.touched < horizon]:
                dropped += self.remove(topic, story_id)
            held.freq.expire(now)
        self.stream.expire(now)
        return dropped

    # -- persistence ----------------------------------------------------------------------
    def to_state(self) -> dict[str, object]:
        """Everything the index holds, as plain JSON-able data."""
        return {
            "window_s": self.window.total_seconds(),
            "members": self.members,
            "stream": self.stream.to_state(),
            "topics": {
                name: {
                    "freq": held.freq.to_state(),
                    "ignore": sorted(self._ignore.get(name, frozenset())),
                    "stories": [
                        {
                            "id": s.story_id,
                            "opened_at": s.opened_at.isoformat(),
                            "touched": s.touched.isoformat(),
                            "size": s.size,
                            "limit": s.limit,
                            "members": [[m.entry_id, m.ev.to_dict()] for m in s.members],
                        }
                        for s in held.stories.values()
                    ],
                }
                for name, held in self._topics.items()
            },
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> StoryIndex:
        index = cls(
            timedelta(seconds=float(state["window_s"])),
            stream=DocFreq.from_state(state["stream"]),
            members=int(state["members"]),
        )
        topics: dict[str, dict[str, Any]] = state["topics"]
        for name, data in topics.items():
            index.configure(name, frozenset(data["ignore"]))
            for raw in data["stories"]:
                members = [(entry_id, Evidence.from_dict(ev)) for entry_id, ev in raw["members"]]
                held = index._topic(name)
                story = Story(
                    raw["id"],
                    datetime.fromisoformat(raw["opened_at"]),
                    datetime.fromisoformat(raw["touched"]),
                    [],
                    size=raw["size"],
                    limit=int(raw.get("limit", 0)),
                )
                held.stories[story.story_id] = story
                for entry_id, ev in members:
                    index._add_member(held, story, Member(entry_id, ev), count=False)
            held = index._topic(name)
            held.freq = DocFreq.from_state(data["freq"], centres=False)
            held.rarity = Rarity(index.stream, held.freq, index._ignore.get(name, frozenset()))
        return index
