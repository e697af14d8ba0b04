"""The detector's HTTP service: FastAPI on uvicorn, on its own thread and asyncio loop — the control API, uploads,
`/healthz`, `/openapi.json`, and the routers of its extensions (WHIP, metrics).

An extension is any object with `router: fastapi.APIRouter` and `async def aclose(self) -> None`, called on the
service's loop when it shuts down. Every route but `/healthz` takes the admin's bearer token when one is set (WHIP
also the publish token: stream/service/auth.py); stream/service/host_check.py turns away other sites' requests.
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
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from stream.config import ServiceSettings
from stream.detector import Detector
from stream.service.auth import publish_guard, token_guard
from stream.service.caps import ConnectionLimit, Openings
from stream.service.host_check import HostCheck
from stream.service.listen import ServiceError, check_bind, check_tls, listen
from stream.service.routes.faces import faces_router
from stream.service.routes.metrics import MetricsRoute
from stream.service.routes.sources import sources_router
from stream.service.routes.streams import STOP_TIMEOUT_S, streams_router
from stream.service.routes.uploads import uploads_router
from stream.service.schemas import (
    ApiError,
    Liveness,
)
from stream.service.source_policy import SourcePolicy
from stream.service.uploads import Uploads
from stream.text import one_line

log = logging.getLogger("deepfake_stream")

START_TIMEOUT_S = 30.0
GRACE_S = 5  # open requests get this long to finish at shutdown


class Extension(Protocol):
    """A part of the service with its own routes (WHIP ingest, metrics)."""

    router: APIRouter

    async def aclose(self) -> None: ...


def default_extensions(detector: Detector, settings: ServiceSettings) -> list[Extension]:
    """The extensions a served detector runs with: WHIP ingest (and its publish page at `/`) and, when the detector
    built one, its Prometheus metrics at `/metrics`."""
    from stream.service.whip import WhipIngest

    whip_guard = publish_guard(settings.token, settings.publish_token)
    extensions: list[Extension] = [WhipIngest(detector, settings, whip_guard)]
    if detector.metrics is not None:
        extensions.append(MetricsRoute(detector.metrics, token_guard(settings.token, settings.publish_token)))
    return extensions


def _problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _first_problem(error: RequestValidationError) -> str:
    """The first problem FastAPI found in a request, in one line (`body.name: String should match pattern …`)."""
    errors = error.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return one_line(f"{where}: {first.get('msg', 'invalid')}{more}")


def build_app(detector: Detector, settings: ServiceSettings, extensions: Sequence[Extension] = ()) -> FastAPI:
    """The service's FastAPI app over one detector (the detector's loop runs elsewhere: its commands and snapshots
    are thread-safe)."""
    uploads = Uploads(detector, settings)
    policy = SourcePolicy(settings)
    openings = Openings(
        detector.start_source,
        settings.max_opening,
        settings.ended_keep_s,
        explain=lambda source, error: str(policy.opening_failed(source.spec, error)),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        uploads.start()
        try:
            yield
        finally:
            openings.close()
            for extension in extensions:
                try:
                    await extension.aclose()
                except Exception:
                    log.exception("service: closing %s failed", type(extension).__name__)
            await uploads.aclose()

    app = FastAPI(
        title="deepfake-stream",
        summary="Real-time deepfake detection for live video: streams, faces, uploads.",
        openapi_url=None,  # served below, behind the token
        docs_url=None,  # the interactive pages load scripts from a CDN: no outbound connection the user did not ask for
        redoc_url=None,
        lifespan=lifespan,
    )
    app.add_middleware(HostCheck, settings=settings)
    guard = Depends(token_guard(settings.token, settings.publish_token))

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return _problem(error.status, str(error), error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        return _problem(422, _first_problem(error))

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
    api.include_router(streams_router(detector, settings, openings, policy))
    api.include_router(sources_router(policy))
    api.include_router(faces_router(detector))
    api.include_router(uploads_router(uploads))
    app.include_router(api)
    for extension in extensions:
        app.include_router(extension.router)
    app.add_middleware(ConnectionLimit, limit=settings.max_connections)
    return app


class Service:
    """The app served by uvicorn on its own thread and event loop: `start()` returns its URL once it listens,
    `stop()` shuts it down (each extension's `aclose()` runs on its loop) and joins the thread.

    `listener`: a socket already listening on the settings' address (stream/service/listen.py, opened before the
    model loaded); the service takes it over and closes it. Without one, `start()` binds the port itself."""

    def __init__(
        self,
        detector: Detector,
        settings: ServiceSettings,
        extensions: Sequence[Extension] = (),
        listener: socket.socket | None = None,
    ) -> None:
        check_bind(settings)
        check_tls(settings)
        self.detector = detector
        self.settings = settings
        self._listener = listener
        self.app = build_app(detector, settings, extensions)
        self.url: str | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    def start(self) -> str:
        """Listen (port 0: a free one), serve, record the URL clients call (`public_url`, else this one; never the
        token) in the session; the base URL it listens on (https:// with TLS)."""
        if self._thread is not None:
            raise RuntimeError("the service was started already")
        sock, self._listener = self._listener or listen(self.settings.host, self.settings.port or 0), None
        # uvicorn's loggers go through the process's logging (no handlers, colours or levels of its own): quiet
        # unless the run is verbose, and the access log only then (stream/config/logs.py).
        access = logging.getLogger("uvicorn.access").isEnabledFor(logging.INFO)
        config = uvicorn.Config(
            self.app,
            log_config=None,
            log_level=None,
            lifespan="on",
            timeout_graceful_shutdown=GRACE_S,
            access_log=access,
            ssl_certfile=self.settings.tls_cert,
            ssl_keyfile=self.settings.tls_key,
            # Connections held open beyond the requests served (ConnectionLimit answers those with 429): uvicorn
            # answers their requests with its own 503.
            limit_concurrency=2 * self.settings.max_connections,
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
        host, scheme = self.settings.host, "https" if self.settings.tls else "http"
        self.url = f"{scheme}://{f'[{host}]' if ':' in host else host}:{sock.getsockname()[1]}/"
        if not self.settings.is_loopback() and not self.settings.tls:
            log.warning(
                "service: serving on %s without TLS: tokens and video cross the network readable by anyone on it; "
                "give --tls-cert and --tls-key",
                host,
            )
        public = self.settings.public_url
        self.detector.writer.set_service_url(self.detector.session_id, public.rstrip("/") + "/" if public else self.url)
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
