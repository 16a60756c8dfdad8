"""Start the real gunicorn gevent server on a free port, for integration tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """gunicorn with gevent workers serving `wsgi:app` on 127.0.0.1, as the Procfile runs it."""

    def __init__(self, data_dir: Path, *, workers: int = 1, env: dict | None = None, port: int | None = None):
        self.data_dir = Path(data_dir)
        self.workers = workers
        self.port = port or free_port()
        self.extra_env = env or {}
        self.process: subprocess.Popen | None = None
        self.log_path = self.data_dir.parent / f"gunicorn-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> float:
        """Start and wait until /api/settings/health answers 200; returns the seconds it took."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "APP_ENV"}}
        env.update(
            {
                "DATA_DIR": str(self.data_dir),
                "PORT": str(self.port),
                "WEB_CONCURRENCY": str(self.workers),
                "BCRYPT_ROUNDS": "4",
                "LOG_LEVEL": "WARNING",
                "PYTHONPATH": str(REPO),
            }
        )
        env.update(self.extra_env)
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        command = [gunicorn, "--config", "python:common.gunicorn_config", "--bind", f"127.0.0.1:{self.port}",
                   "wsgi:app"]
        started = time.monotonic()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}: {self.log_tail()}")
            try:
                if requests.get(self.url + "/api/settings/health", timeout=1).status_code == 200:
                    return time.monotonic() - started
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gunicorn did not become healthy in {timeout}s: {self.log_tail()}")

    def worker_pids(self) -> list[int]:
        """The pids of the master's worker processes."""
        assert self.process is not None
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def kill_hard(self) -> None:
        """SIGKILL the master and its workers at once, as a crash or an OOM kill would."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._log.close()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)
        self._log.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
