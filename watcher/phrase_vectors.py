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
merged with the rows another process wrote meanwhile, the `MAX_PHRASES` most recently used
kept. A file that cannot be read is rebuilt, one that cannot be written is skipped: either
is logged at debug level and never fails a load.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
import tempfile
import time
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
# Bump when watcher changes how it turns a text into a vector (prefix, pooling,
# normalisation): every vector cached before is then made again.
EMBEDDING_CODE = "1"
STALE_TEMP = 3600.0  # seconds after which a writer's leftover temporary file is removed


def cache_dir() -> Path | None:
    """systemd's cache directory for the service, else the user's cache directory (None:
    no home to put it in)."""
    if systemd := os.environ.get("CACHE_DIRECTORY", ""):
        return Path(systemd.split(":")[0])
    if base := os.environ.get("XDG_CACHE_HOME", ""):
        return Path(base) / "watcher"
    try:
        return Path.home() / ".cache" / "watcher"
    except (RuntimeError, KeyError):  # no $HOME and no passwd entry for this user
        return None


class PhraseCache:
    """An `Embedder` that answers phrases it has seen from the cache file (see above)."""

    def __init__(self, model: Embedder, path: Path | None = None) -> None:
        self.model = model
        self.name, self.dim = model.name, model.dim
        if path is None and (folder := cache_dir()) is not None:
            path = folder / FILE_NAME
        self.path = path
        revision = getattr(model, "revision", "")
        self._salt = f"{EMBEDDING_CODE}\x1f{model.name}\x1f{revision}\x1f"
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
        if self._open and self._added and self.path is not None:
            self._write(self.path)
        self._open = False
        self._rows = {}

    def _key(self, text: str) -> bytes:
        return hashlib.sha256((self._salt + text).encode()).digest()[:16]

    def _read(self) -> dict[bytes, np.ndarray]:
        """The cached rows; {} when there are none or the file is not a cache of ours."""
        if self.path is None:
            return {}
        try:
            return self._rows_of(self._file_bytes(self.path))
        except FileNotFoundError:
            return {}
        except Exception as exc:  # a cache: whatever is wrong with it, it is made again
            log.debug("phrase vector cache unreadable; its phrases are embedded again",
                      extra={"path": str(self.path), "reason": f"{type(exc).__name__}: {exc}"})
            return {}

    def _most_bytes(self) -> int:
        return MAX_PHRASES * (16 + 4 * self.dim) + (1 << 16)

    def _file_bytes(self, path: Path) -> bytes:
        """The file's bytes: a regular file (not a link, FIFO or device) of a cache's size."""
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ValueError("not a regular file")
            if info.st_size > self._most_bytes():
                raise ValueError(f"{info.st_size} bytes, more than a cache holds")
            return fh.read(self._most_bytes() + 1)

    def _rows_of(self, blob: bytes) -> dict[bytes, np.ndarray]:
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            # a member inflating past a cache's size is refused before it is read
            if sum(i.file_size for i in data.zip.infolist()) > self._most_bytes():
                raise ValueError("members larger than a cache holds")
            keys, vectors = data["keys"], data["vectors"]
        if not (keys.dtype == np.uint8 and keys.ndim == 2 and keys.shape[1] == 16
                and vectors.dtype == np.float32 and vectors.shape == (len(keys), self.dim)
                and len(keys) <= MAX_PHRASES and bool(np.isfinite(vectors).all())):
            return {}  # another model's size or a foreign file: its rows cannot be ours
        return {key.tobytes(): vector for key, vector in zip(keys, vectors, strict=True)}

    def _write(self, path: Path) -> None:
        # rows another process wrote since we read (`watcher test` beside the daemon) are
        # kept, as older than ours
        rows = [(key, vector) for key, vector in self._read().items() if key not in self._rows]
        rows = (rows + list(self._rows.items()))[-MAX_PHRASES:]
        # raw digests as rows of 16 bytes ("S16" would drop a digest's trailing zero bytes)
        keys = np.frombuffer(b"".join(key for key, _ in rows), dtype=np.uint8).reshape(-1, 16)
        vectors = np.stack([vector for _, vector in rows]).astype(np.float32)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=".phrase-vectors.", suffix=".npz",
                                        dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    np.savez(fh, keys=keys, vectors=vectors)
                os.replace(temp, path)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
            _remove_stale_temps(path.parent)
        except OSError as exc:  # read-only home, full disk: the phrases are embedded again
            log.debug("phrase vector cache not written",
                      extra={"path": str(path), "reason": str(exc)})


def _remove_stale_temps(folder: Path) -> None:
    """Temporary files of writers killed before their rename."""
    cutoff = time.time() - STALE_TEMP
    for temp in folder.glob(".phrase-vectors.*.npz"):
        try:
            if temp.lstat().st_mtime < cutoff:
                temp.unlink()
        except OSError:
            continue
