"""The daemon's config reloads: on SIGHUP or when the config or an included file changes.

A reload is all or nothing: a config that does not load (`ConfigError`) or a store that
fails while it is applied leaves the daemon running on the previous config, whole; a
reload that failed on the store is tried again after `RELOAD_RETRY`. The file watcher
debounces editors' saves, catches up on edits made before it watched, and does not retry
an edit already rejected. systemd hears RELOADING, then READY, whatever happened.
`ConfigReload` is mixed into `watcher.daemon.Daemon`, which sets the attributes declared
on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from watcher import metrics, sdnotify
from watcher.config import Config, ConfigError, load_config
from watcher.daemon_poll import collect_everything
from watcher.store import StoreError

if TYPE_CHECKING:
    from watcher.desk import Desk
    from watcher.runtime import Runtime

# The daemon's own logger name, whichever of its modules logs (the name is in every
# record and the log settings go by it).
log = logging.getLogger("watcher.daemon")
RELOAD_RETRY = 5.0  # seconds before a reload that failed on the store is tried again


def _return_freed_memory() -> None:
    """After a reload, two configs' worth of objects were alive and one is garbage (about
    30 MB at 50,000 feeds): collect it and give the allocator's free pages back to the
    system (glibc's malloc_trim; elsewhere only the collection), or the daemon keeps the
    reload's peak for good. What the daemon froze at start is collected too, the old config
    among it."""
    collect_everything()
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim
    except (ImportError, OSError, AttributeError):  # no ctypes, or not glibc: nothing to trim
        return
    trim(0)


class ConfigReload:
    """The reloading half of `Daemon`: `reload` and the config file watcher."""

    # set by Daemon.__init__
    config_path: Path
    runtime: Runtime | None
    stop_event: asyncio.Event
    desk: Desk | None
    _reload_lock: asyncio.Lock
    _reload_stalled: bool
    _rejected: tuple[tuple[str, int, int], ...] | None

    async def reload(self, why: str) -> bool:
        """Load and apply the config again; on errors keep running on the old one, whole.

        systemd always hears READY after RELOADING, whatever happened."""
        assert self.runtime is not None
        async with self._reload_lock:
            old = self.runtime.config
            sdnotify.reloading()
            ok = False
            try:
                new = load_config(self.config_path)
                if new.fingerprint != old.fingerprint:
                    await self.runtime.apply(new)
                ok = True
            except ConfigError as exc:
                self._rejected = self._files_stamp()
                for problem in exc.problems:
                    log.error(
                        "config reload rejected, still running on the previous config",
                        extra={"problem": problem, "trigger": why},
                    )
            except StoreError as exc:
                self._reload_stalled = True
                log.error(
                    "config reload failed: the state store is unavailable; still "
                    "running on the previous config, the reload is retried",
                    extra={"reason": str(exc), "trigger": why},
                )
            finally:
                feeds = len(self.runtime.config.feeds)
                sdnotify.ready(f"polling {feeds} feeds" + ("" if ok else " (reload failed)"))
            metrics.count_reload(ok=ok)
            if not ok:
                return False
            self._reload_stalled, self._rejected = False, None
            self._reload_desk(old, new)
            metrics.set_feeds(len(new.feeds))
            before, after = {f.url for f in old.feeds}, {f.url for f in new.feeds}
            changed = new.fingerprint != old.fingerprint
            # a SIGHUP is someone asking: they hear back either way
            log.log(
                logging.INFO if changed or why == "SIGHUP" else logging.DEBUG,
                "config reloaded" if changed else "config unchanged",
                extra={
                    "trigger": why,
                    "feeds": len(new.feeds),
                    "topics": len(new.topics),
                    "added": len(after - before),
                    "removed": len(before - after),
                },
            )
            return True

    def _reload_desk(self, old: Config, new: Config) -> None:
        from watcher.desk import DeskError

        if self.desk is not None:
            try:
                self.desk.reload(new)
            except DeskError as exc:
                log.error("desk: keeping the previous token", extra={"reason": str(exc)})
        if new.watcher.web != old.watcher.web:
            log.warning("[watcher] web changes take effect after a restart")

    async def _reload_guarded(self, why: str) -> bool:
        """reload() for the signal handler and the file watcher: nothing ends them."""
        try:
            return await self.reload(why)
        except Exception:
            log.exception(
                "config reload crashed; still running on the previous config",
                extra={"trigger": why},
            )
            return False
        finally:
            _return_freed_memory()

    def _files_stamp(self) -> tuple[tuple[str, int, int], ...]:
        """(path, mtime, size) of the config's files and of what its includes would add."""
        assert self.runtime is not None
        config = self.runtime.config
        paths = {p.resolve() for p in config.files}
        for pattern in config.include_patterns():
            paths |= {p.resolve() for p in Path("/").glob(str(pattern).lstrip("/"))}
        stamp = []
        for path in sorted(paths):
            with contextlib.suppress(OSError):
                st = path.stat()
                stamp.append((str(path), st.st_mtime_ns, st.st_size))
        return tuple(stamp)

    async def _watch_config(self) -> None:
        """Reload when the config or an included file changes (editors' saves debounced)."""
        from watchfiles import awatch

        assert self.runtime is not None
        logging.getLogger("watchfiles").setLevel(logging.WARNING)
        while not self.stop_event.is_set():
            config = self.runtime.config
            files = {p.resolve() for p in config.files}
            patterns = [str(p) for p in config.include_patterns()]

            def relevant(
                _: object, path: str, files: set[Path] = files, patterns: list[str] = patterns
            ) -> bool:
                """Our files, and any file an include pattern would add."""
                resolved = Path(path).resolve()
                return resolved in files or any(
                    fnmatch.fnmatch(str(resolved), pattern) for pattern in patterns
                )

            folders = {p.parent for p in files} | {
                Path(p).parent for p in patterns if Path(p).parent.is_dir()
            }
            watching = False
            async for changes in awatch(
                *folders,
                debounce=800,
                step=100,
                watch_filter=relevant,
                stop_event=self.stop_event,
                recursive=False,
                yield_on_timeout=True,
                rust_timeout=1000,
            ):
                if changes or not watching:  # the first timeout: now watching, catch up
                    if not watching:
                        log.debug(
                            "watching the config files for edits", extra={"folders": len(folders)}
                        )
                    watching = True
                    if changes or self._config_changed_on_disk():
                        await self._reload_guarded("file change")
                        if self._reload_stalled:  # the store is away: try again later
                            with contextlib.suppress(TimeoutError):
                                async with asyncio.timeout(RELOAD_RETRY):
                                    await self.stop_event.wait()
                        break

    def _config_changed_on_disk(self) -> bool:
        """Whether the files differ from the loaded config (edits made before we watched)."""
        assert self.runtime is not None
        if self._rejected is not None and self._rejected == self._files_stamp():
            return False  # the edit already rejected: wait for the next one
        if self._same_bytes(self.runtime.config):
            return False  # not parsed again (50,000 feeds: seconds, and a second copy)
        try:
            return load_config(self.config_path).fingerprint != self.runtime.config.fingerprint
        except ConfigError:
            return True  # reload() reports the problems

    @staticmethod
    def _same_bytes(config: Config) -> bool:
        """Whether the config's files hold what was loaded (its fingerprint is the hash of
        their bytes, in order) and no new file matches an include pattern."""
        digest = hashlib.sha256()
        try:
            for path in config.files:
                digest.update(path.read_bytes())
        except OSError:
            return False
        loaded = {p.resolve() for p in config.files}
        for pattern in config.include_patterns():
            if any(
                p.resolve() not in loaded
                for p in Path("/").glob(str(pattern).lstrip("/"))
                if p.is_file()
            ):
                return False
        return digest.hexdigest() == config.fingerprint
