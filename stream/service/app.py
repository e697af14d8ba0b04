"""The detector's HTTP service: FastAPI on uvicorn, on its own thread and asyncio loop — the control API, uploads,
`/healthz`, `/openapi.json`, and the routers of its extensions (WHIP, metrics).

An extension is any object with `router: fastapi.APIRouter` and `async def aclose(self) -> None`, called on the
service's loop when it shuts down. Every route but `/healthz` takes the bearer token when one is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from stream.capture.references import SourceError
from stream.capture.sources import Source
from stream.config import ServiceSettings
from stream.detector import Detector
from stream.records import StreamHealth, StreamState
from stream.service.auth import token_guard
from stream.service.routes.metrics import MetricsRoute
from stream.service.schemas import (
    STREAM_NAME,
    AddStream,
    ApiError,
    FaceOut,
    Liveness,
    Problem,
    StreamOut,
    UploadLimits,
    UploadOut,
)
from stream.service.uploads import Uploads, loop_took

log = logging.getLogger("deepfake_stream")

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
GRACE_S = 5  # open requests get this long to finish at shutdown
RUNNING = (StreamState.STARTING, StreamState.LIVE, StreamState.RECONNECTING)


class ServiceError(Exception):
    """The service cannot start: the message is one line for the user."""


class Extension(Protocol):
    """A part of the service with its own routes (WHIP ingest, metrics)."""

    router: APIRouter

    async def aclose(self) -> None: ...


def check_bind(settings: ServiceSettings) -> None:
    """A bind address other than loopback needs a token: refuse in one line otherwise."""
    if not settings.is_loopback() and settings.token is None:
        raise ServiceError(
            f"refusing to serve on {settings.host} without a token: anyone who can reach it could drive the "
            "detector; give --token TOKEN (or DEEPFAKE_STREAM_TOKEN), or serve on 127.0.0.1"
        )


def default_extensions(detector: Detector, settings: ServiceSettings) -> list[Extension]:
    """The extensions a served detector runs with: WHIP ingest (and its publish page at `/`) and, when the detector
    built one, its Prometheus metrics at `/metrics`."""
    from stream.service.whip import WhipIngest

    extensions: list[Extension] = [WhipIngest(detector, settings, token_guard(settings.token))]
    if detector.metrics is not None:
        extensions.append(MetricsRoute(detector.metrics, token_guard(settings.token)))
    return extensions


def _problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _one_line(error: RequestValidationError) -> str:
    """The first problem FastAPI found in a request, in one line (`body.name: String should match pattern …`)."""
    errors = error.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return " ".join(f"{where}: {first.get('msg', 'invalid')}{more}".split())


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": Problem} for code in (400, 401, 404, 408, 409, 413, 415, 422, 503, 507)
}


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: ERRORS[code] for code in (401, 422, *codes)}


def build_app(detector: Detector, settings: ServiceSettings, extensions: Sequence[Extension] = ()) -> FastAPI:
    """The service's FastAPI app over one detector (the detector's loop runs elsewhere: its commands and snapshots
    are thread-safe)."""
    uploads = Uploads(detector, settings)
    opening: set[str] = set()  # stream names being opened by a request right now

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            for extension in extensions:
                try:
                    await extension.aclose()
                except Exception:
                    log.exception("service: closing %s failed", type(extension).__name__)
            uploads.close()

    app = FastAPI(
        title="deepfake-stream",
        summary="Real-time deepfake detection for live video: streams, faces, uploads.",
        openapi_url=None,  # served below, behind the token
        docs_url=None,  # the interactive pages load scripts from a CDN: no outbound connection the user did not ask for
        redoc_url=None,
        lifespan=lifespan,
    )
    guard = Depends(token_guard(settings.token))

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return _problem(error.status, str(error))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        return _problem(422, _one_line(error))

    @app.exception_handler(Exception)
    async def failed(request: Request, error: Exception) -> JSONResponse:
        log.error("service: %s %s failed: %s: %s", request.method, request.url.path, type(error).__name__, error)
        return _problem(500, f"internal error: {type(error).__name__}")

    @app.get("/healthz", tags=["service"])
    async def healthz() -> Liveness:
        """Liveness: the service answers (no token needed)."""
        return Liveness(ok=True)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[guard])
    async def openapi() -> dict[str, Any]:
        return app.openapi()

    api = APIRouter(prefix="/api", dependencies=[guard])

    def sources_by_id() -> dict[str, Source]:
        return {source.stream_id: source for source in list(detector.sources)}  # the newest of a reused id

    def stream_out(stream_id: str, health: StreamHealth | None, source: Source | None) -> StreamOut:
        return StreamOut(
            stream_id=stream_id,
            kind=source.spec.kind if source else "unknown",
            source=source.spec.display if source else "",
            state=health.state if health else (source.state if source else StreamState.STARTING),
            fps_in=health.fps_in if health else 0.0,
            fps_scored=health.fps_scored if health else 0.0,
            frames_read=health.frames_read if health else 0,
            frames_dropped=max(0, health.frames_dropped) if health else 0,
            frames_thinned=health.frames_thinned if health else 0,
            reconnects=health.reconnects if health else 0,
            last_error=health.last_error if health else (source.last_error if source else None),
        )

    def streams() -> dict[str, StreamOut]:
        sources, health = sources_by_id(), {h.stream_id: h for h in detector.health()}
        ids = sorted(set(health) | set(sources))
        return {sid: stream_out(sid, health.get(sid), sources.get(sid)) for sid in ids}

    def running_ids() -> set[str]:
        return {sid for sid, stream in streams().items() if stream.state in RUNNING}

    @api.get("/streams", tags=["streams"], responses=_responses())
    async def list_streams() -> list[StreamOut]:
        """Every stream of this run with its health; ended ones keep their final health."""
        return list(streams().values())

    @api.get("/streams/{stream_id}", tags=["streams"], responses=_responses(404))
    async def get_stream(stream_id: str) -> StreamOut:
        found = streams().get(stream_id)
        if found is None:
            raise ApiError(404, f"no stream {stream_id!r}: GET /api/streams lists them")
        return found

    @api.post("/streams", status_code=201, tags=["streams"], responses=_responses(400, 409, 503))
    async def add_stream(body: AddStream) -> StreamOut:
        """Open a source (any reference run_stream.py accepts) and add it to the running detector."""
        name = body.name
        if name is not None and (name in opening or name in running_ids()):
            raise ApiError(409, f"stream {name!r} is already running: stop it first, or choose another name")
        if name is not None:
            opening.add(name)
        try:
            # Opening connects (an RTSP camera may take its whole open timeout): never on the event loop.
            source, added = await asyncio.to_thread(detector.add_source, body.source, name)
        except SourceError as error:
            raise ApiError(400, str(error)) from None
        finally:
            opening.discard(name or "")
        await loop_took(added, f"stream {source.stream_id!r}")
        return streams().get(source.stream_id) or stream_out(source.stream_id, None, source)

    @api.delete("/streams/{stream_id}", tags=["streams"], responses=_responses(404, 503))
    async def stop_stream(stream_id: str) -> StreamOut:
        """Stop a stream; its scores, faces and final health stay in the store."""
        if stream_id not in streams():
            raise ApiError(404, f"no stream {stream_id!r}: GET /api/streams lists them")
        removed = detector.pipeline.remove_source(stream_id)
        try:
            await asyncio.wait_for(asyncio.wrap_future(removed), STOP_TIMEOUT_S)
        except KeyError:
            pass  # it had ended already: its final health is what there is
        except RuntimeError as error:
            raise ApiError(503, f"{error}: its streams have all ended") from None
        except TimeoutError:
            raise ApiError(503, f"the detector's loop did not stop {stream_id!r} within {STOP_TIMEOUT_S:g} s") from None
        return streams()[stream_id]

    @api.get("/faces", tags=["faces"], responses=_responses())
    async def list_faces(
        stream: str | None = Query(default=None, pattern=STREAM_NAME, description="only this stream's faces"),
    ) -> list[FaceOut]:
        """The faces in view now, with their rolling p(fake) and verdict."""
        return [
            FaceOut(
                stream_id=face.stream_id,
                track_id=face.track_id,
                state=face.state,  # type: ignore[arg-type]
                verdict=face.verdict,
                rolling_p_fake=face.rolling_p_fake,
                frames_scored=face.frames_scored,
                crops=face.crops,
                crops_skipped=face.crops_skipped,
                first_seen=face.first_seen,
                last_seen=face.last_seen,
                first_t_media=face.first_t_media,
                last_t_media=face.last_t_media,
            )
            for face in detector.pipeline.faces()
            if stream is None or face.stream_id == stream
        ]

    @api.get("/uploads/limits", tags=["uploads"], responses=_responses())
    async def upload_limits() -> UploadLimits:
        """The largest video an upload may send."""
        return UploadLimits(max_bytes=uploads.max_bytes, max_mb=uploads.max_mb)

    @api.post(
        "/uploads",
        status_code=202,
        tags=["uploads"],
        responses=_responses(400, 408, 413, 415, 503, 507),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
            }
        },
    )
    async def upload(
        request: Request,
        filename: str | None = Query(default=None, max_length=255, description="the video's file name, to show"),
    ) -> UploadOut:
        """Send a video file as the request body; it is scored with the capacity the live streams leave free.
        Poll GET /api/uploads/{upload_id} for its progress and, once it has ended, its report."""
        if request.headers.get("content-type", "").lower().startswith("multipart/"):
            raise ApiError(415, "send the video file itself as the body (application/octet-stream), not a form")
        declared = request.headers.get("content-length")
        return await uploads.accept(request.stream(), int(declared) if declared else None, filename)

    @api.get("/uploads", tags=["uploads"], responses=_responses())
    async def list_uploads() -> list[UploadOut]:
        """This run's uploads, newest first, then those of earlier runs in the store."""
        return await uploads.listing()

    @api.get("/uploads/{upload_id}", tags=["uploads"], responses=_responses(404))
    async def get_upload(upload_id: str) -> UploadOut:
        """An upload's progress, and its report once it has ended."""
        return await uploads.describe(upload_id)

    app.include_router(api)
    for extension in extensions:
        app.include_router(extension.router)
    return app


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ServiceError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    return sock


