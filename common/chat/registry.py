"""The generations this process runs, and the watcher that carries signals between processes.

A cancel reaches a generation whichever worker runs it: the request that receives it records it in
the database; the owning worker's watcher sees it within a quarter of a second and closes the
upstream connection. The watcher also keeps this worker's heartbeat fresh while it has generations,
so that the crash sweep can tell a live worker from a dead one.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time

import gevent
from flask import Flask

from common.chat.live import Generation
from common.db import execute, fetch_all, release, utcnow

log = logging.getLogger("parley.chat")
CANCEL_POLL_SECONDS = 0.25
HEARTBEAT_SECONDS = 5.0


def new_worker_id() -> str:
    """host:pid:nonce; the nonce tells apart two app instances in one process (tests)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class GenerationRegistry:
    """Live generations of this process by assistant message id."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.worker_id = new_worker_id()
        self.live: dict[int, Generation] = {}
        self._watcher: gevent.Greenlet | None = None
        self._last_beat = float("-inf")

    def start(self, gen: Generation, body, *args) -> None:
        """Register `gen` and run `body(*args)` in its own greenlet."""
        self.live[gen.message_id] = gen
        if time.monotonic() - self._last_beat >= HEARTBEAT_SECONDS:
            self._heartbeat()
        gen.greenlet = gevent.spawn(body, *args)
        if self._watcher is None or self._watcher.dead:
            self._watcher = gevent.spawn(self._watch)

    def get(self, message_id: int) -> Generation | None:
        return self.live.get(message_id)

    def forget(self, message_id: int) -> None:
        self.live.pop(message_id, None)

    def cancel_local(self, message_id: int) -> bool:
        """Cancel a generation of this process at once; False when it does not run here."""
        gen = self.live.get(message_id)
        if gen is None:
            return False
        gen.cancel()
        return True

    def _heartbeat(self) -> None:
        db = self.app.extensions["parley.db"]
        host, pid, _nonce = self.worker_id.rsplit(":", 2)
        now = utcnow()
        self._last_beat = time.monotonic()
        with db as tx:
            execute(
                tx,
                "INSERT INTO workers (id, host, pid, started_at, heartbeat_at) VALUES (:id, :h, :p, :now, :now) "
                "ON CONFLICT (id) DO UPDATE SET heartbeat_at = :now",
                id=self.worker_id, h=host, p=int(pid), now=now,
            )

    def _apply_cancels(self) -> None:
        db = self.app.extensions["parley.db"]
        with db:
            rows = fetch_all(
                db, "SELECT message_id FROM generations WHERE worker = :w AND state = 'running' AND cancel_requested",
                w=self.worker_id,
            )
        for row in rows:
            self.cancel_local(row["message_id"])

    def _watch(self) -> None:
        """Poll for cancels and beat the heart while this process has generations; then stop."""
        db = self.app.extensions["parley.db"]
        since_beat = 0.0
        try:
            while self.live:
                gevent.sleep(CANCEL_POLL_SECONDS)
                since_beat += CANCEL_POLL_SECONDS
                try:
                    self._apply_cancels()
                    if since_beat >= HEARTBEAT_SECONDS:
                        self._heartbeat()
                        since_beat = 0.0
                except Exception:  # a transient database error must not stop cancels for good
                    log.exception("generation watcher: poll failed")
                    release(db)
        finally:
            release(db)

    def drain(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the running generations to finish by themselves."""
        greenlets = [g.greenlet for g in self.live.values() if g.greenlet is not None]
        gevent.joinall(greenlets, timeout=timeout)

    def shutdown(self) -> None:
        """Cancel everything this process runs and wait briefly (tests, graceful stop)."""
        for gen in list(self.live.values()):
            gen.cancel()
        greenlets = [g.greenlet for g in self.live.values() if g.greenlet is not None]
        gevent.joinall(greenlets, timeout=5)
        if self._watcher is not None:
            self._watcher.kill(block=False)
