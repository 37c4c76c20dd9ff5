"""Topic phrases' embeddings kept on disk, so a concept is embedded once per model.

A topic by meaning embeds its `about`, `like` and `unlike` texts when its rules compile: at
every daemon start and reload and at every `watcher test`, ~20 ms a phrase on 2 cores
(a config with 20 such topics of 8 phrases: ~3 s each time). `PhraseCache` wraps the model
while the rules compile: each phrase is looked up by a hash of the model's name and
revision and of the text, only the missing ones go to the model, and `close()` writes the
file back. After `close()` it passes texts straight to the model (an entry embedded later
through the compiled rules is not a phrase worth keeping).

The file is a cache: `phrase-vectors.npz` in systemd's `$CACHE_DIRECTORY`, else
`$XDG_CACHE_HOME/watcher` (default ~/.cache/watcher); NumPy arrays only (read without
pickle), written to a temporary file and renamed (two processes never leave half a file),
the `MAX_PHRASES` most recently used kept. A file that cannot be read is rebuilt, one that
cannot be written is skipped: either is logged at debug level and never fails a load.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from watcher.embed import Embedder
else:
    from watcher.lazy import numpy as np

log = logging.getLogger("watcher.poll")
FILE_NAME = "phrase-vectors.npz"
MAX_PHRASES = 4000  # 6 MB of vectors at 384 numbers; a config has hundreds at most


def cache_dir() -> Path:
    """systemd's cache directory for the service, else the user's cache directory."""
    if systemd := os.environ.get("CACHE_DIRECTORY", ""):
        return Path(systemd.split(":")[0])
    base = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(base) if base else Path.home() / ".cache") / "watcher"


class PhraseCache:
    """An `Embedder` that answers phrases it has seen from the cache file (see above)."""

    def __init__(self, model: Embedder, path: Path | None = None) -> None:
        self.model = model
        self.name, self.dim = model.name, model.dim
        self.path = path if path is not None else cache_dir() / FILE_NAME
        self._salt = f"{model.name}\x1f{getattr(model, 'revision', '')}\x1f"
        self._rows = self._read()
        self._added = False
        self._open = True

    def embed(self, texts: list[str]) -> np.ndarray:
        if not self._open:
            return self.model.embed(texts)
        keys = [self._key(text) for text in texts]
        missing = {key: text for key, text in zip(keys, texts, strict=True)
                   if key not in self._rows}
        if missing:
            vectors = np.asarray(self.model.embed(list(missing.values())), dtype=np.float32)
            self._rows.update(zip(missing, vectors, strict=True))
            self._added = True
        for key in keys:  # most recently used last: what `close` keeps
            self._rows[key] = self._rows.pop(key)
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._rows[key] for key in keys])

    def close(self) -> None:
        """Write the phrases back (if any were new); from now on texts go to the model."""
        if self._open and self._added:
            self._write()
        self._open = False
        self._rows = {}

    def _key(self, text: str) -> bytes:
        return hashlib.sha256((self._salt + text).encode()).digest()[:16]

    def _read(self) -> dict[bytes, np.ndarray]:
        try:
            with np.load(self.path, allow_pickle=False) as data:
                keys, vectors = data["keys"], data["vectors"]
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            # unreadable (damaged, foreign): rebuilt from the model
            log.debug("phrase vector cache unreadable; rebuilding it",
                      extra={"path": str(self.path), "reason": str(exc)})
            return {}
        if (keys.dtype != np.uint8 or keys.shape != (len(keys), 16)
                or vectors.dtype != np.float32 or vectors.shape != (len(keys), self.dim)):
            return {}  # another model's size or a foreign file: its rows cannot be ours
        return {key.tobytes(): vector for key, vector in zip(keys, vectors, strict=True)}

    def _write(self) -> None:
        rows = list(self._rows.items())[-MAX_PHRASES:]
        # raw digests as rows of 16 bytes ("S16" would drop a digest's trailing zero bytes)
        keys = np.frombuffer(b"".join(key for key, _ in rows), dtype=np.uint8).reshape(-1, 16)
        vectors = np.stack([vector for _, vector in rows]).astype(np.float32)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=".phrase-vectors.", suffix=".npz",
                                        dir=self.path.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    np.savez(fh, keys=keys, vectors=vectors)
                os.replace(temp, self.path)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
        except OSError as exc:  # read-only home, full disk: the phrases are embedded again
            log.debug("phrase vector cache not written",
                      extra={"path": str(self.path), "reason": str(exc)})
