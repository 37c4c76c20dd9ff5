"""One decision fitted over every labelled set at once, measured per set (tried in round 3).

Run: .venv/bin/python benchmarks/story_pooled.py [--features cos,cos_cross,...]

The shipped decision is fitted on SemEval pairs only (benchmarks/story_fit.py). This asks
whether fitting on all labelled sets together does better on each of them:

- SemEval-2022 pairs (title + lead rows and title-only rows, as story_fit.py);
- Kursk + founding sets: every pair of entries within 72 h (topic words ignored);
- UCI subset (titles only): each entry with its 10 nearest earlier entries (centred cosine)
  and 3 random earlier ones within 72 h — the pairs a streaming clusterer compares.

Each set weighs the same in the fit (weighted log loss), signs as story_fit.SIGNS, the
threshold the lowest with weighted training precision >= 0.92. Two protocols, figures are
pairwise precision / recall on each set's held-out pairs:
- pooled 5-fold CV grouped by article (SemEval) or story (the others);
- leave one set out: fitted on the other two.
UCI and Kursk pairs are samples (not every pair of a stream), so their figures are not the
streamed ones of story_quality.py. Embeddings come from story_fit's cache.
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import story_fit as fit  # noqa: E402
import story_quality as quality  # noqa: E402

from watcher.embed import entry_text  # noqa: E402
from watcher.story.decision import FEATURES, pair_features  # noqa: E402
from watcher.story.evidence import DocFreq, Evidence, Rarity, evidence, topic_terms  # noqa: E402

HOURS = 72
FOLDS = 5
GOAL = 0.92


@dataclass
class PairSet:
    features: list[dict[str, float]]
    same: np.ndarray
    fold: np.ndarray


def _stream(items: Sequence[quality.Item], ignore: frozenset[str]) -> tuple[list[Evidence], Rarity]:
    vectors = fit.embed_cached([entry_text(i.title, i.summary) for i in items])
    evs = [
        evidence(i.title, i.summary, i.at, lang=i.lang or None, vector=v)
        for i, v in zip(items, vectors, strict=True)
    ]
    freq = DocFreq()
    for ev in evs:
        freq.observe(ev)
    return evs, Rarity(freq, None, ignore)


def _fold(label: str) -> int:
    return zlib.crc32(label.encode()) % FOLDS


def semeval_pairs() -> PairSet:
    articles, pairs = fit.semeval()
    rows: list[dict[str, float]] = []
    for title_only in (False, True):
        evs = fit.article_evidence(articles, title_only)
        rarity = fit.stream_rarity(evs)
        rows += [pair_features(evs[p.a], evs[p.b], rarity) for p in pairs]
    same = np.array([float(p.same) for p in pairs] * 2)
    fold = np.concatenate([fit.folds_of(fit.groups(pairs), FOLDS)] * 2)
    return PairSet(rows, same, fold)


def labelled_pairs() -> PairSet:
    items = sorted(quality.kursk(), key=lambda i: (i.at, i.key))
    evs, rarity = _stream(items, topic_terms(quality.KURSK_TOPIC))
    pairs = [
        (a, b)
        for a, b in itertools.combinations(range(len(items)), 2)
        if abs((items[a].at - items[b].at).total_seconds()) <= HOURS * 3600
    ]
    return PairSet(
        [pair_features(evs[a], evs[b], rarity) for a, b in pairs],
        np.array([float(items[a].label == items[b].label) for a, b in pairs]),
        np.array([_fold(items[b].label) for _, b in pairs]),
    )


def uci_pairs(nearest: int = 10, rand: int = 3, seed: int = 3) -> PairSet:
    items = sorted(quality.uci(), key=lambda i: (i.at, i.key))
    evs, rarity = _stream(items, frozenset())
    vectors = np.stack([ev.vector for ev in evs if ev.vector is not None])
    centre = rarity.centre("en")
    centred = vectors - (centre if centre is not None else 0.0)
    centred /= np.linalg.norm(centred, axis=1, keepdims=True)
    rng = random.Random(seed)
    chosen: set[tuple[int, int]] = set()
    start = 0
    for b in range(1, len(items)):
        while (items[b].at - items[start].at).total_seconds() > HOURS * 3600:
            start += 1
        if start == b:
            continue
        scores = centred[start:b] @ centred[b]
        chosen.update((start + int(a), b) for a in np.argsort(-scores)[:nearest])
        chosen.update((rng.randrange(start, b), b) for _ in range(rand))
    pairs = sorted(chosen)
    return PairSet(
        [pair_features(evs[a], evs[b], rarity) for a, b in pairs],
        np.array([float(items[a].label == items[b].label) for a, b in pairs]),
        np.array([_fold(items[b].label) for _, b in pairs]),
    )


def _matrix(rows: list[dict[str, float]], names: Sequence[str]) -> np.ndarray:
    return np.array([[row[n] for n in names] for row in rows], dtype=np.float64)


def _threshold(p: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    for t in np.arange(0.5, 0.96, 0.05):
        chosen = p >= t
        if chosen.any() and (w[chosen] * y[chosen]).sum() / w[chosen].sum() >= GOAL:
            return float(t)
    return 0.5


def _fit(
    parts: list[tuple[np.ndarray, np.ndarray]], names: Sequence[str]
) -> tuple[float, np.ndarray, float]:
    """(bias, coefficients, threshold), each part (x, y) weighing the same."""
    x = np.vstack([px for px, _ in parts])
    y = np.concatenate([py for _, py in parts])
    w = np.concatenate([np.full(len(py), 1000.0 / len(py)) for _, py in parts])
    bias, coef = fit.fit_signed(x, y, names, weights=w)
    return bias, coef, _threshold(fit.predict(bias, coef, x), y, w)


def _pr(decided: np.ndarray, y: np.ndarray) -> str:
    tp = float((decided & (y == 1)).sum())
    return f"{tp / max(decided.sum(), 1):.2f} / {tp / max((y == 1).sum(), 1):.2f}"


def pooled(sets: dict[str, PairSet], names: Sequence[str]) -> dict[str, str]:
    matrices = {k: _matrix(s.features, names) for k, s in sets.items()}
    decided = {k: np.zeros(len(s.same), dtype=bool) for k, s in sets.items()}
    for f in range(FOLDS):
        model = _fit([(matrices[k][s.fold != f], s.same[s.fold != f]) for k, s in sets.items()],
                     names)
        for k, s in sets.items():
            test = s.fold == f
            decided[k][test] = fit.predict(model[0], model[1], matrices[k][test]) >= model[2]
    return {k: _pr(decided[k], s.same) for k, s in sets.items()}


def leave_one_out(sets: dict[str, PairSet], names: Sequence[str]) -> dict[str, str]:
    matrices = {k: _matrix(s.features, names) for k, s in sets.items()}
    out = {}
    for held in sets:
        bias, coef, t = _fit([(matrices[k], s.same) for k, s in sets.items() if k != held], names)
        out[held] = _pr(fit.predict(bias, coef, matrices[held]) >= t, sets[held].same)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", default=",".join(FEATURES))
    args = parser.parse_args(argv)
    names = [n for n in args.features.split(",") if n]
    sets = {"SemEval": semeval_pairs(), "Kursk+founding": labelled_pairs(), "UCI": uci_pairs()}
    print(f"features: {', '.join(names)}\n")
    print("| protocol | " + " | ".join(f"{k} P / R" for k in sets) + " |")
    print("|---|" + "---|" * len(sets))
    for label, figures in (
        ("pooled, 5-fold grouped", pooled(sets, names)),
        ("leave one set out", leave_one_out(sets, names)),
        ("SemEval only, same folds", _semeval_only(sets, names)),
    ):
        print(f"| {label} | " + " | ".join(figures[k] for k in sets) + " |")
    return 0


def _semeval_only(sets: dict[str, PairSet], names: Sequence[str]) -> dict[str, str]:
    """The shipped protocol under the pooled folds: fitted on SemEval's training folds only,
    tested on every set's held-out fold."""
    matrices = {k: _matrix(s.features, names) for k, s in sets.items()}
    sem = sets["SemEval"]
    decided = {k: np.zeros(len(s.same), dtype=bool) for k, s in sets.items()}
    for f in range(FOLDS):
        model = _fit([(matrices["SemEval"][sem.fold != f], sem.same[sem.fold != f])], names)
        for k, s in sets.items():
            test = s.fold == f
            decided[k][test] = fit.predict(model[0], model[1], matrices[k][test]) >= model[2]
    return {k: _pr(decided[k], s.same) for k, s in sets.items()}


if __name__ == "__main__":
    raise SystemExit(main())
