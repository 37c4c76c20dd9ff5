"""A local feed server for the benchmarks: nginx (Debian's binary), or an aiohttp fallback.

    python benchmarks/feedserver.py start [--root benchmarks/out/n1000] [--port 8089]
    python benchmarks/feedserver.py check      # conditional GET with gzip: 200, then 304
    python benchmarks/feedserver.py stop

From Python:

    with feed_server(root, port) as srv:       # nginx if installed, else aiohttp
        mark = srv.log_mark()
        ...                                    # poll http://127.0.0.1:<port>/feeds/...
        print(srv.statuses(mark))              # Counter({200: 100, 304: 900})

nginx runs as our own process tree (`nginx -c <workdir>/nginx.conf -p <workdir>`), with its
pid file, error log, access log and temp paths under <workdir> (benchmarks/out/nginx), on
127.0.0.1 only. It serves <root> (so <root>/feeds/feed-0000.xml is /feeds/feed-0000.xml)
with ETag, Last-Modified, gzip for XML, sendfile and keep-alive. Each request is one line
in access.log ("$msec $status $bytes $uri"), which is how scenarios count 304s.

The fallback (`serve-aiohttp`, run as a subprocess so it never shares the client's GIL)
mimics nginx: the same ETag form, weak under gzip, If-None-Match and If-Modified-Since
answered with 304, the same access-log lines.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH_DIR, OUT_DIR, log, tree_cpu_seconds

TEMPLATE = BENCH_DIR / "nginx.conf.template"
DEFAULT_PORT = 8089
DEFAULT_ROOT = OUT_DIR / "n1000"
DEFAULT_WORKDIR = OUT_DIR / "nginx"


def _wait_for_port(port: int, proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f} s")


def _port_in_use(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


class FeedServer:
    """What both servers share: the access log and the context-manager protocol."""

    name = "?"

    def __init__(self, root: Path, port: int, workdir: Path) -> None:
        self.root = root.resolve()
        self.port = port
        self.workdir = workdir.resolve()
        self.access_log = self.workdir / "access.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_mark(self) -> int:
        """The access log's current size: pass it to `statuses` after a scenario."""
        try:
            return self.access_log.stat().st_size
        except FileNotFoundError:
            return 0

    def statuses(self, mark: int = 0) -> Counter[int]:
        """HTTP status counts of the requests logged since `mark`."""
        counts: Counter[int] = Counter()
        with contextlib.suppress(FileNotFoundError), self.access_log.open("rb") as fh:
            fh.seek(mark)
            for line in fh:
                parts = line.split(b" ", 3)
                if len(parts) >= 2 and parts[1].isdigit():
                    counts[int(parts[1])] += 1
        return counts

    def cpu_seconds(self) -> float:
        """CPU used so far by the server's processes (when this process started it)."""
        return tree_cpu_seconds(self.proc.pid) if self.proc else 0.0

    def start(self, daemon: bool = False) -> None:
        """Start serving; `daemon`: keep running after this process exits (CLI `start`)."""
        raise NotImplementedError

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGQUIT if self.name == "nginx" else signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> FeedServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class NginxServer(FeedServer):
    """nginx serving `root` on 127.0.0.1:`port`, owned by this process (daemon off)."""

    name = "nginx"

    def __init__(self, root: Path, port: int, workdir: Path = DEFAULT_WORKDIR,
                 workers: int = 1, gzip_level: int = 1, hosts: int = 1) -> None:
        super().__init__(root, port, workdir)
        self.hosts = hosts  # listen on 127.0.0.1 .. 127.0.0.<hosts>
        self.workers = workers
        self.gzip_level = gzip_level
        self.conf = self.workdir / "nginx.conf"
        self.binary = shutil.which("nginx") or "/usr/sbin/nginx"

    @staticmethod
    def available() -> bool:
        return bool(shutil.which("nginx") or Path("/usr/sbin/nginx").exists())

    def render(self) -> Path:
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.workdir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
        # As root, workers would switch to "nobody", which may not read the corpus.
        user = "user root;" if os.geteuid() == 0 else "# (not root: no user directive)"
        text = TEMPLATE.read_text()
        for token, value in {"@USER@": user, "@WORKERS@": str(self.workers),
                             "@WORKDIR@": str(self.workdir), "@ROOT@": str(self.root),
                             "@LISTEN@": "\n        ".join(
                                 f"listen      127.0.0.{h}:{self.port} backlog=4096;"
                                 for h in range(1, self.hosts + 1)),
                             "@PORT@": str(self.port),
                             "@GZIP_LEVEL@": str(self.gzip_level)}.items():
            text = text.replace(token, value)
        self.conf.write_text(text)
        return self.conf

    def _cmd(self, *extra: str) -> list[str]:
        return [self.binary, "-c", str(self.conf), "-p", str(self.workdir),
                "-e", str(self.workdir / "error.log"), *extra]

    def start(self, daemon: bool = False) -> None:
        if _port_in_use(self.port):
            raise RuntimeError(f"127.0.0.1:{self.port} is already in use "
                               "(a server left running? try `feedserver.py stop`)")
        self.render()
        test = subprocess.run(self._cmd("-t", "-q"), capture_output=True, text=True)
        if test.returncode:
            raise RuntimeError(f"nginx rejects {self.conf}:\n{test.stderr}")
        if daemon:  # CLI `start`: nginx forks into the background, pid in nginx.pid
            subprocess.run(self._cmd(), check=True)
            _wait_for_port(self.port, None)
        else:
            self.proc = subprocess.Popen(self._cmd("-g", "daemon off;"))
            _wait_for_port(self.port, self.proc)

    def signal_daemon(self, action: str = "quit") -> bool:
        """Stop a server started by the CLI (reads <workdir>/nginx.pid)."""
        if not (self.workdir / "nginx.pid").exists():
            return False
        return subprocess.run(self._cmd("-s", action)).returncode == 0


