"""The story engine: one alert per story across outlets and languages (pure, no I/O).

- `evidence`: what is kept of an entry (`Evidence`); `rarity`: word rarity learned online
  (`DocFreq`: per-language document frequencies in day buckets; `Rarity`: weights in [0, 1]
  with a topic's own words weighed down) and per-language mean embeddings (`Centres`);
- `decision`: the ONE same-story decision (`same_story`, `probability`): logistic regression
  over pair features, fitted by benchmarks/story_fit.py (numbers in `constants`), plus a
  time prior and a number-clash prior;
- `index`: online clustering against a topic's open stories (`StoryIndex.assign`), best
  member of up to 8 per story, bounded candidates (rare-key postings + nearest vectors),
  bridge merges (an entry sure of two open stories joins them), `detach` / `unmerge` to undo
  a failed poll, `to_state` / `from_state` for restarts; `candidates`: a topic's postings
  and vector matrix, `stories`: the index's records.

Measured (benchmarks/story_fit.py, story_quality.py; 2026-12-01, round 3), with embeddings:
SemEval-2022 pairs, 5-fold grouped CV: same-language P 0.91 R 0.61, cross-language
P 0.92 R 0.60 (title + lead), same-language P 0.93 R 0.48 (titles alone); Kursk + founding
sets streamed: P 0.77 R 0.71 (same-topic follow-ups merge); UCI streamed (titles): pairwise
P 0.95 R 0.42, B-cubed F1 0.60; pairs sharing only topic words: 0 of 76 merged. Tables:
tests/data/stories/README-engine.md.
"""

from watcher.story.decision import probability, same_story
from watcher.story.evidence import DocFreq, Evidence, Rarity, evidence, topic_terms
from watcher.story.index import StoryIndex, Verdict

__all__ = [
    "DocFreq",
    "Evidence",
    "Rarity",
    "StoryIndex",
    "Verdict",
    "evidence",
    "probability",
    "same_story",
    "topic_terms",
]
