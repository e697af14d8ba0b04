"""WHIP ingest (RFC 9725, on aiortc): each WebRTC publisher becomes one more live stream of the pipeline, and `GET /`
serves the page that publishes a browser's camera.

Frames cross from the service's asyncio loop to the stream's capture thread through `LatestFrames`, a small handoff
that keeps only the newest frames: the receiver never waits for the model, it keeps receiving and dropping.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Annotated, Any

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from fastapi import APIRouter, Depends, HTTPException, Path, Request, Response
from fastapi.responses import HTMLResponse

from model.labels import UNCALIBRATED_WARNING
from stream.capture.references import SourceError, SourceSpec
from stream.capture.sources import Source
from stream.capture.whip_frames import LatestFrames, whip_producer
from stream.config import ServiceSettings
from stream.detector import Detector
from stream.records import StreamState
from stream.service.auth import Scope, scope_of
from stream.service.caps import over_cap, running_kinds
from stream.text import one_line

log = logging.getLogger("deepfake_stream")

PAGE = FilePath(__file__).with_name("static") / "publish.html"
STREAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_OFFER_BYTES = 64 * 1024  # a browser's offer is a few KB; anything near this is not an SDP offer
WATCH_S = 0.25  # how often a publisher is checked for silence and for a stream stopped elsewhere
LOOP_ANSWER_S = 10.0  # how long the detector's loop may take to add or remove a stream
# The pattern is checked in the handler (a 400 with one line) and only documented in the schema.
NewStreamName = Annotated[str, Path(json_schema_extra={"pattern": STREAM_NAME.pattern})]
ACTIVE_STATES = (StreamState.STARTING, StreamState.LIVE, StreamState.RECONNECTING)
CORS = {
    "Access-Control-Allow-Methods": "POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type",
    "Access-Control-Expose-Headers": "Location, Link",
    "Access-Control-Max-Age": "600",
}
LOOPBACK_ORIGIN = re.compile(r"^https?://(127(\.\d{1,3}){3}|localhost|\[::1\])(:\d{1,5})?$")


@dataclass(eq=False)
class _Publisher:
    """One WHIP session, owned by the service's asyncio loop."""

    name: str
    resource_id: str
    pc: RTCPeerConnection
    frames: LatestFrames = field(default_factory=LatestFrames)
    source: Source | None = None
    last_frame_at: float = field(default_factory=time.monotonic)
    frames_received: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    ended: bool = False

    def stopping(self) -> bool:
        return self.source is not None and self.source.stopping


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


