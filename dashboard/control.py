"""The dashboard's commands to a detector: a small client for the detector's HTTP service (stream/service.py).

The dashboard reads what it shows from the store; what it asks the detector to do (add or stop a stream, score an
uploaded video) goes through the service's JSON API. The token comes from `DEEPFAKE_STREAM_TOKEN` in the dashboard's
own environment and goes only into the `Authorization` header of these requests, never to the browser. Every failure
is a `ControlError` whose message is one line for the page (credentials in URLs removed).
"""

from __future__ import annotations

import re
import ssl
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

import httpx

from stream.network import TLS_CA_ENV, TOKEN_ENV

TIMEOUT_S = 15.0  # one command
OPEN_WAIT_S = 40.0  # following a new stream until it is live or failed (an RTSP open may take its open timeout)
POLL_S = 0.25
PROBE_TIMEOUT_S = 0.5  # is this service there at all (GET /healthz)
UPLOAD_CHUNK = 1 << 20
FINAL_UPLOAD_STATES = ("done", "failed")
_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")


class ControlError(Exception):
    """A command the detector's service did not do; the message is one line for the page."""


def redact(text: str) -> str:
    """`rtsp://user:secret@cam/x` -> `rtsp://***@cam/x`, anywhere in the text; and on one line."""
    return " ".join(_CREDENTIALS.sub(r"\1***@", text).split())


def token_from(environ: Mapping[str, str]) -> str | None:
    return environ.get(TOKEN_ENV) or None


def ca_from(environ: Mapping[str, str]) -> str | None:
    """The CA file the service's certificate is verified with (`service.tls_ca`, handed over by run_stream.py)."""
    return environ.get(TLS_CA_ENV) or None


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    max_mb: float


@dataclass(frozen=True)
class UploadProgress:
    """An upload as the service reports it while it is scored (the report itself is read from the store)."""

    upload_id: str
    session_id: str
    file_name: str
    state: str  # queued | running | done | failed
    frames_done: int
    frames_expected: int | None
    error: str | None
    note: str | None = None  # "slowed: live cameras take priority" while it runs beside them
    rate_fps: float | None = None  # while it runs: frames scored a second, lately ...
    eta_s: float | None = None  # ... and the seconds its frames left take at that rate

    @property
    def pace(self) -> str:
        """`slowed: live cameras take priority · 7.5 frames/s, about 24 s left`: what the service said of its pace."""
        parts = [self.note] if self.note else []
        if self.rate_fps:
            left = f", about {self.eta_s:.0f} s left" if self.eta_s is not None else ""
            parts.append(f"{self.rate_fps:.1f} frames/s{left}")
        return " · ".join(parts)

    @property
    def finished(self) -> bool:
        return self.state in FINAL_UPLOAD_STATES

    @property
    def fraction(self) -> float | None:
        """How far it has got, 0..1, when the file said how many frames it has."""
        if not self.frames_expected:
            return None
        return min(1.0, self.frames_done / self.frames_expected)


@dataclass(frozen=True)
class ServiceStream:
    stream_id: str
    kind: str
    source: str  # redacted by the service
    state: str
    last_error: str | None


@dataclass(frozen=True)
class SourcePolicy:
    """What the detector's API may add (GET /api/sources/policy): each kind allowed or the reason it is off."""

    off: Mapping[str, str]  # kind -> why the API may not add it
    media_dir: str | None
    camera_hosts: tuple[str, ...]

    def allows(self, kind: str) -> bool:
        return kind not in self.off


def _policy(body: Mapping[str, Any]) -> SourcePolicy:
    off = {str(k["kind"]): str(k.get("reason") or "off") for k in body.get("kinds", []) if not k.get("allowed")}
    media_dir = body.get("media_dir")
    return SourcePolicy(off, str(media_dir) if media_dir else None, tuple(map(str, body.get("camera_hosts", []))))


def _upload(body: Mapping[str, Any]) -> UploadProgress:
    return UploadProgress(
        upload_id=str(body["upload_id"]),
        session_id=str(body["session_id"]),
        file_name=str(body["file_name"]),
        state=str(body["state"]),
        frames_done=int(body["frames_done"]),
        frames_expected=None if body.get("frames_expected") is None else int(body["frames_expected"]),
        error=body.get("error"),
        note=body.get("note"),
        rate_fps=None if body.get("rate_fps") is None else float(body["rate_fps"]),
        eta_s=None if body.get("eta_s") is None else float(body["eta_s"]),
    )


def _stream(body: Mapping[str, Any]) -> ServiceStream:
    return ServiceStream(
        stream_id=str(body["stream_id"]),
        kind=str(body["kind"]),
        source=redact(str(body["source"])),
        state=str(body["state"]),
        last_error=None if body.get("last_error") is None else redact(str(body["last_error"])),
    )


def _chunks(file: IO[bytes], size: int = UPLOAD_CHUNK) -> Iterator[bytes]:
    while chunk := file.read(size):
        yield chunk


