"""Start-up time of the one-shot commands: `check`, `status`, `once`, `test` (issue 19).

Each command runs as a user runs it (`python -m watcher ...`, a fresh interpreter each
time) on the shipped offline demo (config/demo.toml and its feeds, copied to a temporary
folder so the state file lands there; `check` also on config/watcher.toml). `once` runs on
a state primed by one untimed `once`, so it measures start-up plus a round of unchanged
feeds; `test` matches one demo feed (parse, match, story placement), once as the demo is
(its topics' concepts load the embedding model) and once with the concepts taken out and
`embedding = "none"` (what a config on words alone starts). Wall time is the
median of --repeat runs (beside the median CPU time of the process tree, which other jobs on
a shared machine inflate less). Then, per command, `python -X importtime` names the imports that
cost the most (cumulative, top-level only: what watcher's own modules pull in), calling the
CLI directly rather than through `watcher.launch`, whose aiohttp import thread would
interleave the report.
watcher's own modules are compiled to bytecode first, as `pip install` does; this machine
sets PYTHONDONTWRITEBYTECODE=1, under which an editable checkout recompiles its ~90 modules
on every run (`--no-bytecode` measures that).

    .venv/bin/python benchmarks/startup.py            # table + top imports
    .venv/bin/python benchmarks/startup.py --repeat 9 --top 15

Writes benchmarks/out/startup.json. Nothing here needs the network.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import tomli_w
from common import OUT_DIR, REPO_DIR, machine_busy_seconds, wait_for_idle

PYTHON = REPO_DIR / ".venv" / "bin" / "python"
CLI_DIRECT = "import sys; from watcher.cli import main; sys.exit(main(sys.argv[1:]))"
BYTECODE_CACHED = True  # --no-bytecode: recompile watcher's modules on every run


def compile_bytecode(trees: list[str]) -> None:
    """What pip does at install: each watcher package's modules compiled to bytecode (a
    checkout run with PYTHONDONTWRITEBYTECODE=1 otherwise recompiles ~90 modules per run)."""
    for tree in trees:
        package = Path(tree or REPO_DIR) / "watcher"
        subprocess.run([str(PYTHON), "-m", "compileall", "-q", str(package)], check=True)


def commands(demo: Path) -> dict[str, list[str]]:
    config = str(demo / "demo.toml")
    return {
        "check (watcher.toml)": ["check", "--config", str(REPO_DIR / "config" / "watcher.toml")],
        "check (demo)": ["check", "--config", config],
        "status": ["status", "--config", config],
        "once (unchanged)": ["once", "--config", config],
        "test (one feed)": ["test", "--config", config, str(demo / "demo" / "feeds" / "wire.xml")],
        "test (one feed, words only)": ["test", "--config", str(demo / "words.toml"),
                                        str(demo / "demo" / "feeds" / "wire.xml")],
    }


def words_only(config: Path) -> Path:
    """`config` without its topics' concepts and with `embedding = "none"`: no model."""
    data = tomllib.loads(config.read_text())
    data["watcher"]["embedding"] = "none"
    for topic in data.get("topics", []):
        for key in ("about", "like", "unlike", "about_threshold"):
            topic.pop(key, None)
    out = config.with_name("words.toml")
    out.write_text(tomli_w.dumps(data))
    return out


def run(args: list[str], *, importtime: bool = False, tree: str = "") -> tuple[float, str]:
    """Wall seconds of `python -m watcher ARGS`, and its stderr; fails loudly. (Its CPU
    time shows in _children_cpu.)"""
    # -X importtime runs the CLI without watcher.launch: its import thread would interleave
    # the report (the import nesting it prints is one counter for all threads)
    entry = ["-X", "importtime", "-c", CLI_DIRECT] if importtime else ["-m", "watcher"]
    cmd = [str(PYTHON), *entry, *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("WATCHER_CONFIG", None)
    if BYTECODE_CACHED:  # as an installed package runs: its bytecode compiled at install
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    if tree:  # another build's watcher package (a folder holding watcher/)
        env["PYTHONPATH"] = tree
    started = time.perf_counter()
    # `python -m` puts the working folder first on sys.path: the tree's, or the repository's
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tree or REPO_DIR)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return wall, proc.stderr


