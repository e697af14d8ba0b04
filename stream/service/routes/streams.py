"""`/api/streams`: list, inspect, add and stop the running detector's streams."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from stream.capture.references import SourceError
from stream.capture.sources import Source
from stream.detector import Detector
from stream.records import StreamHealth, StreamState
from stream.service.schemas import AddStream, ApiError, StreamOut, responses
from stream.service.source_policy import Refused, SourcePolicy
from stream.service.uploads import loop_took

STOP_TIMEOUT_S = 10.0
RUNNING = (StreamState.STARTING, StreamState.LIVE, StreamState.RECONNECTING)


def streams_router(detector: Detector, policy: SourcePolicy | None = None) -> APIRouter:
    """The streams resource over one detector (the caller adds the token guard); `policy` says what may be added
    (default: the detector's service settings)."""
    api = APIRouter()
    policy = policy or SourcePolicy(detector.settings.service)
    opening: set[str] = set()  # stream names being opened by a request right now

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
            stop_reason=health.stop_reason if health else None,
            percent_read=None if health is None or health.percent_read is None else round(health.percent_read, 1),
        )

    def streams() -> dict[str, StreamOut]:
        sources, health = sources_by_id(), {h.stream_id: h for h in detector.health()}
        ids = sorted(set(health) | set(sources))
        return {sid: stream_out(sid, health.get(sid), sources.get(sid)) for sid in ids}

    def running_ids() -> set[str]:
        return {sid for sid, stream in streams().items() if stream.state in RUNNING}

    @api.get("/streams", tags=["streams"], responses=responses())
    async def list_streams() -> list[StreamOut]:
        """Every stream of this run with its health; ended ones keep their final health."""
        return list(streams().values())

    @api.get("/streams/{stream_id}", tags=["streams"], responses=responses(404))
    async def get_stream(stream_id: str) -> StreamOut:
        found = streams().get(stream_id)
        if found is None:
            raise ApiError(404, f"no stream {stream_id!r}: GET /api/streams lists them")
        return found

    @api.post("/streams", status_code=201, tags=["streams"], responses=responses(400, 403, 409, 503))
    async def add_stream(body: AddStream) -> StreamOut:
        """Open a source the source policy allows (GET /api/sources/policy) and add it to the running detector."""
        try:
            spec = await asyncio.to_thread(policy.check, body.source)  # it may look a camera's host up
        except Refused as refused:
            raise ApiError(refused.status, str(refused)) from None
        name = body.name
        if name is not None and (name in opening or name in running_ids()):
            raise ApiError(409, f"stream {name!r} is already running: stop it first, or choose another name")
        if name is not None:
            opening.add(name)
        try:
            # Opening connects (an RTSP camera may take its whole open timeout): never on the event loop.
            source, added = await asyncio.to_thread(detector.add_source, spec, name)
        except SourceError as error:
            refused = policy.opening_failed(spec, error)
            raise ApiError(refused.status, str(refused)) from None
        finally:
            opening.discard(name or "")
        await loop_took(added, f"stream {source.stream_id!r}")
        return streams().get(source.stream_id) or stream_out(source.stream_id, None, source)

    @api.delete("/streams/{stream_id}", tags=["streams"], responses=responses(404, 503))
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

    return api
