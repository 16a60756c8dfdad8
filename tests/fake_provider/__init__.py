"""A fake model provider (OpenAI, Azure OpenAI, Ollama, Gemini wire formats) for tests and benchmarks.

The server runs in its own process (``python -m tests.fake_provider --port N``, see ``server.py``);
:class:`FakeProvider` starts and drives it from a test::

    fake = FakeProvider().start()          # free port, waits until it answers
    base = fake.openai_base_url            # http://127.0.0.1:<port>/v1
    ...                                    # model "fake-chat@chunks=50,delay=20", "fake-429@key=t1", ...
    fake.requests_log(model="fake-chat")   # what the server received (auth values removed)
    fake.reset()                           # clear log and scenario counters
    fake.stop()

The scenario grammar (model names such as ``fake-reasoning``, ``fake-cut@after=2``, and the
``X-Fake-Scenario`` header) is documented in ``scenario.py``.

This module imports nothing heavy at import time: the server process imports it before it
monkey-patches with gevent.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
PORT_LINE = "FAKE_PROVIDER_PORT="


class FakeProviderError(RuntimeError):
    """The fake server could not be started or did not answer."""


class FakeProvider:
    """Start, stop and inspect one fake provider subprocess."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, startup_timeout: float = 20.0) -> None:
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self._proc: Any = None
        self._opener: Any = None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> FakeProvider:
        """Spawn the server (on a free port unless one was given) and wait until it answers."""
        import subprocess
        import threading

        if self._proc is not None:
            return self
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env["PYTHONUNBUFFERED"] = "1"
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fake_provider", "--host", self.host, "--port", str(self.port)],
            cwd=str(REPO_ROOT),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        found: list[int] = []
        ready = threading.Event()
        proc = self._proc

        def read_stdout() -> None:
            for line in proc.stdout:
                if line.startswith(PORT_LINE) and not found:
                    found.append(int(line[len(PORT_LINE) :].strip()))
                    ready.set()
            ready.set()

        threading.Thread(target=read_stdout, name="fake-provider-stdout", daemon=True).start()
        if not ready.wait(self.startup_timeout) or not found:
            self.stop()
            raise FakeProviderError("the fake provider did not start (no port announced)")
        self.port = found[0]
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                if self._call("GET", "/_fake/health", timeout=2.0).get("ok"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                self.stop()
                raise FakeProviderError("the fake provider did not answer its health check")
            time.sleep(0.05)
        atexit.register(self.stop)
        return self

    def stop(self) -> None:
        """Terminate the server process (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except Exception:  # still alive: kill it
                proc.kill()
                proc.wait(timeout=5)
        if proc.stdout is not None:
            try:
                proc.stdout.close()
            except Exception:  # the reader thread may be using it
                pass

    @property
    def running(self) -> bool:
        """Whether the subprocess is alive."""
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://host:port`` (Azure and Ollama base URL)."""
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """Base URL of an OpenAI-compatible connection."""
        return self.url + "/v1"

    @property
    def azure_base_url(self) -> str:
        """Base URL of an Azure OpenAI connection (the resource URL)."""
        return self.url

    @property
    def ollama_base_url(self) -> str:
        """Base URL of an Ollama connection."""
        return self.url

    @property
    def gemini_base_url(self) -> str:
        """Base URL of a Gemini connection."""
        return self.url + "/v1beta"

    def base_url(self, provider: str) -> str:
        """The base URL for a Parley provider type (openai, azure_openai, ollama, google_genai)."""
        return {
            "openai": self.openai_base_url,
            "azure_openai": self.azure_base_url,
            "ollama": self.ollama_base_url,
            "google_genai": self.gemini_base_url,
        }[provider]

    # -- control ----------------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, timeout: float = 5.0) -> Any:
        import urllib.request

        if self._opener is None:
            self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        request = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        with self._opener.open(request, timeout=timeout) as resp:
            return json.loads(resp.read())

    def reset(self) -> None:
        """Clear the request log and the 429 / 500_once counters."""
        self._call("POST", "/_fake/reset")

    def requests_log(
        self, *, model: str | None = None, path: str | None = None, since: int | None = None
    ) -> list[dict[str, Any]]:
        """The received requests, oldest first (optionally only one model / a path substring)."""
        from urllib.parse import urlencode

        params = {k: v for k, v in (("model", model), ("path", path), ("since", since)) if v is not None}
        return self._call("GET", "/_fake/log" + ("?" + urlencode(params) if params else ""))

    def last_request(self, *, model: str | None = None, path: str | None = None) -> dict[str, Any] | None:
        """The most recent matching request, or None."""
        entries = self.requests_log(model=model, path=path)
        return entries[-1] if entries else None

    def wait_for(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        *,
        timeout: float = 2.0,
        model: str | None = None,
        interval: float = 0.02,
    ) -> dict[str, Any] | None:
        """Poll the log until an entry satisfies ``predicate``; returns it, or None after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            for entry in reversed(self.requests_log(model=model)):
                if predicate(entry):
                    return entry
            if time.monotonic() >= deadline:
                return None
            time.sleep(interval)

    def wait_for_disconnect(self, model: str, *, timeout: float = 1.0) -> dict[str, Any] | None:
        """The latest request for ``model`` once the server noticed its client went away, else None."""
        return self.wait_for(lambda e: e.get("disconnected_at") is not None, timeout=timeout, model=model)


__all__ = ["FakeProvider", "FakeProviderError", "REPO_ROOT"]
