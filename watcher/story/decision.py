"""The one same-story decision: features of a pair of entries -> calibrated probability.

`pair_features` turns two `Evidence` into the handful of numbers the logistic regression
reads (names in `FEATURES`); `probability` applies the fitted coefficients from
`watcher.story.constants` — the model with the embedding cosine when both entries have a
vector, the lexical-only model otherwise — and `same_story` compares with the threshold
(the embedding model has one for pairs where an entry is a title alone, fitted on SemEval's
title-only rows: `threshold`).
Both the daemon and `watcher test` must call `same_story` (through `StoryIndex`), nothing
else.

Two priors are added to the fitted log-odds, because the training pairs cannot teach them:
- time (SemEval pairs carry no dates): a pair further apart than `TIME_FREE_HOURS` loses
  `TIME_PENALTY` log-odds per day beyond it (and the index never compares entries further
  apart than its window);
- numbers that disagree: when both titles carry numbers and neither title's numbers occur
  in the other entry ("68 evacuated" vs "120 evacuated"), `NUMBER_CLASH_PENALTY` log-odds.
  Few SemEval pairs have numbers in both titles (the fit gives the feature -0.35, barely
  measured); the rule is carried over from watcher/dedupe.py, where a clash costs half the
  score, and it is what tells a follow-up with new figures from a repeat.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from watcher.story import constants as fitted
from watcher.story.evidence import NAMES, Evidence, Rarity

if TYPE_CHECKING:
    import numpy as np
else:
    from watcher.lazy import numpy as np

FEATURES: tuple[str, ...] = (
    "lex",  # idf-weighted cosine of title+lead terms
    "title",  # the same on titles only
    "mass",  # log(1 + summed weight of shared terms)
    "names",  # weighted Dice of name keys (cross-script)
    "num_shared",  # shared numbers (>= 2 digits, not years), 0..1
    "num_clash",  # both titles have numbers and none in common
    "cross",  # languages differ
    "cos",  # cosine of language-centred embeddings (embedding model only)
    "cos_cross",  # cosine when languages differ (embedding model only)
)
LEXICAL: tuple[str, ...] = FEATURES[:7]
TIME_FREE_HOURS = 36.0
TIME_PENALTY = 0.5  # log-odds per day beyond TIME_FREE_HOURS
NUMBER_CLASH_PENALTY = 3.0  # log-odds when the titles' numbers disagree
WIDE_CLASH = True  # also when one title's figures are absent from the other entry's


def _weighted_cosine(
    a: frozenset[str], b: frozenset[str], lang_a: str, lang_b: str, rarity: Rarity
) -> tuple[float, float]:
    """(cosine, summed weight of shared terms) of two term sets."""
    if not a or not b:
        return 0.0, 0.0
    wa = {t: rarity.weight(lang_a, t) for t in a}
    wb = wa if a is b else {t: rarity.weight(lang_b, t) for t in b}
    shared = 0.0
    mass = 0.0
    for term in a & b:
        shared += wa[term] * wb[term]
        mass += min(wa[term], wb[term])
    norm = math.sqrt(sum(w * w for w in wa.values()) * sum(w * w for w in wb.values()))
    return (shared / norm if norm else 0.0), mass


def _names(a: Evidence, b: Evidence, rarity: Rarity) -> float:
    if not a.names or not b.names:
        return 0.0
    weight = {k: rarity.weight(NAMES, k) for k in a.names | b.names}
    total = sum(weight[k] for k in a.names) + sum(weight[k] for k in b.names)
    shared = sum(weight[k] for k in a.names & b.names)
    return 2 * shared / total if total else 0.0


def _centred(vector: np.ndarray, centre: np.ndarray | None) -> np.ndarray:
    if centre is None or len(centre) != len(vector):
        return vector
    moved = vector - centre
    norm = float(np.linalg.norm(moved))
    return moved / norm if norm else vector


def cosine(a: Evidence, b: Evidence, rarity: Rarity) -> float | None:
    """Cosine of the two embeddings, each centred on its language's mean vector."""
    if a.vector is None or b.vector is None:
        return None
    va = _centred(a.vector, rarity.centre(a.lang))
    vb = _centred(b.vector, rarity.centre(b.lang))
    return float(np.dot(va, vb))