def top_imports(stderr: str, top: int) -> list[tuple[str, float]]:
    """(module, cumulative ms) of the costliest imports at the outermost level."""
    rows: list[tuple[str, float]] = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (part.strip() for part in line[12:].split("|"))
        indent = len(line.split("|")[2]) - len(line.split("|")[2].lstrip())
        if indent <= 1:  # imported by the command itself, not as part of another import
            rows.append((name.strip(), int(cumulative) / 1000))
    return sorted(rows, key=lambda r: -r[1])[:top]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def prepare(tmp: Path) -> Path:
    """The demo config and its feeds in `tmp`, with a primed state (one `once`)."""
    shutil.copy(REPO_DIR / "config" / "demo.toml", tmp / "demo.toml")
    shutil.copytree(REPO_DIR / "config" / "demo", tmp / "demo")
    run(["once", "--config", str(tmp / "demo.toml")])
    run(["check", "--config", str(words_only(tmp / "demo.toml"))])
    return tmp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per command (median)")
    parser.add_argument("--top", type=int, default=10, help="import entries per command")
    parser.add_argument("--only", default="", help="only commands whose name contains this")
    parser.add_argument("--tree", action="append", default=[], metavar="DIR", help=(
        "also measure the watcher package in DIR (e.g. `git archive REV watcher | tar -x -C "
        "DIR`), interleaved with this one's runs, for a before/after table"))
    parser.add_argument("--no-bytecode", action="store_true", help=(
        "do not compile watcher's bytecode first and keep PYTHONDONTWRITEBYTECODE: every run "
        "compiles the package's modules from source (an editable checkout on such a machine)"))
    args = parser.parse_args()
    global BYTECODE_CACHED
    BYTECODE_CACHED = not args.no_bytecode
    results: dict[str, dict[str, object]] = {}
    trees = ["", *args.tree]
    if BYTECODE_CACHED:
        compile_bytecode(trees)
    with tempfile.TemporaryDirectory(prefix="watcher-startup-") as folder:
        demo = prepare(Path(folder))
        wait_for_idle(60)
        busy_before, own_before = machine_busy_seconds(), _children_cpu()
        for name, argv in commands(demo).items():
            if args.only and args.only not in name:
                continue
            walls: dict[str, list[float]] = {t: [] for t in trees}
            cpus: dict[str, list[float]] = {t: [] for t in trees}
            for _ in range(args.repeat):
                for tree in trees:  # interleaved: the machine's load hits each build alike
                    cpu = _children_cpu()
                    walls[tree].append(run(argv, tree=tree)[0])
                    cpus[tree].append(_children_cpu() - cpu)
            for tree in trees:
                _, stderr = run(argv, importtime=True, tree=tree)
                results[f"{name} [{tree or 'this'}]" if args.tree else name] = {
                    "median_ms": round(statistics.median(walls[tree]) * 1000),
                    "cpu_ms": round(statistics.median(cpus[tree]) * 1000),
                    "min_ms": round(min(walls[tree]) * 1000),
                    "max_ms": round(max(walls[tree]) * 1000),
                    "top_imports_ms": top_imports(stderr, args.top)}
        others = machine_busy_seconds() - busy_before - (_children_cpu() - own_before)
    width = max(len(n) for n in results) + 1
    print(f"{'command':<{width}} {'median ms':>9} {'min':>6} {'max':>6} {'cpu ms':>7}")
    for name, r in results.items():
        print(f"{name:<{width}} {r['median_ms']:>9} {r['min_ms']:>6} {r['max_ms']:>6} "
              f"{r['cpu_ms']:>7}")
    print(f"(python {sys.version.split()[0]}; bytecode "
          f"{'compiled first, as installed' if BYTECODE_CACHED else 'compiled on every run'}; "
          f"{args.repeat} runs each; CPU busy elsewhere "
          f"on the machine meanwhile: {others:.1f} s)")
    for name, r in results.items():
        print(f"\ntop imports, {name} (cumulative ms, -X importtime, one run):")
        for module, ms in r["top_imports_ms"]:  # type: ignore[attr-defined]
            print(f"  {ms:8.1f}  {module}")
    OUT_DIR.mkdir(exist_ok=True)
    (OUT_DIR / "startup.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
