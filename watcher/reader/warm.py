"""Preloaded by the parse workers' forkserver (see parsepool): what every worker would
otherwise load for itself on its first new entries — the story engine's evidence code and
its per-language word data (Ukrainian lemmas alone take ~0.45 s) — is loaded once, before the
workers fork, so they share those pages (copy-on-write) instead of holding a copy each.

Importing this module never fails: a problem here only means each worker loads what it
needs itself, as it would without the preload.
"""

from __future__ import annotations

import gc
import sys
from datetime import UTC, datetime

# One short text per language the evidence code keeps word data for (the languages the
# project's feeds carry most; others load in the worker that meets them).
SAMPLES = {
    "en": ("Residents evacuated from the border region", "The governor said on Monday."),
    "ru": ("Жители приграничного района эвакуированы", "Губернатор сообщил в понедельник."),
    "uk": ("Мешканців прикордонного району евакуювали", "Губернатор повідомив у понеділок."),
}


def warm() -> bool:
    """Load the evidence code and word data now; False if that failed (harmless)."""
    try:
        from watcher.matching.dedupe import evidence_batch, evidence_input
        from watcher.model import Entry

        now = datetime.now(UTC)
        evidence_batch([evidence_input(Entry(
            key=lang, guid=None, title=title, link=None, canonical_link=None,
            summary=summary, published=now, feed_url="warm:", feed_name="warm"), now)
            for lang, (title, summary) in SAMPLES.items()])
    except Exception as exc:  # the preload must never break the forkserver: say so, go on
        print(f"watcher: the parse workers' shared preload failed, each worker loads its "
              f"word data itself: {type(exc).__name__}: {exc}", file=sys.stderr)
        return False
    finally:
        gc.freeze()  # the workers' collector leaves the shared objects (and pages) alone
    return True


WARM = warm()
