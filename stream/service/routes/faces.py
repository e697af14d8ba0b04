"""`/api/faces`: the faces in view now."""

from __future__ import annotations

from fastapi import APIRouter, Query

from stream.detector import Detector
from stream.service.schemas import STREAM_NAME, FaceOut, responses


def faces_router(detector: Detector) -> APIRouter:
    """The faces resource over one detector (the caller adds the token guard)."""
    api = APIRouter()

    @api.get("/faces", tags=["faces"], responses=responses())
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

    return api
