"""Modules imported at their first use, to keep start-up cheap.

`numpy` here is numpy, imported when code first reads one of its attributes: the story
engine and the matcher's decisions name it everywhere, but a command or round in which no
entry carries a vector (a config on words alone, a round of unchanged feeds) never needs
it, and importing it costs ~60 ms of a one-shot command's start (issue 19). Modules use
it as `np` under `if not TYPE_CHECKING` so type checkers still see numpy itself.
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class LazyModule(types.ModuleType):
    """Stands for a module until an attribute is read; then imports it and takes over its
    namespace, so later reads are plain attribute lookups."""

    def __getattr__(self, attribute: str) -> Any:
        module = importlib.import_module(self.__name__)
        self.__dict__.update(module.__dict__)
        return getattr(module, attribute)


numpy = LazyModule("numpy")