class WhipIngest:
    """The WHIP endpoint as a service extension: `router` serves `GET /` (the publish page), `OPTIONS`/`POST
    /whip/{stream_name}`, `OPTIONS`/`DELETE` on the Location a POST returns, and `GET /whip/{stream_name}/faces`;
    `aclose()` ends every publisher (on the service's loop, at shutdown)."""

    def __init__(self, detector: Detector, settings: ServiceSettings, guard: Callable[[Request], None]) -> None:
        self._detector = detector
        self._settings = settings
        self._options = detector.settings.sources
        self._publishers: dict[str, _Publisher] = {}  # from the POST on, connected or not: `max_publishers` at most
        # Handing a stream to the loop: a pool of its own, never asyncio's default one (shared with the store reads).
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="whip-source")
        self._page = PAGE.read_text(encoding="utf-8").replace(
            "__ICE_SERVERS__", json.dumps(list(settings.ice_servers)).replace("<", "\\u003c")
        )
        auth = [Depends(guard)]
        router = APIRouter()
        router.add_api_route("/", self.page, methods=["GET"], response_class=HTMLResponse, summary="WHIP publish page")
        # CORS preflights: answered by the browser's rules, not API operations (kept out of the schema).
        router.add_api_route("/whip/{stream_name}", self.preflight, methods=["OPTIONS"], include_in_schema=False)
        router.add_api_route(
            "/whip/{stream_name}",
            self.publish,
            methods=["POST"],
            status_code=201,
            dependencies=auth,
            summary="Publish a WebRTC stream (WHIP, RFC 9725): an SDP offer in, the answer out",
            response_class=Response,
            responses={
                201: {
                    "description": "the SDP answer; Location is the session to DELETE",
                    "content": {"application/sdp": {}},
                },
                400: {"description": "malformed or empty SDP, no video, or a bad stream name"},
                401: {"description": "missing or wrong bearer token"},
                403: {"description": "WHIP is off in the config (service.api_sources)"},
                409: {"description": "a publisher is already live on this stream name"},
                413: {"description": "the offer is too large"},
                415: {"description": "the body is not application/sdp"},
                429: {"description": "service.max_publishers or service.max_streams reached (Retry-After)"},
                503: {"description": "the detector's loop has stopped"},
            },
            openapi_extra={
                "requestBody": {"required": True, "content": {"application/sdp": {"schema": {"type": "string"}}}}
            },
        )
        router.add_api_route(
            "/whip/{stream_name}/faces",
            self.faces,
            methods=["GET"],
            dependencies=auth,
            summary="The live faces of one stream with their rolling p(fake) and verdict",
            responses={404: {"description": "no such stream"}},
        )
        router.add_api_route(
            "/whip/{stream_name}/{resource_id}", self.preflight, methods=["OPTIONS"], include_in_schema=False
        )
        router.add_api_route(
            "/whip/{stream_name}/{resource_id}",
            self.delete,
            methods=["DELETE"],
            dependencies=auth,
            summary="End a WHIP session (the stream ends; its scores are kept)",
            response_class=Response,
            responses={200: {"description": "ended"}, 404: {"description": "no such WHIP session"}},
        )
        self.router = router

    # ---- routes ------------------------------------------------------------------------------------------------
    async def page(self) -> HTMLResponse:
        return HTMLResponse(self._page)

    async def preflight(self, request: Request) -> Response:
        return Response(status_code=204, headers={**self._cors(request), **CORS, "Accept-Post": "application/sdp"})

    async def publish(self, stream_name: NewStreamName, request: Request) -> Response:
        cors = self._cors(request)
        if "whip" not in self._settings.api_sources:
            raise self._error(403, "WHIP publishing is off in this detector's config (service.api_sources)", cors)
        if not STREAM_NAME.match(stream_name):
            raise self._error(400, f"bad stream name {stream_name[:80]!r}: use 1-64 of A-Z a-z 0-9 _ . -", cors)
        if _content_type(request) != "application/sdp":
            raise self._error(415, "a WHIP offer must be sent as Content-Type: application/sdp", cors)
        offer = await self._read_offer(request, cors)
        if stream_name in self._publishers or any(
            h.stream_id == stream_name and h.state in ACTIVE_STATES for h in self._detector.health()
        ):
            raise self._error(409, f"stream {stream_name!r} is already live: pick another name or end it first", cors)
        self._check_caps(cors)
        ice = [RTCIceServer(url) for url in self._settings.ice_servers]  # none by default: no STUN, no outbound
        publisher = _Publisher(stream_name, secrets.token_urlsafe(16), RTCPeerConnection(RTCConfiguration(ice)))
        self._publishers[stream_name] = publisher  # reserved before the first await: a racing POST gets 409
        try:
            answer, video, others = await self._negotiate(publisher.pc, offer, cors)
            spec = SourceSpec("whip", stream_name, live=True, display=f"whip:{stream_name}")
            producer = whip_producer(publisher.frames, publisher.stopping)
            loop = asyncio.get_running_loop()
            try:
                publisher.source, added = await loop.run_in_executor(
                    self._pool, lambda: self._detector.add_source(spec, stream_name, producer)
                )
            except SourceError as error:
                raise self._error(400, str(error), cors) from None
            if added.done() and isinstance(added.exception(), RuntimeError):  # refused at once: the loop has ended
                raise self._error(503, f"the detector cannot take a stream now: {added.exception()}", cors)
        except BaseException:
            self._publishers.pop(stream_name, None)
            publisher.frames.close()
            await publisher.pc.close()
            raise
        publisher.last_frame_at = time.monotonic()
        publisher.pc.on("connectionstatechange", lambda: self._connection_changed(publisher))
        publisher.tasks += [
            asyncio.create_task(self._receive(publisher, video)),
            asyncio.create_task(self._watch(publisher)),
            # Not awaited before answering: the loop sets a stream up (its face models) while ICE and DTLS connect.
            asyncio.create_task(self._confirm(publisher, added)),
            *(asyncio.create_task(_drain(track)) for track in others),
        ]
        log.info("WHIP publisher connected as stream %s", stream_name)
        location = f"{request.scope.get('root_path', '')}/whip/{stream_name}/{publisher.resource_id}"
        headers = {**cors, "Location": location, "Access-Control-Expose-Headers": CORS["Access-Control-Expose-Headers"]}
        if self._settings.ice_servers:
            headers["Link"] = ", ".join(f'<{url}>; rel="ice-server"' for url in self._settings.ice_servers)
        return Response(answer, status_code=201, media_type="application/sdp", headers=headers)

    async def delete(self, stream_name: str, resource_id: str, request: Request) -> Response:
        cors = self._cors(request)
        publisher = self._publishers.get(stream_name)
        if publisher is None or not hmac.compare_digest(publisher.resource_id.encode(), resource_id.encode()):
            raise self._error(404, f"no WHIP session {stream_name[:80]}/{resource_id[:80]}", cors)
        await self._end(publisher, None, remove=True)
        return Response(status_code=200, headers=cors)

    async def faces(self, stream_name: str, request: Request) -> dict[str, Any]:
        """Any stream's faces for the admin; a publisher (the publish token) sees only streams published through WHIP
        right now, and any other name is as unknown to it as a missing one."""
        header = request.headers.get("authorization", "")
        publisher = scope_of(header, self._settings.token, self._settings.publish_token) is Scope.PUBLISH
        known = stream_name in self._publishers if publisher else True
        health = next((h for h in self._detector.health() if h.stream_id == stream_name), None) if known else None
        if health is None:
            raise HTTPException(404, f"no stream {stream_name[:80]!r} in the detector")
        calibrated = self._detector.loaded.calibrated
        return {
            "stream_id": stream_name,
            "state": str(health.state),  # the page says why once the stream is lost or failed
            "last_error": health.last_error,
            "calibrated": calibrated,
            "warning": None if calibrated else UNCALIBRATED_WARNING,
            "faces": [
                {
                    "track_id": face.track_id,
                    "verdict": str(face.verdict),
                    "rolling_p_fake": face.rolling_p_fake,
                    "frames_scored": face.frames_scored,
                }
                for face in self._detector.pipeline.faces()
                if face.stream_id == stream_name
            ],
        }

    async def aclose(self) -> None:
        """End every publisher: its stream leaves the loop (scores kept) and its connection is closed."""
        await asyncio.gather(*(self._end(p, None, remove=True) for p in list(self._publishers.values())))
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _check_caps(self, cors: dict[str, str]) -> None:
        """429 when `max_publishers` sessions are open (an unconnected one is closed after `sources.open_timeout_s`)
        or `max_streams` streams run."""
        settings = self._settings
        refused = None
        if len(self._publishers) >= settings.max_publishers:
            refused = over_cap("max_publishers", settings.max_publishers, "too many WHIP publishers", 10)
        elif sum(kind != "upload" for kind in running_kinds(self._detector).values()) >= settings.max_streams:
            refused = over_cap("max_streams", settings.max_streams, "too many streams are running: stop one first", 30)
        if refused is not None:
            raise HTTPException(refused.status, str(refused), headers={**cors, **(refused.headers or {})})

    # ---- one publisher -----------------------------------------------------------------------------------------
    async def _read_offer(self, request: Request, cors: dict[str, str]) -> str:
        too_large = f"an SDP offer must be under {MAX_OFFER_BYTES // 1024} KiB"
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_OFFER_BYTES:
            raise self._error(413, too_large, cors)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_OFFER_BYTES:
                raise self._error(413, too_large, cors)
        try:
            offer = body.decode("utf-8")
        except UnicodeDecodeError:
            raise self._error(400, "the SDP offer is not UTF-8 text", cors) from None
        if not offer.strip():
            raise self._error(400, "empty SDP offer: send the offer as the body", cors)
        return offer

    async def _negotiate(
        self, pc: RTCPeerConnection, offer: str, cors: dict[str, str]
    ) -> tuple[str, MediaStreamTrack, list[MediaStreamTrack]]:
        """The answer (ICE gathered, no trickle), the video track to score and the other tracks (ignored)."""
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        except Exception as error:  # aiortc's SDP parser raises ValueError, IndexError, OperationError, … on bad input
            raise self._error(400, f"malformed SDP offer: {one_line(error, limit=200)}", cors) from None
        # aiortc accepts garbage and media-less offers: the video is checked here.
        tracks = [t.receiver.track for t in pc.getTransceivers() if t.receiver.track is not None]
        videos = [track for track in tracks if track.kind == "video"]
        if not videos:
            raise self._error(400, "the offer sends no video: WHIP here needs a video track (audio is ignored)", cors)
        try:
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as error:  # the offer parsed but cannot be answered (e.g. inconsistent ICE/DTLS parameters)
            raise self._error(400, f"cannot answer the SDP offer: {one_line(error, limit=200)}", cors) from None
        return pc.localDescription.sdp, videos[0], [t for t in tracks if t is not videos[0]]

    async def _receive(self, publisher: _Publisher, track: MediaStreamTrack) -> None:
        """Receive every frame as it comes and hand it over; the handoff drops what the capture side has not taken."""
        try:
            while True:
                frame = await track.recv()
                publisher.last_frame_at = time.monotonic()
                publisher.frames_received += 1
                publisher.frames.put(frame)
        except MediaStreamError:
            await self._end(publisher, "publisher lost: its video ended (the connection closed without a WHIP DELETE)")

    async def _confirm(self, publisher: _Publisher, added: Future[None]) -> None:
        """The loop's answer to the new stream: refused when a stream of that name started meanwhile (not through
        WHIP: those get 409 at once) or the loop has stopped."""
        try:
            await _answer_of(added)
        except (ValueError, RuntimeError) as error:
            await self._end(publisher, f"the detector refused the stream: {one_line(error, limit=200)}")

    async def _watch(self, publisher: _Publisher) -> None:
        """A stream stopped elsewhere (the control API) ends its publisher; a silent publisher is lost (like a
        silent camera, after `sources.read_timeout_s`; before its first frame, `sources.open_timeout_s`)."""
        while not publisher.ended:
            await asyncio.sleep(WATCH_S)
            if publisher.stopping():
                await self._end(publisher, None)
                return
            limit = self._options.read_timeout_s if publisher.frames_received else self._options.open_timeout_s
            if time.monotonic() - publisher.last_frame_at > limit:
                what = "no video" if publisher.frames_received else "no video arrived"
                await self._end(publisher, f"publisher lost: {what} for {limit:g} s")
                return

    def _connection_changed(self, publisher: _Publisher) -> None:
        state = publisher.pc.connectionState
        if state in ("failed", "closed") and not publisher.ended:
            task = asyncio.ensure_future(self._end(publisher, f"publisher lost: WebRTC connection {state}"))
            publisher.tasks.append(task)

    async def _end(self, publisher: _Publisher, reason: str | None, remove: bool = False) -> None:
        """Free a publisher once. `remove` (DELETE, shutdown): the loop ends its stream now, cleanly; otherwise its
        capture side ends the stream with `reason` as its last error (lost), or it was already stopped."""
        if publisher.ended:
            return
        publisher.ended = True
        if self._publishers.get(publisher.name) is publisher:
            del self._publishers[publisher.name]
        current = asyncio.current_task()
        for task in publisher.tasks:
            if task is not current:
                task.cancel()
        if remove:
            await self._remove(publisher.name)
        publisher.frames.close(reason)
        await publisher.pc.close()
        if reason:
            log.warning("WHIP stream %s: %s", publisher.name, reason)
        else:
            log.info("WHIP stream %s ended", publisher.name)

    async def _remove(self, stream_name: str) -> None:
        try:
            done = self._detector.pipeline.remove_source(stream_name)
            await asyncio.wait_for(_answer_of(done), LOOP_ANSWER_S)
        except (KeyError, RuntimeError, TimeoutError) as error:  # already gone, or the loop has stopped
            log.debug("WHIP stream %s was not removed by the loop: %s", stream_name, one_line(error, limit=200))

    def _cors(self, request: Request) -> dict[str, str]:
        """Cross-origin callers: any origin when a token guards the service (the token is the gate), else only pages
        served from this machine's loopback."""
        origin = request.headers.get("origin")
        if origin is None:
            return {}
        if self._settings.token is not None:
            return {"Access-Control-Allow-Origin": "*"}
        if LOOPBACK_ORIGIN.match(origin):
            return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        return {"Vary": "Origin"}

    @staticmethod
    def _error(status: int, detail: str, cors: dict[str, str]) -> HTTPException:
        return HTTPException(status_code=status, detail=detail, headers=cors or None)


def _answer_of(command: Future[None]) -> asyncio.Future[None]:
    """Await a loop command's future without ever cancelling it: `wrap_future` alone passes a cancellation (a
    timeout, a task ended) on to the loop's future, and the loop then fails setting its result."""
    return asyncio.shield(asyncio.wrap_future(command))


async def _drain(track: MediaStreamTrack) -> None:
    """Receive and discard a track that is not scored (audio), so its frames do not pile up."""
    with contextlib.suppress(MediaStreamError):
        while True:
            await track.recv()
