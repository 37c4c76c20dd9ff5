"""Moved to watcher.matching.text; kept while watcher/story (being written elsewhere)
imports it from here."""

from watcher.matching.text import STOPWORDS, match_form, normalise, tokenize

__all__ = ["STOPWORDS", "match_form", "normalise", "tokenize"]
