"""Fitted numbers of the same-story decision

Written by benchmarks/story_fit.py --write; do not edit by hand.
Fitted on 1048 SemEval-2022 Task 8 pairs (title+lead and title-only
rows); threshold: lowest with training precision >= 0.92, else 0.5
(TITLE_THRESHOLD: the same rule on the title-only rows).
"""

THRESHOLD = 0.8  # with embeddings
TITLE_THRESHOLD = 0.75  # with embeddings, either entry a title alone
LEXICAL_THRESHOLD = 0.5  # without
LEXICAL_BIAS = -2.7847
LEXICAL_COEF = {
    "lex": 0.5107,
    "title": 5.8486,
    "mass": 0.5448,
    "names": 2.3533,
    "num_shared": 1.2172,
    "num_clash": 0.0000,
    "cross": 1.0031,
}
EMBEDDING_BIAS = -4.2980
EMBEDDING_COEF = {
    "lex": 0.0000,
    "title": 0.0000,
    "mass": 0.0000,
    "names": 0.0000,
    "num_shared": 0.0000,
    "num_clash": -0.1782,
    "cross": -0.3642,
    "cos": 10.0721,
    "cos_cross": 2.8115,
}