class Control:
    """The detector service at `url` (as its session recorded it), with the token when there is one. An https://
    service's certificate is verified against `ca` (a PEM file) when given, else against the default CA bundle."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = TIMEOUT_S, ca: str | None = None) -> None:
        self.url = url.rstrip("/") + "/"
        self._token = token
        self._timeout_s = timeout_s
        self._ca = ca
        self._verify: ssl.SSLContext | bool | None = None if ca else True

    def _tls(self) -> ssl.SSLContext | bool:
        if self._verify is None:
            try:
                self._verify = ssl.create_default_context(cafile=self._ca)
            except (OSError, ssl.SSLError) as error:
                reason = getattr(error, "strerror", None) or getattr(error, "reason", None) or error
                raise ControlError(f"the CA file {self._ca} cannot be used: {reason}") from None
        return self._verify

    def _client(self, timeout: httpx.Timeout | float | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        # trust_env=False: no proxy from the environment, no .netrc; the request goes where the store says.
        return httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=self._timeout_s if timeout is None else timeout,
            trust_env=False,
            follow_redirects=False,
            verify=self._tls(),
        )

    def _call(
        self, method: str, path: str, timeout: httpx.Timeout | float | None = None, **request: Any
    ) -> httpx.Response:
        try:
            with self._client(timeout) as client:
                response = client.request(method, path, **request)
        except httpx.TimeoutException:
            raise ControlError(f"the detector's service at {self.url} did not answer in time") from None
        except httpx.HTTPError as error:
            reason = str(error) or type(error).__name__
            raise ControlError(f"the detector's service at {self.url} does not answer ({redact(reason)})") from None
        if response.is_success:
            return response
        raise ControlError(self._problem(response))

    def _problem(self, response: httpx.Response) -> str:
        try:
            detail = response.json().get("detail")
        except (ValueError, AttributeError):
            detail = None
        line = redact(detail) if isinstance(detail, str) and detail else f"HTTP {response.status_code}"
        if response.status_code == 401:
            hint = "its token is not set" if not self._token else "the token it has is not this service's"
            return f"the detector's service refused the dashboard ({line}): {hint}; set {TOKEN_ENV} for the dashboard"
        return line

    def alive(self) -> bool:
        """Does the service answer `GET /healthz` (no token needed) right now?"""
        try:
            with self._client(PROBE_TIMEOUT_S) as client:
                return client.get("healthz").is_success
        except (httpx.HTTPError, ControlError):
            return False

    def limits(self) -> UploadLimits:
        body = self._call("GET", "api/uploads/limits").json()
        return UploadLimits(max_bytes=int(body["max_bytes"]), max_mb=float(body["max_mb"]))

    def source_policy(self) -> SourcePolicy:
        """What this detector's API may add; ControlError when it cannot say (an older service has no policy)."""
        return _policy(self._call("GET", "api/sources/policy").json())

    def add_stream(self, source: str, name: str | None = None) -> ServiceStream:
        body: dict[str, str] = {"source": source}
        if name:
            body["name"] = name
        return _stream(self._call("POST", "api/streams", json=body).json())

    def stream(self, stream_id: str) -> ServiceStream:
        return _stream(self._call("GET", f"api/streams/{_segment(stream_id)}").json())

    def open_stream(self, source: str, name: str | None = None, timeout_s: float = OPEN_WAIT_S) -> ServiceStream:
        """Add a stream and follow it until it is live (or reconnecting), or failed: ControlError with the reason
        (the service answers POST at once and opens the source elsewhere). Still `starting` after `timeout_s`: as is.
        """
        added = self.add_stream(source, name)
        deadline = time.monotonic() + timeout_s
        while added.state == "starting" and time.monotonic() < deadline:
            time.sleep(POLL_S)
            added = self.stream(added.stream_id)
        if added.state == "failed":
            raise ControlError(redact(added.last_error or "the source could not be opened"))
        return added

    def stop_stream(self, stream_id: str) -> ServiceStream:
        return _stream(self._call("DELETE", f"api/streams/{_segment(stream_id)}").json())

    def upload(self, file: IO[bytes], size: int, file_name: str) -> UploadProgress:
        """Send the video as the request body, read from `file` a chunk at a time (with its length declared, so the
        service refuses one over its cap before anything is sent)."""
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        timeout = httpx.Timeout(self._timeout_s, write=60.0)
        response = self._call(
            "POST", "api/uploads", timeout, params={"filename": file_name}, content=_chunks(file), headers=headers
        )
        return _upload(response.json())

    def upload_progress(self, upload_id: str) -> UploadProgress:
        return _upload(self._call("GET", f"api/uploads/{_segment(upload_id)}").json())

    def uploads(self) -> list[dict[str, Any]]:
        """Every upload the service knows, as it answers them (`state`, and `queue_position` while queued)."""
        body = self._call("GET", "api/uploads").json()
        return [u for u in body if isinstance(u, dict)] if isinstance(body, list) else []


def _segment(text: str) -> str:
    """One URL path segment (stream ids are plain names, but nothing typed may add a path)."""
    return urllib.parse.quote(text, safe="")
