"""Does a learned weighting of the embedding's dimensions beat the plain cosine? (round 4)

Run: .venv/bin/python benchmarks/story_metric.py [--l2 1,10,100] [--folds 5]

The shipped decision reads the cosine of two language-centred embeddings: every dimension
counts the same. This fits a weight per dimension (the "diagonal metric"
sum_i w_i a_i b_i) next to the shipped features, on the same SemEval-2022 pairs, rows and
grouped folds as story_fit.py, with the weights' departure from the plain cosine penalised
(L2 on w_i - mean); reports out-of-fold precision / recall at the threshold picked the
shipped way (lowest with training precision >= 0.92), beside the shipped model under the
same folds, and the out-of-fold AUC of each score.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import story_fit as fit  # noqa: E402

from watcher.story.decision import FEATURES, _centred  # noqa: E402
from watcher.story.evidence import Evidence, Rarity  # noqa: E402


def centred_products(
    pairs: Sequence[fit.Pair], evs: dict[str, Evidence], rarity: Rarity
) -> np.ndarray:
    """Per pair, the elementwise product of the two centred unit vectors (sums to cos)."""
    rows = []
    for pair in pairs:
        a, b = evs[pair.a], evs[pair.b]
        assert a.vector is not None and b.vector is not None
        va = _centred(a.vector, rarity.centre(a.lang))
        vb = _centred(b.vector, rarity.centre(b.lang))
        rows.append(va * vb * len(va))  # scaled: the plain cosine is their mean
    return np.asarray(rows, dtype=np.float64)


def fit_metric(
    base: np.ndarray, prod: np.ndarray, y: np.ndarray, l2: float
) -> tuple[float, np.ndarray, np.ndarray]:
    """(bias, base coefficients, per-dimension weights): log loss + l2/2 |w - mean(w)|^2.

    The plain cosine is w_i = c for all i; the penalty pulls the weights towards a common
    value, so l2 -> infinity gives back the shipped model (cos with one coefficient)."""
    n_base, dims = base.shape[1], prod.shape[1]
    design = np.hstack([np.ones((len(y), 1)), base, prod])
    centre = np.eye(dims) - np.full((dims, dims), 1.0 / dims)
    penalty = np.zeros((design.shape[1], design.shape[1]))
    penalty[1 + n_base :, 1 + n_base :] = l2 * centre
    penalty[1 : 1 + n_base, 1 : 1 + n_base] = 1e-3 * np.eye(n_base)
    w = np.zeros(design.shape[1])
    for _ in range(60):
        p = 1 / (1 + np.exp(-np.clip(design @ w, -40, 40)))
        grad = design.T @ (p - y) + penalty @ w
        hess = design.T @ (design * (p * (1 - p))[:, None]) + penalty + 1e-6 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-7:
            break
    return float(w[0]), w[1 : 1 + n_base], w[1 + n_base :]


def auc(score: np.ndarray, y: np.ndarray) -> float:
    order = np.argsort(score)
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    pos = y == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--l2", default="0.3,1,3,10,30,100")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)
    articles, pairs = fit.semeval()
    full = fit.article_evidence(articles, title_only=False)
    short = fit.article_evidence(articles, title_only=True)
    rar_full, rar_short = fit.stream_rarity(full), fit.stream_rarity(short)
    y1 = np.array([float(p.same) for p in pairs])
    n = len(pairs)
    fold1 = fit.folds_of(fit.groups(pairs), args.folds)
    y = np.concatenate([y1, y1])
    fold = np.concatenate([fold1, fold1])
    title_rows = np.arange(2 * n) >= n
    x = np.vstack(
        [
            fit.feature_matrix(pairs, full, rar_full, FEATURES),
            fit.feature_matrix(pairs, short, rar_short, FEATURES),
        ]
    )
    prod = np.vstack(
        [centred_products(pairs, full, rar_full), centred_products(pairs, short, rar_short)]
    )
    cross = np.array([p.langs.split("-")[0] != p.langs.split("-")[1] for p in pairs])
    base_names = ["cross", "cos_cross", "num_clash"]
    base = x[:, [FEATURES.index(name) for name in base_names]]

    prob, decided = fit.cross_validate(x, y, fold, FEATURES, title_rows)
    print("| model | AUC t+l | same-lang P / R | cross-lang P / R | title-only same P / R |")
    print("|---|---|---|---|---|")

    def row(label: str, prob: np.ndarray, decided: np.ndarray) -> None:
        cells = [label, f"{auc(prob[:n], y1):.3f}"]
        for mask in (~cross, cross):
            p_, r_, *_ = fit.pr(decided[:n][mask], y1[mask])
            cells.append(f"{p_:.2f} / {r_:.2f}")
        p_, r_, *_ = fit.pr(decided[n:][~cross], y1[~cross])
        cells.append(f"{p_:.2f} / {r_:.2f}")
        print("| " + " | ".join(cells) + " |")

    row("shipped (cos + features)", prob, decided)
    for l2 in (float(v) for v in args.l2.split(",")):
        prob = np.zeros(2 * n)
        decided = np.zeros(2 * n, dtype=bool)
        for f in np.unique(fold):
            train, test = fold != f, fold == f
            bias, cb, wd = fit_metric(base[train], prod[train], y[train], l2)
            p_train = 1 / (1 + np.exp(-(bias + base[train] @ cb + prod[train] @ wd)))
            prob[test] = 1 / (1 + np.exp(-(bias + base[test] @ cb + prod[test] @ wd)))
            t_main = fit.pick_threshold(p_train[~title_rows[train]], y[train][~title_rows[train]])
            t_title = fit.pick_threshold(p_train[title_rows[train]], y[train][title_rows[train]])
            decided[test] = prob[test] >= np.where(title_rows[test], t_title, t_main)
        row(f"diagonal metric, l2 {l2:g}", prob, decided)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
