"""Fitted numbers of the same-story decision (written by benchmarks/story_fit.py --write).

Fitted on 1048 SemEval-2022 Task 8 pairs (title+lead and title-only rows); threshold: lowest with training precision >= 0.92.
"""

THRESHOLD = 0.8  # with embeddings
LEXICAL_THRESHOLD = 0.95  # without
LEXICAL_BIAS = -2.7792
LEXICAL_COEF = {
    "lex": 0.5463,
    "title": 5.9463,
    "mass": 0.5353,
    "names": 2.3248,
    "num_shared": 0.9882,
    "num_clash": -0.1449,
    "cross": 0.9986,
}
EMBEDDING_BIAS = -4.2872
EMBEDDING_COEF = {
    "lex": 0.0000,
    "title": 0.0000,
    "mass": 0.0000,
    "names": 0.0000,
    "num_shared": 0.0000,
    "num_clash": -0.3465,
    "cross": -0.3708,
    "cos": 10.0659,
    "cos_cross": 2.8220,
}