def pair_features(a: Evidence, b: Evidence, rarity: Rarity) -> dict[str, float]:
    """The decision's inputs for a pair (the embedding ones only when both have vectors)."""
    lex, mass = _weighted_cosine(a.terms, b.terms, a.lang, b.lang, rarity)
    title, _ = _weighted_cosine(a.title_terms, b.title_terms, a.lang, b.lang, rarity)
    shared_numbers = len(a.numbers & b.numbers)
    clash = bool(
        a.title_numbers
        and b.title_numbers
        and not a.title_numbers & b.numbers
        and not b.title_numbers & a.numbers
    )
    cross = float(a.lang != b.lang)
    features = {
        "lex": lex,
        "title": title,
        "mass": math.log1p(mass),
        "names": _names(a, b, rarity),
        "num_shared": min(shared_numbers, 3) / 3,
        "num_clash": float(clash),
        "cross": cross,
    }
    cos = cosine(a, b, rarity)
    if cos is not None:
        features["cos"] = cos
        features["cos_cross"] = cos * cross
    return features


def logit(features: dict[str, float]) -> float:
    """Log-odds that the pair is one story (before the time prior)."""
    if "cos" in features:
        coef, bias = fitted.EMBEDDING_COEF, fitted.EMBEDDING_BIAS
    else:
        coef, bias = fitted.LEXICAL_COEF, fitted.LEXICAL_BIAS
    return bias + sum(coef[name] * features[name] for name in coef)


def figures_disagree(a: Evidence, b: Evidence) -> bool:
    """A title's figures are absent from the other entry, which gives figures of its own.

    Wider than the fitted `num_clash` (both titles carry numbers): "275 evacuated" against
    an entry whose title has no number but whose lead says 209 is a different day's update.
    """

    def one_way(x: Evidence, y: Evidence) -> bool:
        return bool(x.title_numbers and y.numbers and not x.title_numbers & y.numbers)

    return (one_way(a, b) or one_way(b, a)) and not (
        a.title_numbers & b.numbers or b.title_numbers & a.numbers
    )


def prior(features: dict[str, float], a: Evidence, b: Evidence) -> float:
    """Log-odds added for time apart and for numbers that disagree (not fitted)."""
    hours = abs((a.at - b.at).total_seconds()) / 3600
    time = -TIME_PENALTY * max(0.0, hours - TIME_FREE_HOURS) / 24
    clash = features["num_clash"] or (WIDE_CLASH and figures_disagree(a, b))
    return time - NUMBER_CLASH_PENALTY * float(clash)


def _probability(features: dict[str, float], a: Evidence, b: Evidence) -> float:
    z = logit(features) + prior(features, a, b)
    return 1.0 / (1.0 + math.exp(-max(-40.0, min(40.0, z))))


def probability(a: Evidence, b: Evidence, rarity: Rarity) -> float:
    """Calibrated probability that `a` and `b` report the same story."""
    return _probability(pair_features(a, b, rarity), a, b)


def threshold(features: dict[str, float], a: Evidence, b: Evidence) -> float:
    """The fitted threshold: per model, and for the embedding model per input (a pair where
    either entry is a title alone has its own, fitted on the title-only pairs)."""
    if "cos" not in features:
        return fitted.LEXICAL_THRESHOLD
    if not (a.has_lead and b.has_lead):
        return fitted.TITLE_THRESHOLD
    return fitted.THRESHOLD


def same_story(a: Evidence, b: Evidence, rarity: Rarity) -> tuple[bool, float]:
    """The decision: (same story?, probability) against the fitted threshold."""
    features = pair_features(a, b, rarity)
    p = _probability(features, a, b)
    return p >= threshold(features, a, b), p