class AiohttpServer(FeedServer):
    """The fallback: `feedserver.py serve-aiohttp` in a subprocess."""

    name = "aiohttp"

    def start(self, daemon: bool = False) -> None:
        if _port_in_use(self.port):
            raise RuntimeError(f"127.0.0.1:{self.port} is already in use")
        self.workdir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, __file__, "serve-aiohttp", "--root", str(self.root),
               "--port", str(self.port), "--workdir", str(self.workdir)]
        self.proc = subprocess.Popen(cmd, start_new_session=daemon)
        _wait_for_port(self.port, self.proc)
        if daemon:  # for `feedserver.py stop`
            (self.workdir / "aiohttp.pid").write_text(str(self.proc.pid))


def feed_server(root: Path, port: int = DEFAULT_PORT, workdir: Path = DEFAULT_WORKDIR,
                force_aiohttp: bool = False, hosts: int = 1) -> FeedServer:
    """nginx when it is installed, else the aiohttp fallback; says which.

    `hosts` > 1 (nginx only): also listen on 127.0.0.2 .. 127.0.0.<hosts>."""
    if hosts > 1 and (force_aiohttp or not NginxServer.available()):
        raise SystemExit("serving on several loopback hosts needs nginx: "
                         "apt-get install -y nginx-light")
    if not force_aiohttp and NginxServer.available():
        srv: FeedServer = NginxServer(root, port, workdir, hosts=hosts)
    else:
        srv = AiohttpServer(root, port, workdir)
    log(f"feed server: {srv.name} on {srv.url}, root {srv.root}")
    return srv


# --- the aiohttp fallback ----------------------------------------------------------------


