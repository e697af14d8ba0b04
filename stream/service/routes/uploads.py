"""`/api/uploads`: send a video to be scored, follow it, read its report."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request

from stream.service.schemas import ApiError, UploadLimits, UploadOut, responses
from stream.service.uploads import Uploads


def uploads_router(uploads: Uploads) -> APIRouter:
    """The uploads resource (the caller adds the token guard)."""
    api = APIRouter()

    @api.get("/uploads/limits", tags=["uploads"], responses=responses())
    async def upload_limits() -> UploadLimits:
        """The largest video an upload may send."""
        return UploadLimits(max_bytes=uploads.max_bytes, max_mb=uploads.max_mb)

    @api.post(
        "/uploads",
        status_code=202,
        tags=["uploads"],
        responses=responses(400, 408, 413, 415, 503, 507),
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
        """Send a video file as the request body (Content-Type application/octet-stream or video/*); it is scored
        with the capacity the live streams leave free. Poll GET /api/uploads/{upload_id} for its progress and, once
        it has ended, its report."""
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind != "application/octet-stream" and not kind.startswith("video/"):
            # A form or text is what another site's page can send without asking first (a CORS "simple" request).
            raise ApiError(
                415,
                "send the video file itself as the body with Content-Type: application/octet-stream (or video/*), "
                "not a form or text",
            )
        declared = request.headers.get("content-length")
        return await uploads.accept(request.stream(), int(declared) if declared else None, filename)

    @api.get("/uploads", tags=["uploads"], responses=responses())
    async def list_uploads() -> list[UploadOut]:
        """This run's uploads, newest first, then those of earlier runs in the store."""
        return await uploads.listing()

    @api.get("/uploads/{upload_id}", tags=["uploads"], responses=responses(404))
    async def get_upload(upload_id: str) -> UploadOut:
        """An upload's progress, and its report once it has ended."""
        return await uploads.describe(upload_id)

    return api
