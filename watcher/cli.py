"""Command line: run, once, check, test, status, alerts, retry, migrate-state, feeds."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from watcher import __version__, logs
from watcher.config import (
    DEFAULT_PATH,
    ChannelSettings,
    Config,
    ConfigError,
    load_config,
    parse_duration,
)
from watcher.model import ALERT_STATES
from watcher.store.base import StoreError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
log = logging.getLogger("watcher")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="watcher", description=(
        "Watch RSS/Atom feeds for topics and alert by email and webhook."))
    parser.add_argument("--version", action="version", version=f"watcher {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=None, help=(
        f"config file (default: $WATCHER_CONFIG or {DEFAULT_PATH})"))
    common.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                        default=None, help="log level (default: [watcher] log_level, or info)")
    common.add_argument("--log-format", choices=["plain", "json"], default="plain")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", parents=[common], help="the daemon: poll on schedule and alert")
    sub.add_parser("once", parents=[common], help="poll every feed once, deliver, exit")
    sub.add_parser("check", parents=[common], help="validate the config")
    test = sub.add_parser("test", parents=[common], help=(
        "match feed files/URLs against the topics; no state, no alerts"))
    test.add_argument("--json", action="store_true", help="one JSON object per match")
    test.add_argument("--near", action="store_true", help=(
        "also list near misses: entries just under a topic's threshold (see --near-points)"
        " and entries its `none` phrases dropped, with the phrase that dropped them"))
    test.add_argument("--near-points", type=_points, default=15.0, metavar="POINTS", help=(
        "how far under a threshold is near (default 15)"))
    test.add_argument("sources", nargs="+", metavar="SOURCE", help="feed file, file:// or URL")
    status = sub.add_parser("status", parents=[common], help=(
        "daemon, feeds, topics, channels and the outbox"))
    status.add_argument("--json", action="store_true", help="one JSON object")
    alerts = sub.add_parser("alerts", parents=[common], help=(
        "past alerts with their delivery state, newest first"))
    alerts.add_argument("--topic", default=None, help="only this topic's alerts")
    alerts.add_argument("--since", type=_since, default=None, metavar="AGE|DATE", help=(
        "only alerts this recent: a duration such as 1d or 6h, or a date 2025-02-24"))
    alerts.add_argument("--status", choices=ALERT_STATES, default=None, help=(
        "only alerts in this state (owed includes retrying)"))
    alerts.add_argument("--limit", type=int, default=500, help="at most this many (default 500)")
    alerts.add_argument("--json", action="store_true", help="one JSON object per alert")
    retry = sub.add_parser("retry", parents=[common], help="re-queue failed alerts")
    retry.add_argument("--channel", default=None, help="only this channel's failed alerts")
    migrate = sub.add_parser("migrate-state", parents=[common], help=(
        "copy the SQLite state into PostgreSQL (feeds, seen entries, stories, outbox)"))
    migrate.add_argument("--to", required=True, metavar="URL", help="postgresql://... URL")
    migrate.add_argument("--force", action="store_true", help=(
        "write into a database that already holds watcher state"))
    feeds = sub.add_parser("feeds", help="import or export the feed list as OPML")
    feeds_sub = feeds.add_subparsers(dest="feeds_command", required=True, metavar="ACTION")
    imp = feeds_sub.add_parser("import", parents=[common], help=(
        "add an OPML file's feeds to a feeds file the config includes"))
    imp.add_argument("opml", type=Path, metavar="FILE.opml")
    imp.add_argument("--to", type=Path, default=Path("feeds.d/imported.toml"), help=(
        "feeds file, relative to the config's folder (default: feeds.d/imported.toml)"))
    imp.add_argument("--allow-private", action="store_true", help=(
        "also import feeds on loopback, private or intranet hosts (skipped by default: "
        "a shared list could point the daemon at internal services)"))
    exp = feeds_sub.add_parser("export", parents=[common], help="write the feeds as OPML")
    exp.add_argument("-o", "--output", type=Path, default=None, help="file (default: stdout)")
    return parser


def _points(text: str) -> float:
    """`--near-points`: 0..100 score points."""
    try:
        points = float(text)
    except ValueError:
        points = -1.0
    if not 0.0 <= points <= 100.0:
        raise argparse.ArgumentTypeError(f"expected score points from 0 to 100, got {text!r}")
    return points


def _since(text: str) -> datetime:
    """`--since`: an age ('1d', '6h') or an ISO date/time (UTC unless it names a zone)."""
    try:
        return datetime.now(UTC) - parse_duration(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an age such as 1d or 6h, or a date such as 2025-02-24, got {text!r}"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _config_path(args: argparse.Namespace) -> Path:
    return Path(args.config or os.environ.get("WATCHER_CONFIG") or DEFAULT_PATH)


def _report_problems(problems: list[str]) -> int:
    print(f"watcher: the config has {len(problems)} problem(s):", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's final flush
        return code
    except BrokenPipeError:
        # `watcher test ... | head`: the reader left; stop quietly, as other tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's final flush must not fail
        return EXIT_FAILURE


READ_ONLY = {"status", "alerts", "retry"}  # never create a state file


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    path = _config_path(args)
    needs_secrets = args.command in {"run", "once", "check"}
    matches = args.command not in READ_ONLY  # read-only commands never compile the topics
    if args.command == "feeds":
        return _feeds(args, path)
    if args.command == "check":
        return _check(path)
    try:
        config = load_config(path, check_secrets=needs_secrets, check_phrases=matches)
    except ConfigError as exc:
        return _report_problems(exc.problems)
    logs.setup_logging(args.log_level or config.watcher.log_level, args.log_format)
    for warning in config.warnings:
        log.warning("config warning", extra={"problem": warning})
    try:
        return asyncio.run(_dispatch(args, config))
    except StoreError as exc:
        if args.command in READ_ONLY:
            print(f"watcher {args.command}: {exc}", file=sys.stderr)
            if hint := _state_hint(config):
                print(hint, file=sys.stderr)
        else:
            log.error("state store unavailable", extra={"reason": str(exc)})
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK


def _state_hint(config: Config) -> str:
    """Why a relative state file may be missing: the service keeps it elsewhere."""
    state = config.watcher.state
    if "://" in state or Path(state).is_absolute() or os.environ.get("STATE_DIRECTORY") \
            or Path(config.state_location()).exists():
        return ""
    return (f"note: [watcher] state = {state!r} is relative to {config.base_dir} here; under "
            "systemd it is relative to the service's state directory (/var/lib/watcher): set "
            "STATE_DIRECTORY=/var/lib/watcher for this command, or make state absolute")


def _check(path: Path) -> int:
    """`watcher check`: every problem in one pass, including what building each channel's
    sender finds (a bad service URL), and warnings; exit 0 or 2."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        untried = [(file, i, ch) for file, i, ch in exc.channels  # not already reported
                   if not any(p.startswith(f"{file}: channels[{i}]") for p in exc.problems)]
        problems = exc.problems + asyncio.run(_channel_problems(untried, path.parent))
        _print_warnings(exc.warnings)
        return _report_problems(problems)
    _print_warnings(list(config.warnings))
    channels = [(*config.channel_origins[ch.name], ch) for ch in config.channels]
    if problems := asyncio.run(_channel_problems(channels, config.base_dir)):
        return _report_problems(problems)
    print(f"{path}: ok ({len(config.feeds)} feeds, {len(config.topics)} topics, "
          f"{len(config.channels)} channels)")
    return EXIT_OK