def serve_aiohttp(root: Path, port: int, workdir: Path) -> None:
    from aiohttp import web

    root = root.resolve()
    logf = (workdir / "access.log").open("ab", buffering=0)
    cache: dict[tuple[Path, int, int], bytes] = {}  # gzip bodies by (path, mtime, size)

    def access(status: int, size: int, uri: str) -> None:
        logf.write(f"{time.time():.3f} {status} {size} {uri}\n".encode())

    async def handle(request: web.Request) -> web.StreamResponse:
        path = (root / request.path.lstrip("/")).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            access(404, 0, request.path_qs)
            return web.Response(status=404)
        st = path.stat()
        etag = f'"{int(st.st_mtime):x}-{st.st_size:x}"'  # nginx's form
        last_modified = formatdate(int(st.st_mtime), usegmt=True)
        gz = "gzip" in request.headers.get("Accept-Encoding", "")
        if gz:
            etag = "W/" + etag
        headers = {"ETag": etag, "Last-Modified": last_modified, "Vary": "Accept-Encoding",
                   "Content-Type": "text/xml"}
        inm = request.headers.get("If-None-Match")
        ims = request.headers.get("If-Modified-Since")
        fresh = False
        if inm is not None:
            tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
            fresh = "*" in tags or etag.removeprefix("W/") in tags
        elif ims is not None:
            with contextlib.suppress(TypeError, ValueError):
                fresh = parsedate_to_datetime(ims).timestamp() >= int(st.st_mtime)
        if fresh:
            access(304, 0, request.path_qs)
            return web.Response(status=304, headers=headers)
        body = path.read_bytes()
        if gz:
            key = (path, st.st_mtime_ns, st.st_size)
            if key not in cache:
                cache[key] = gzip.compress(body, compresslevel=1)
            body = cache[key]
            headers["Content-Encoding"] = "gzip"
        access(200, len(body), request.path_qs)
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None,
                backlog=4096, handle_signals=True)


# --- check: what a poller will see -------------------------------------------------------


def check(url: str) -> bool:
    """GET with gzip, then conditional GETs with the validators; True if all behave."""

    def get(headers: dict[str, str]) -> tuple[int, dict[str, str], int]:
        req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip", **headers})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status, dict(resp.headers), len(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), 0

    status, headers, size = get({})
    etag, lm = headers.get("ETag", ""), headers.get("Last-Modified", "")
    print(f"GET                      -> {status}, {size} bytes, "
          f"Content-Encoding: {headers.get('Content-Encoding', '-')}, ETag: {etag}, "
          f"Last-Modified: {lm}")
    results = [status == 200 and bool(etag) and bool(lm)]
    for label, cond in (("If-None-Match (as sent)", {"If-None-Match": etag}),
                        ("If-None-Match (strong)", {"If-None-Match": etag.removeprefix("W/")}),
                        ("If-Modified-Since", {"If-Modified-Since": lm}),
                        ("both", {"If-None-Match": etag, "If-Modified-Since": lm})):
        status, _, size = get(cond)
        print(f"{label:<24} -> {status}, {size} bytes")
        results.append(status == 304)
    ok = all(results)
    print("conditional GET with gzip: " + ("OK (304s served)" if ok else "FAILED"))
    return ok


# --- CLI ---------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=["start", "stop", "check", "serve-aiohttp"])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT,
                    help="folder holding feeds/ (default: %(default)s)")
    ap.add_argument("--port", type=int, default=DEFAULT_PORT)
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR,
                    help="conf, pid file, logs and temp paths (default: %(default)s)")
    ap.add_argument("--aiohttp", action="store_true", help="use the fallback even with nginx")
    args = ap.parse_args()

    if args.action == "serve-aiohttp":
        serve_aiohttp(args.root, args.port, args.workdir)
    elif args.action == "start":
        srv = feed_server(args.root, args.port, args.workdir, args.aiohttp)
        srv.start(daemon=True)
        srv.proc = None  # keep it running after this script exits
        log(f"started; stop with `python {Path(__file__).name} stop`")
    elif args.action == "stop":
        nginx = NginxServer(args.root, args.port, args.workdir)
        if nginx.available() and nginx.signal_daemon("quit"):
            log("nginx stopped")
        elif (pidfile := args.workdir / "aiohttp.pid").exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
            pidfile.unlink()
            log("aiohttp server stopped")
        else:
            log(f"no server to stop (no pid file in {args.workdir})")
    else:
        files = sorted((args.root / "feeds").glob("feed-*.xml"))
        if not files:
            raise SystemExit(f"no feeds in {args.root / 'feeds'}: run gen_feeds.py generate")
        url = f"http://127.0.0.1:{args.port}/feeds/{files[0].name}"
        if _port_in_use(args.port):
            sys.exit(0 if check(url) else 1)
        with feed_server(args.root, args.port, args.workdir, args.aiohttp):
            ok = check(url)
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
