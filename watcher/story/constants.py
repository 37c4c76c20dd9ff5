"""Fitted numbers of the same-story decision (written by benchmarks/story_fit.py --write)."""

THRESHOLD = 0.5
LEXICAL_BIAS = -4.0
LEXICAL_COEF = {
    "lex": 4.0,
    "title": 2.0,
    "mass": 1.0,
    "names": 2.0,
    "num_shared": 1.0,
    "num_clash": -2.0,
    "cross": 0.0,
}
EMBEDDING_BIAS = -20.0
EMBEDDING_COEF = {
    "lex": 4.0,
    "title": 2.0,
    "mass": 1.0,
    "names": 2.0,
    "num_shared": 1.0,
    "num_clash": -2.0,
    "cross": 0.0,
    "cos": 20.0,
    "cos_cross": 0.0,
}
