"""Continuous HTTP traffic for tests that claim "no request fails while …": new connections, one keep-alive
connection and slow requests, each in its own thread, bounded in count and time. Every request is recorded
(start, end, kind, status or error, the version that answered) so a test can assert on what users saw."""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sample:
    kind: str  # new | keepalive | slow
    start: float
    end: float
    status: int | None  # None: no HTTP response (the error says why)
    version: str = ""
    error: str = ""


@dataclass
class Traffic:
    port: int
    host_header: str
    tls_context: ssl.SSLContext | None = None
    slow_threads: int = 2
    max_seconds: float = 600.0
    max_requests: int = 200_000
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.tls_context is not None:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=self.tls_context)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def _record(self, sample: Sample) -> None:
        with self._lock:
            self.samples.append(sample)

    def _one(self, conn: http.client.HTTPConnection, kind: str, path: str) -> Sample:
        start = time.monotonic()
        try:
            conn.request("GET", path, headers={"Host": self.host_header})
            resp = conn.getresponse()
            body = resp.read().decode("utf-8", "replace")
            return Sample(kind, start, time.monotonic(), resp.status, body.split(" ", 1)[0].strip())
        except (OSError, http.client.HTTPException) as exc:
            return Sample(kind, start, time.monotonic(), None, error=f"{type(exc).__name__}: {exc}")

    def _running(self, deadline: float) -> bool:
        return not self._stop.is_set() and time.monotonic() < deadline and len(self.samples) < self.max_requests

    def _new_connections(self, deadline: float) -> None:
        while self._running(deadline):
            conn = self._connection(10)
            self._record(self._one(conn, "new", "/"))
            conn.close()
            time.sleep(0.01)

    def _keepalive(self, deadline: float) -> None:
        """One persistent connection. A server may close an idle persistent connection at any moment (a proxy
        reload does); a request sent on a reused connection that the server closed without a response byte is
        retried once on a new connection, as RFC 9112 §9.3.1 allows for idempotent requests and as browsers,
        Go's http.Transport and curl do. That retry is recorded (kind `keepalive-retry`), never hidden: only
        a failure of the retry, or any other error, counts as a failed request."""
        conn = self._connection(10)
        reused = False
        while self._running(deadline):
            sample = self._one(conn, "keepalive", "/")
            if sample.status is None and reused and "RemoteDisconnected" in sample.error:
                self._record(Sample("keepalive-retry", sample.start, sample.end, None, error=sample.error))
                conn.close()
                conn = self._connection(10)
                sample = self._one(conn, "keepalive", "/")
            self._record(sample)
            reused = True
            if sample.status is None:  # counted as a failure; go on with a fresh connection
                conn.close()
                conn = self._connection(10)
                reused = False
            time.sleep(0.01)
        conn.close()

    def _slow(self, deadline: float) -> None:
        while self._running(deadline):
            conn = self._connection(30)
            self._record(self._one(conn, "slow", "/slow"))
            conn.close()

    def __enter__(self) -> Traffic:
        deadline = time.monotonic() + self.max_seconds
        targets = [self._new_connections, self._keepalive] + [self._slow] * self.slow_threads
        self._threads = [threading.Thread(target=t, args=(deadline,), daemon=True) for t in targets]
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=40)

    def wait_for(self, version: str, timeout: float = 30.0) -> bool:
        """Until a request started now or later is answered by `version` (bounded)."""
        since = time.monotonic()
        deadline = since + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if any(s.version == version and s.start >= since for s in self.samples):
                    return True
            time.sleep(0.1)
        return False

    # --- what the users saw ------------------------------------------------------------------------------

    def failed(self) -> list[Sample]:
        return [s for s in self.samples if s.kind != "keepalive-retry" and (s.status is None or s.status >= 400)]

    def retries(self) -> int:
        return sum(1 for s in self.samples if s.kind == "keepalive-retry")

    def versions_in_order(self, kind: str) -> list[str]:
        """The versions one sequential client saw, collapsed: e.g. ['v1', 'v2', 'v3']."""
        out: list[str] = []
        for s in sorted((s for s in self.samples if s.kind == kind and s.version), key=lambda s: s.start):
            if not out or out[-1] != s.version:
                out.append(s.version)
        return out
