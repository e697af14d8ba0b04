"""Alert webhooks: a sink that POSTs a JSON document to every configured URL for each face turning FAKE, for its
evidence clip once written, and for each stream lost or recovered; from a bounded queue, never blocking the loop.

Each POST (`Content-Type: application/json`) carries one event:

    {"schema": "deepfake-stream/webhook/1",
     "event": "alert" | "clip" | "stream_lost" | "stream_recovered",
     "session_id", "stream_id",
     "t": wall-clock seconds since the epoch (an alert's and its clip's: when the face turned FAKE),
     alert, clip:  "track_id", "kind" ("turned_fake"), "p_fake" (the rolling score that turned it),
                   "t_media" (seconds into the media; null where the source has no media time),
                   "clip_path" (an absolute path on the detector's machine; null in "alert" while the clip is
                   still being recorded: the "clip" event with the same stream, track and t follows once it is
                   written), "clip_frames" (clip only),
     stream_lost, stream_recovered: "state" (reconnecting | failed | lost | live), "reconnects", "last_error"}

A stream is lost when its state turns `reconnecting`, `failed` or `lost` (a WHIP publisher gone without DELETE), and
recovered when it is `live` again (a reconnect quicker than one health report gives both at once). Delivery: one
thread per URL (a dead receiver does not hold up a healthy one) with its own queue of `webhook_queue` bodies (full:
the oldest is dropped and counted); each POST gives up after `webhook_timeout_s`; a non-2xx answer (redirects are not
followed) or a network error is retried `webhook_retries` times with doubling backoff, then counted failed. Posts go
straight to the URL, never through a proxy. `close()` gives what is queued a short grace, then drops the rest.

Secrets: a URL's `user:password@` is sent as `Authorization: Basic` to the URL without it (urllib would otherwise
take it for a host:port and never connect). With `service.webhook_secret` set, each POST carries
`X-Deepfake-Stream-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body under the secret>` (signed
afresh on each try), as Stripe and Standard Webhooks sign theirs: the receiver recomputes it over the raw body and
refuses an old `t` (docs/service-and-api.md shows how). Logs name only a URL's scheme://host:port.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from http.client import HTTPException
from typing import Any, Protocol

from stream.config import ServiceSettings
from stream.records import Alert, Event, FinishedClip, StreamHealth, StreamInfo, StreamState

log = logging.getLogger("deepfake_stream")

SCHEMA = "deepfake-stream/webhook/1"
SIGNATURE_HEADER = "X-Deepfake-Stream-Signature"
BACKOFF_S = 0.5  # the first retry's delay; each further one doubles ...
MAX_BACKOFF_S = 30.0  # ... up to this
CLOSE_GRACE_S = 2.0  # what close() gives queued deliveries before dropping them
LOST_STATES = (StreamState.RECONNECTING, StreamState.FAILED, StreamState.LOST)


class OutcomeCounter(Protocol):
    """Where delivery outcomes are counted as well (stream.metrics.Metrics)."""

    def count_webhook(self, outcome: str) -> None: ...


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer other than 2xx: a failure, not a connection somewhere the user did not name."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _origin(url: str) -> str:
    """scheme://host:port of a URL, for log lines (its path or query may hold a secret)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value: `t=<timestamp>,v1=<hex HMAC-SHA256 over "<timestamp>." + body>`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """The URL without its `user:password@`, and the `Authorization: Basic` header that carries them instead."""
    parts = urllib.parse.urlsplit(url)  # ServiceSettings checked that it splits
    if "@" not in parts.netloc:
        return url, {}
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    pair = f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode()
    bare = urllib.parse.urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return bare, {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}


def _number(value: float | None) -> float | None:
    return None if value is None else float(value)


class _Delivery:
    """One URL's queue and delivery thread (started at the first event)."""

    def __init__(self, url: str, settings: ServiceSettings, backoff_s: float, count: Callable[[str], None]) -> None:
        self.url, self._headers = split_credentials(url)
        self._headers |= {"Content-Type": "application/json", "User-Agent": "deepfake-stream"}
        self._secret = settings.webhook_secret
        self._capacity = settings.webhook_queue
        self._timeout_s = settings.webhook_timeout_s
        self._retries = settings.webhook_retries
        self._backoff_s = backoff_s
        self._count = count
        self._queue: deque[bytes] = deque()
        self._lock = threading.Condition()
        self._closing = threading.Event()  # close() began: take no more events, deliver what is queued ...
        self._abandoned = threading.Event()  # ... until its grace is over: no more tries, drop the rest
        self._thread: threading.Thread | None = None
        self._failing = False
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())

    def put(self, body: bytes) -> None:
        """Queue one body; never waits."""
        with self._lock:
            if self._closing.is_set():
                self._count("dropped")
                return
            if len(self._queue) >= self._capacity:
                self._queue.popleft()
                self._count("dropped")
            self._queue.append(body)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"webhook {_origin(self.url)}", daemon=True)
                self._thread.start()
            self._lock.notify()

    def close(self, grace_s: float) -> None:
        """Stop taking events; deliver what is queued (retries included) for up to `grace_s`, then drop the rest. A
        POST still in flight then ends by its own timeout, on its own (daemon) thread."""
        with self._lock:
            self._closing.set()
            self._lock.notify()
        if self._thread is not None:
            self._thread.join(grace_s)
        self._abandoned.set()
        self._drop_queued()

    def _drop_queued(self) -> None:
        with self._lock:
            left = len(self._queue)
            self._queue.clear()
        for _ in range(left):
            self._count("dropped")

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closing.is_set():
                    self._lock.wait()
                if not self._queue or self._abandoned.is_set():
                    break
                body = self._queue.popleft()
            self._deliver(body)
        self._drop_queued()

    def _deliver(self, body: bytes) -> None:
        for attempt in range(self._retries + 1):
            error = self._post(body)
            if error is None:
                self._count("delivered")
                if self._failing:
                    self._failing = False
                    log.info("webhook %s: delivering again", _origin(self.url))
                return
            if not self._failing:
                self._failing = True
                log.warning("webhook %s failed: %s (retried with backoff; failures counted)", _origin(self.url), error)
            if attempt == self._retries:
                break
            delay = min(self._backoff_s * 2**attempt, MAX_BACKOFF_S)
            if self._abandoned.wait(delay):  # closed and past its grace: no more tries
                break
            self._count("retried")
        self._count("failed")

    def _post(self, body: bytes) -> str | None:
        """POST once; None when the answer was 2xx, else why not (one line)."""
        headers = dict(self._headers)
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = signature(self._secret, int(time.time()), body)
        request = urllib.request.Request(self.url, data=body, method="POST", headers=headers)
        try:
            with self._opener.open(request, timeout=self._timeout_s) as response:
                response.read(65536)
                status = response.status
        except urllib.error.HTTPError as error:
            return f"HTTP {error.code}"
        except (urllib.error.URLError, OSError, HTTPException, ValueError) as error:
            reason = getattr(error, "reason", error)
            return str(reason) or type(error).__name__
        return None if 200 <= status < 300 else f"HTTP {status}"


