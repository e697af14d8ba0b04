"""`/api/streams`: list, inspect, add and stop the running detector's streams."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from stream.capture.references import SourceError
from stream.capture.sources import Source
from stream.config import ServiceSettings
from stream.detector import Detector
from stream.records import StreamHealth, StreamState
from stream.service.caps import RUNNING, Openings, over_cap, running_kinds
from stream.service.schemas import AddStream, ApiError, StreamOut, responses
from stream.service.source_policy import Refused, SourcePolicy
from stream.service.uploads import loop_took

STOP_TIMEOUT_S = 10.0


def streams_router(
    detector: Detector, settings: ServiceSettings, openings: Openings, policy: SourcePolicy
) -> APIRouter:
    """The streams resource over one detector (the caller adds the token guard): `policy` says what may be added,
    and sources are opened in `openings`."""
    api = APIRouter()

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
        """The loop's streams (ended ones until `service.ended_keep_s`), those opened and not taken by the loop yet,
        those being opened, and those that could not be opened (with the reason, also until `ended_keep_s`)."""
        health = {h.stream_id: h for h in detector.health()}
        sources = {sid: s for sid, s in sources_by_id().items() if sid in health or s.state in RUNNING}
        listed = {sid: stream_out(sid, health.get(sid), sources.get(sid)) for sid in set(health) | set(sources)}
        for sid, failed in openings.failed().items():
            if sid not in health:
                out = stream_out(sid, None, failed.source)
                listed[sid] = out.model_copy(update={"state": failed.state, "last_error": failed.reason})
        for sid, source in openings.opening().items():
            listed[sid] = stream_out(sid, None, source)
        return dict(sorted(listed.items()))

    def running_ids() -> set[str]:
        return {sid for sid, stream in streams().items() if stream.state in RUNNING}

    @api.get("/streams", tags=["streams"], responses=responses())
    async def list_streams() -> list[StreamOut]:
        """Every stream of this run with its health; ended ones keep their final health for `service.ended_keep_s`."""
        return list(streams().values())

    @api.get("/streams/{stream_id}", tags=["streams"], responses=responses(404))
    async def get_stream(stream_id: str) -> StreamOut:
        found = streams().get(stream_id)
        if found is None:
            raise ApiError(404, f"no stream {stream_id!r}: GET /api/streams lists them")
        return found

    @api.post("/streams", status_code=202, tags=["streams"], responses=responses(400, 403, 409, 429))
    async def add_stream(body: AddStream) -> StreamOut:
        """Add a source the source policy allows (GET /api/sources/policy) to the running detector: answered at once,
        `starting`; it is opened elsewhere and becomes `live`, or `failed` with the reason
        (GET /api/streams/{stream_id})."""
        try:
            spec = await asyncio.to_thread(policy.check, body.source)  # it may look a camera's host up
        except Refused as refused:
            raise ApiError(refused.status, str(refused)) from None
        name = body.name
        if name is not None and name in running_ids():
            raise ApiError(409, f"stream {name!r} is already running: stop it first, or choose another name")
        running = {sid for sid, kind in running_kinds(detector).items() if kind != "upload"} | set(openings.opening())
        if len(running) >= settings.max_streams:
            raise over_cap("max_streams", settings.max_streams, "too many streams are running: stop one first", 30)
        try:
            source = detector.prepare_source(spec, name)
        except SourceError as error:
            refused = policy.opening_failed(spec, error)
            raise ApiError(refused.status, str(refused)) from None
        if spec.kind == "file":
            # A local file opens at once: one that cannot be read is answered with the policy's one refusal (what
            # went wrong would say what the file is), never listed with its reason.
            try:
                added = await asyncio.wrap_future(openings.open_at_once(source))
            except SourceError as error:
                refused = policy.opening_failed(spec, error)
                raise ApiError(refused.status, str(refused)) from None
            await loop_took(added, f"stream {source.stream_id!r}")
            return streams().get(source.stream_id) or stream_out(source.stream_id, None, source)
        openings.open(source)
        return stream_out(source.stream_id, None, source)

    @api.delete("/streams/{stream_id}", tags=["streams"], responses=responses(404, 503))
    async def stop_stream(stream_id: str) -> StreamOut:
        """Stop a stream; its scores, faces and final health stay in the store."""
        if stream_id not in streams():
            raise ApiError(404, f"no stream {stream_id!r}: GET /api/streams lists them")
        if openings.cancel(stream_id):
            return streams()[stream_id]  # being opened: `ended`, it will not run
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
