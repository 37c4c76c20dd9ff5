"""An entry's same-story evidence, computed where CPU is cheap (pure, picklable).

The story engine (`watcher.story`) compares entries through their `Evidence`: language,
stemmed terms, name keys, numbers, time and, when the entry was embedded, its vector.
Computing it costs ~0.6 ms an entry (language guess, stemming, transliteration), so the
pipeline computes it in the parse workers (`evidence_batch`, one call per poll for the new
entries) and stores it as JSON with the entry and the story, so a restart or another node
rebuilds the index without computing anything again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from watcher.model import Entry
from watcher.story.evidence import Evidence, evidence

if TYPE_CHECKING:
    import numpy as np
else:
    from watcher.lazy import numpy as np

# (title, summary, story time as ISO 8601, declared language or "")
EvidenceInput = tuple[str, str, str, str]


def evidence_input(entry: Entry, at: datetime) -> EvidenceInput:
    return entry.title, entry.summary, at.isoformat(), entry.language


def evidence_batch(items: list[EvidenceInput]) -> list[str]:
    """The evidence of each entry as JSON (no vector yet)."""
    return [dumps(evidence(title, summary, datetime.fromisoformat(at), lang=lang or None))
            for title, summary, at, lang in items]


def dumps(ev: Evidence) -> str:
    return json.dumps(ev.to_dict(), ensure_ascii=False, separators=(",", ":"))


def loads(raw: str) -> Evidence:
    data: dict[str, Any] = json.loads(raw)
    return Evidence.from_dict(data)


def with_vector(raw: str, vector: np.ndarray | None, model: str = "") -> str:
    """Stored evidence with the entry's vector added (and the name of the model that made
    it, so that vectors of another model are never compared with it)."""
    return raw if vector is None else dumps(loads(raw).with_vector(vector, model))


def placement(raw: str, bridged: Sequence[str]) -> str:
    """A placement's stored evidence: the entry's, plus the open stories its entry bridged
    into the one it joined, so that replaying the placement merges them too."""
    if not bridged:
        return raw
    data: dict[str, Any] = json.loads(raw)
    data["bridged"] = list(bridged)
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def loads_placement(raw: str) -> tuple[Evidence, tuple[str, ...]]:
    """The evidence of a stored placement and the stories it bridged (see `placement`)."""
    data: dict[str, Any] = json.loads(raw)
    return Evidence.from_dict(data), tuple(str(s) for s in data.get("bridged", ()))