class Service:
    """The app served by uvicorn on its own thread and event loop: `start()` returns its URL once it listens,
    `stop()` shuts it down (each extension's `aclose()` runs on its loop) and joins the thread."""

    def __init__(self, detector: Detector, settings: ServiceSettings, extensions: Sequence[Extension] = ()) -> None:
        check_bind(settings)
        self.detector = detector
        self.settings = settings
        self.app = build_app(detector, settings, extensions)
        self.url: str | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def start(self) -> str:
        """Listen (port 0: a free one), serve, record the URL (never the token) in the session; the base URL."""
        if self._thread is not None:
            raise RuntimeError("the service was started already")
        sock = _bind(self.settings.host, self.settings.port or 0)
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="on", timeout_graceful_shutdown=GRACE_S, access_log=False
        )
        self._server = server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, args=(server, sock), name="service", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started and self._thread.is_alive() and time.monotonic() < deadline:
            self._thread.join(0.01)
        if not server.started:
            self.stop()
            raise ServiceError(f"the service did not start: {self._failure or 'timed out'}")
        host = self.settings.host
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{sock.getsockname()[1]}/"
        self.detector.writer.set_service_url(self.detector.session_id, self.url)
        return self.url

    def _serve(self, server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            asyncio.run(server.serve(sockets=[sock]))
        except BaseException as error:  # SystemExit from uvicorn when the app's startup fails
            self._failure = error
            log.error("service: stopped: %s", error)
        finally:
            sock.close()

    def stop(self) -> None:
        """Shut down (open requests get a few seconds) and join the thread. Safe to call twice."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(STOP_TIMEOUT_S + GRACE_S)

    def __enter__(self) -> Service:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