class WebhookSink:
    """A Sink posting alert, clip and stream lost/recovered events to `settings.webhooks` (see the module)."""

    def __init__(
        self,
        settings: ServiceSettings,
        session_id: str,
        metrics: OutcomeCounter | None = None,
        backoff_s: float = BACKOFF_S,
        close_grace_s: float = CLOSE_GRACE_S,
    ) -> None:
        if backoff_s < 0 or close_grace_s < 0:
            raise ValueError(f"backoff_s and close_grace_s must be >= 0, got {backoff_s} and {close_grace_s}")
        self.session_id = session_id
        self._metrics = metrics
        self._close_grace_s = close_grace_s
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._deliveries = [_Delivery(url, settings, backoff_s, self._count) for url in settings.webhooks]
        # Per stream, owned by the loop thread: its highest reconnect count seen, and whether it is lost now.
        self._reconnects: dict[str, int] = {}
        self._lost: set[str] = set()

    def counts(self) -> dict[str, int]:
        """Delivery outcomes so far over every URL: delivered, retried, failed, dropped."""
        with self._counts_lock:
            return dict(self._counts)

    def _count(self, outcome: str) -> None:
        with self._counts_lock:
            self._counts[outcome] += 1
        if self._metrics is not None:
            self._metrics.count_webhook(outcome)

    def send(self, events: Sequence[Event]) -> None:
        for event in events:
            match event:
                case Alert():
                    self._post(self._alert(event, "alert", event.clip_path))
                case FinishedClip():
                    self._post({**self._alert(event.alert, "clip", str(event.path)), "clip_frames": event.frames})
                case StreamInfo():  # a stream starts (maybe under a name used before)
                    self._reconnects[event.stream_id] = 0
                    self._lost.discard(event.stream_id)
                case StreamHealth():
                    self._health(event)
                case _:
                    pass

    def _alert(self, alert: Alert, kind: str, clip_path: str | None) -> dict[str, Any]:
        return {
            "event": kind,
            "stream_id": alert.stream_id,
            "t": alert.t,
            "track_id": alert.track_id,
            "kind": alert.kind,
            "p_fake": float(alert.p_fake),
            "t_media": _number(alert.t_media),
            "clip_path": clip_path,
        }

    def _health(self, health: StreamHealth) -> None:
        stream_id = health.stream_id
        reconnected = health.reconnects > self._reconnects.get(stream_id, 0)
        self._reconnects[stream_id] = max(health.reconnects, self._reconnects.get(stream_id, 0))
        if health.state in LOST_STATES and stream_id not in self._lost:
            self._lost.add(stream_id)
            self._post(self._stream_event("stream_lost", health))
        elif health.state is StreamState.LIVE and (stream_id in self._lost or reconnected):
            if stream_id not in self._lost:  # lost and back between two health reports
                self._post(self._stream_event("stream_lost", replace(health, state=StreamState.RECONNECTING)))
            self._lost.discard(stream_id)
            self._post(self._stream_event("stream_recovered", health))

    def _stream_event(self, kind: str, health: StreamHealth) -> dict[str, Any]:
        return {
            "event": kind,
            "stream_id": health.stream_id,
            "t": time.time(),
            "state": health.state.value,
            "reconnects": health.reconnects,
            "last_error": health.last_error,
        }

    def _post(self, payload: dict[str, Any]) -> None:
        body = json.dumps({"schema": SCHEMA, "session_id": self.session_id, **payload}).encode()
        for delivery in self._deliveries:
            delivery.put(body)

    def close(self) -> None:
        """Stop: what is queued gets `close_grace_s` in all, then is dropped (and counted)."""
        deadline = time.monotonic() + self._close_grace_s
        for delivery in self._deliveries:
            delivery.close(max(0.0, deadline - time.monotonic()))
