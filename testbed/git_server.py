"""A real git smart-HTTP server for tests.

Serves bare repositories below ``root`` through ``git http-backend`` (CGI), on 127.0.0.1 and an
ephemeral port, from a background thread. Both fetch (upload-pack, protocol v0 and v2) and push
(receive-pack) work, so tests exercise the same code paths as a real git host.

Typical use::

    with GitServer() as server:
        repo = server.create_repo("app")
        sha = repo.commit({"Dockerfile": "FROM scratch\\n"}, "initial")
        clone_or_fetch(repo.url, sha)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import IO, Self

TEST_EMAIL = "test@example.com"


def _git_env(**extra: str) -> dict[str, str]:
    """Environment for git subprocesses, isolated from the user's/system git configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull, GIT_TERMINAL_PROMPT="0")
    env.update(extra)
    return env


def _git(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run ``git *args`` in ``cwd``; return stripped stdout, raise CalledProcessError on failure."""
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=env or _git_env(),
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout.strip()


class GitRepo:
    """A bare repo served by a :class:`GitServer`, plus a private working clone for commits."""

    def __init__(self, name: str, bare: Path, work: Path, url: str, default_branch: str) -> None:
        self.name = name
        self.bare = bare  # <root>/<name>.git
        self.work = work  # working clone (origin = bare repo path) used only by commit()
        self.url = url  # http://127.0.0.1:PORT/<name>.git
        self.default_branch = default_branch
        self._lock = threading.Lock()  # commits share one working tree

    def commit(
        self,
        files: dict[str, str],
        message: str,
        author: str = "Test Author",
        branch: str | None = None,
    ) -> str:
        """Write ``files`` (path -> content), commit them on ``branch`` and push to the bare repo.

        A branch not yet in the bare repo starts from the default branch's tip (or as an orphan
        when the repository is still empty). Returns the new commit's full 40-char sha.
        """
        branch = branch or self.default_branch
        env = _git_env(
            GIT_AUTHOR_NAME=author,
            GIT_AUTHOR_EMAIL=TEST_EMAIL,
            GIT_COMMITTER_NAME=author,
            GIT_COMMITTER_EMAIL=TEST_EMAIL,
        )
        with self._lock:
            # Sync with the bare repo first: tests may also push to it over HTTP.
            _git("fetch", "-q", "--prune", "origin", cwd=self.work)
            remotes = _git("branch", "-r", "--format=%(refname:lstrip=3)", cwd=self.work).split()
            if branch in remotes:
                _git("checkout", "-q", "-B", branch, f"origin/{branch}", cwd=self.work)
            elif self.default_branch in remotes:
                _git("checkout", "-q", "-B", branch, f"origin/{self.default_branch}", cwd=self.work)
            else:
                _git("checkout", "-q", "--orphan", branch, cwd=self.work)
            for rel, content in files.items():
                path = self.work / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
            _git("add", "-A", cwd=self.work)
            _git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work, env=env)
            _git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=self.work)
            return _git("rev-parse", "HEAD", cwd=self.work)

    def head(self, branch: str | None = None) -> str:
        """Full sha of ``branch`` (default branch if None) as stored in the bare repo."""
        ref = f"refs/heads/{branch or self.default_branch}"
        return _git("rev-parse", "--verify", ref, cwd=self.bare)


class _Server(ThreadingHTTPServer):
    """HTTP server carrying the repository root; quiet about clients hanging up."""

    daemon_threads = True

    def __init__(self, root: Path, fetch_delay: float) -> None:
        super().__init__(("127.0.0.1", 0), _CgiHandler)
        self.root = root
        self.fetch_delay = fetch_delay

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients (e.g. `git ls-remote`) may close early; that's not worth a traceback.
        pass


class _CgiHandler(BaseHTTPRequestHandler):
    """Forwards each request to ``git http-backend`` following the CGI/1.1 conventions."""

    server: _Server
    protocol_version = "HTTP/1.1"  # enables `Expect: 100-continue`; we still close after each reply

    def do_GET(self) -> None:
        self._run_backend()

    def do_POST(self) -> None:
        self._run_backend()

    def log_message(self, format: str, *args: object) -> None:
        pass  # no request logging to stderr

    def _read_body(self) -> bytes:
        """Request body, de-chunking it when the client (git for large pushes) sends it chunked."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()  # CRLF closing the chunk
            while self.rfile.readline().strip():  # optional trailers, then the final CRLF
                pass
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _run_backend(self) -> None:
        path, _, query = self.path.partition("?")
        body = self._read_body() if self.command == "POST" else b""
        if self.server.fetch_delay and b"want " in body:
            time.sleep(self.server.fetch_delay)  # a slow remote: the fetch itself takes long
        env = _git_env(
            GIT_PROJECT_ROOT=str(self.server.root),
            GIT_HTTP_EXPORT_ALL="1",
            GATEWAY_INTERFACE="CGI/1.1",
            SERVER_PROTOCOL="HTTP/1.1",
            REQUEST_METHOD=self.command,
            PATH_INFO=urllib.parse.unquote(path),
            QUERY_STRING=query,
            REMOTE_ADDR=self.client_address[0],
            CONTENT_TYPE=self.headers.get("Content-Type", ""),
        )
        if self.command == "POST":
            # http-backend reads exactly CONTENT_LENGTH bytes (still gzip-compressed, if so).
            env["CONTENT_LENGTH"] = str(len(body))
        # Git-Protocol carries "version=2"; without it the backend falls back to protocol v0.
        for header, var in (
            ("Git-Protocol", "HTTP_GIT_PROTOCOL"),
            ("Content-Encoding", "HTTP_CONTENT_ENCODING"),
        ):
            if value := self.headers.get(header):
                env[var] = value

        # The body goes through a temp file so a large request can't deadlock against the output.
        with tempfile.TemporaryFile() as stdin:
            stdin.write(body)
            stdin.seek(0)
            proc = subprocess.Popen(
                ["git", "http-backend"],
                env=env,
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        assert proc.stdout is not None
        try:
            self._relay_response(proc.stdout)
        finally:
            proc.stdout.close()
            proc.wait()

    def _relay_response(self, out: IO[bytes]) -> None:
        """Turn CGI output (headers, optional ``Status:``, blank line, body) into an HTTP reply."""
        status, reason = 200, "OK"
        headers: list[tuple[str, str]] = []
        while line := out.readline().rstrip(b"\r\n"):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "status":
                code, _, reason = value.strip().partition(" ")
                status = int(code)
            else:
                headers.append((name.strip(), value.strip()))
        self.send_response(status, reason or None)
        for name, value in headers:
            self.send_header(name, value)
        # No Content-Length from the CGI: the body is delimited by closing the connection.
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        shutil.copyfileobj(out, self.wfile)
        self.wfile.flush()


class GitServer:
    """Smart-HTTP git server on ``base_url`` serving ``<root>/<name>.git``; a context manager.

    ``root`` defaults to a fresh temporary directory, removed again by :meth:`stop`.
    """

    def __init__(self, root: Path | None = None, *, fetch_delay: float = 0.0) -> None:
        """`fetch_delay`: seconds each fetch of objects takes, to stand for a slow remote."""
        self.fetch_delay = fetch_delay
        self._tmp = Path(tempfile.mkdtemp(prefix="kiln-git-"))
        self.root = root if root is not None else self._tmp / "repos"
        self.root.mkdir(parents=True, exist_ok=True)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("GitServer is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self._server = _Server(self.root, self.fetch_delay)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="git-http-server", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def create_repo(self, name: str, branch: str = "main") -> GitRepo:
        """Create the bare repo ``<root>/<name>.git`` (default branch ``branch``), fetchable and
        pushable over HTTP, plus a working clone for :meth:`GitRepo.commit`."""
        bare = self.root / f"{name}.git"
        bare.parent.mkdir(parents=True, exist_ok=True)
        _git("init", "-q", "--bare", "-b", branch, str(bare), cwd=self.root)
        for key in (
            "http.receivepack",  # allow anonymous pushes over HTTP
            "uploadpack.allowAnySHA1InWant",  # fetch by (non-tip) sha with protocol v0
            "uploadpack.allowReachableSHA1InWant",
        ):
            _git("config", key, "true", cwd=bare)
        work = Path(tempfile.mkdtemp(prefix=f"{name.replace('/', '_')}-", dir=self._tmp))
        _git("clone", "-q", str(bare), str(work), cwd=self._tmp)
        return GitRepo(name, bare, work, f"{self.base_url}/{name}.git", branch)
