"""Command line: run, once, check, test, status, retry."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from watcher import __version__, logs
from watcher.config import DEFAULT_PATH, Config, ConfigError, load_config
from watcher.store import StoreError

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
    test.add_argument("sources", nargs="+", metavar="SOURCE", help="feed file, file:// or URL")
    sub.add_parser("status", parents=[common], help="feeds, topics, channels and the outbox")
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
    exp = feeds_sub.add_parser("export", parents=[common], help="write the feeds as OPML")
    exp.add_argument("-o", "--output", type=Path, default=None, help="file (default: stdout)")
    return parser


def _config_path(args: argparse.Namespace) -> Path:
    return Path(args.config or os.environ.get("WATCHER_CONFIG") or DEFAULT_PATH)


def _report_problems(problems: list[str]) -> int:
    print(f"watcher: the config has {len(problems)} problem(s):", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = _config_path(args)
    needs_secrets = args.command in {"run", "once", "check"}
    if args.command == "feeds":
        return _feeds(args, path)
    try:
        config = load_config(path, check_secrets=needs_secrets)
    except ConfigError as exc:
        return _report_problems(exc.problems)
    logs.setup_logging(args.log_level or config.watcher.log_level, args.log_format)
    if args.command == "check":
        if problems := asyncio.run(_channel_problems(config)):
            return _report_problems(problems)
        print(f"{path}: ok ({len(config.feeds)} feeds, {len(config.topics)} topics, "
              f"{len(config.channels)} channels)")
        return EXIT_OK
    try:
        return asyncio.run(_dispatch(args, config))
    except StoreError as exc:
        log.error("state store unavailable", extra={"reason": str(exc)})
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK


async def _channel_problems(config: Config) -> list[str]:
    """Build every channel's sender once, as the daemon will (catches bad service URLs)."""
    import aiohttp

    from watcher.notify.base import make_sender

    problems = []
    async with aiohttp.ClientSession() as session:
        for i, channel in enumerate(config.channels):
            try:
                sender = make_sender(channel, config.base_dir, session)
                await sender.aclose()
            except (ConfigError, ValueError) as exc:
                problems.append(f"{config.path}: channels[{i}]: {exc}")
    return problems


def _feeds(args: argparse.Namespace, path: Path) -> int:
    """`watcher feeds import|export`."""
    from watcher import opml

    try:
        config = load_config(path, check_secrets=False)
    except ConfigError as exc:
        return _report_problems(exc.problems)
    if args.feeds_command == "export":
        data = opml.export_opml(config.feeds)
        if args.output:
            args.output.write_bytes(data)
        else:
            sys.stdout.buffer.write(data)
        return EXIT_OK
    try:
        read = opml.read_opml(args.opml.read_bytes())
    except (OSError, opml.OpmlError) as exc:
        print(f"watcher feeds import: {args.opml}: {exc}", file=sys.stderr)
        return EXIT_USAGE
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
    if target.resolve() not in {p.resolve() for p in load_config(path, check_secrets=False).files}:
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


async def _dispatch(args: argparse.Namespace, config: Config) -> int:
    from watcher import report
    from watcher.daemon import Daemon, run_once

    if args.command == "run":
        return await Daemon(_config_path(args)).run()
    if args.command == "once":
        await run_once(config)
        return EXIT_OK
    if args.command == "test":
        return await report.test_sources(config, args.sources, as_json=args.json)
    if args.command == "status":
        return await report.status(config)
    if args.command == "retry":
        return await report.retry(config, args.channel)
    if args.command == "migrate-state":
        return await _migrate_state(config, args.to, args.force)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
