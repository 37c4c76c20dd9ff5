"""The story engine: one alert per story across outlets and languages (pure).

- `evidence`: what is kept of an entry (`Evidence`), word rarity (`DocFreq`, `Rarity`);
- `decision`: the one calibrated same-story decision (`same_story`, `probability`);
- `index`: online clustering against open stories (`StoryIndex`), serialisable;
- `constants`: the fitted numbers (benchmarks/story_fit.py).
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