def _print_warnings(warnings: list[str]) -> None:
    for warning in warnings:
        print(f"watcher: warning: {warning}", file=sys.stderr)


async def _channel_problems(channels: list[tuple[Path, int, ChannelSettings]],
                            base_dir: Path) -> list[str]:
    """Build every channel's sender once, as the daemon will (catches bad service URLs);
    without an HTTP session: nothing is sent."""
    from watcher.notify.base import make_sender

    problems = []
    for file, i, channel in channels:
        try:
            sender = make_sender(channel, base_dir, None)
            await sender.aclose()
        except (ConfigError, ValueError) as exc:
            problems.append(f"{file}: channels[{i}]: {exc}")
    return problems


def _feeds(args: argparse.Namespace, path: Path) -> int:
    """`watcher feeds import|export`."""
    from watcher.reader import opml
    from watcher.reader.import_guard import resolving_private

    try:
        config = load_config(path, check_secrets=False, check_phrases=False)
    except ConfigError as exc:
        return _report_problems(exc.problems)
    if args.feeds_command == "export":
        data = opml.export_opml(config.feeds)
        if args.output:
            args.output.write_bytes(data)
        else:
            sys.stdout.buffer.write(data)
        local = [f.url for f in config.feeds if not opml.exportable(f.url)]
        if local:  # on stderr: stdout may be the OPML file itself
            print(f"watcher feeds export: {len(local)} feed(s) left out, no other reader could"
                  f" poll them: {', '.join(local[:3])}{' ...' if len(local) > 3 else ''}",
                  file=sys.stderr)
        return EXIT_OK
    try:
        read = opml.read_opml(args.opml.read_bytes(), allow_private=args.allow_private)
    except (OSError, opml.OpmlError) as exc:
        print(f"watcher feeds import: {args.opml}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.allow_private:
        read.feeds, resolved_private = resolving_private(read.feeds)
        read.skipped += resolved_private
    target = config.base_dir / args.to
    try:
        added, skipped = opml.merge_into_feeds_file(target, read.feeds,
                                                    [f.url for f in config.feeds])
    except opml.OpmlError as exc:
        print(f"watcher feeds import: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{target}: added {len(added)} feed(s); {len(skipped)} already watched")
    for url, reason in read.skipped:
        print(f"  skipped {url}: {reason}")
    again = load_config(path, check_secrets=False, check_phrases=False)
    if target.resolve() not in {p.resolve() for p in again.files}:
        print(f"note: {config.path} does not include {args.to}; add "
              f'include = ["{args.to.parent}/*.toml"] at its top', file=sys.stderr)
    return EXIT_OK


async def _migrate_state(config: Config, url: str, force: bool) -> int:
    from watcher.store import is_postgres
    from watcher.store.migrate import migrate_state

    source = config.state_location()
    if is_postgres(source):
        print(f"watcher migrate-state: {config.path}: state is already {source.split('@')[-1]}",
              file=sys.stderr)
        return EXIT_USAGE
    counts = await migrate_state(source, url, password_env=config.watcher.state_password_env,
                                 force=force, progress=lambda table, n: print(
                                     f"  {table}: {n}", file=sys.stderr))
    print("copied " + ", ".join(f"{n} {table}" for table, n in counts.items()))
    print(f"now set [watcher] state = {url!r} in {config.path} and start the nodes")
    return EXIT_OK


async def _once(config: Config, run_once: Callable[[Config], Awaitable[int]]) -> int:
    """`watcher once`; exit 1, with a one-line summary, when every delivery it attempted
    failed for good (nothing delivered, something newly failed)."""
    from watcher.store import open_config_store

    async def counts() -> tuple[int, int]:
        store = await open_config_store(config)
        try:
            by_channel = (await store.channel_counts()).values()
        finally:
            await store.close()
        return sum(c.delivered for c in by_channel), sum(c.failed for c in by_channel)

    delivered_before, failed_before = await counts()
    owed = await run_once(config)
    delivered_after, failed_after = await counts()
    delivered, failed = delivered_after - delivered_before, failed_after - failed_before
    if failed and not delivered:
        print(f"watcher once: all {failed} delivery attempt(s) failed permanently"
              f"{f', {owed} alert(s) still owed' if owed else ''}; see "
              "`watcher alerts --status failed`, then `watcher retry`", file=sys.stderr)
        return EXIT_FAILURE
    if failed:
        print(f"watcher once: delivered {delivered}, {failed} failed permanently; see "
              "`watcher alerts --status failed`", file=sys.stderr)
    return EXIT_OK


async def _dispatch(args: argparse.Namespace, config: Config) -> int:
    """The command; each imports only what it uses (start-up time of the short ones)."""
    if args.command in ("run", "once"):
        from watcher.daemon import Daemon, run_once

        if args.command == "run":
            return await Daemon(_config_path(args)).run()
        return await _once(config, run_once)
    from watcher import report

    if args.command == "test":
        return await report.test_sources(config, args.sources, as_json=args.json,
                                         near=args.near_points if args.near else None)
    if args.command == "status":
        return await report.status(config, as_json=args.json)
    if args.command == "alerts":
        return await report.alerts(config, topic=args.topic, since=args.since,
                                   state=args.status, limit=args.limit, as_json=args.json)
    if args.command == "retry":
        return await report.retry(config, args.channel)
    if args.command == "migrate-state":
        return await _migrate_state(config, args.to, args.force)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
