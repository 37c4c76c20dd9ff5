"""The `watcher` command's entry point: the CLI, started and ended cheaply.

- Importing aiohttp builds two TLS contexts, loading the system's certificate store twice
  (~35 ms of OpenSSL work that runs without the GIL). The commands that poll start that
  import in a thread before the CLI imports and validates the config, so the two overlap
  (`test` only when a source is a URL: it reads feed files without aiohttp).
- The garbage collector is paused while the modules load (they allocate ~50,000 objects
  that live as long as the process, which it would otherwise walk again and again), and
  what they made is then frozen out of its sight.
- At exit the interpreter's last collections would walk every object left (~40 ms for a
  one-shot command); freezing them first skips that. Exit handlers still run: logs are
  flushed and the store was closed by the command itself.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import threading

POLLING_COMMANDS = frozenset({"run", "once", "test"})


def _import_http_client() -> None:
    # a failure shows where the CLI imports aiohttp itself, with the usual message
    with contextlib.suppress(ImportError):
        import aiohttp  # noqa: F401


def start_http_client_import(args: list[str]) -> threading.Thread | None:
    """Import aiohttp in a daemon thread when the command (args[0]) will poll feeds."""
    if not args or args[0] not in POLLING_COMMANDS or "aiohttp" in sys.modules:
        return None
    if args[0] == "test" and not any(a.lower().startswith(("http://", "https://"))
                                     for a in args[1:]):
        return None  # `test` reads feed files without an HTTP client
    thread = threading.Thread(target=_import_http_client, name="import-aiohttp", daemon=True)
    thread.start()
    return thread


def main() -> int:
    importing = start_http_client_import(sys.argv[1:])
    try:
        gc.disable()
        try:
            from watcher.cli import main as cli_main
        finally:
            gc.enable()
        gc.freeze()  # the modules and what they built live until exit
        code = cli_main()
        gc.freeze()  # exiting: the final collections need not walk what is left
        return code
    finally:
        # A command that ends early (a bad config) must not leave the interpreter to shut
        # down under a thread that is still importing: that can crash it (SIGSEGV).
        if importing is not None:
            importing.join()
