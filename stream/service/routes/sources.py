"""`/api/sources/policy`: what kinds of source this detector's API may add, and why the others are off."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from stream.config.sections import API_SOURCE_KINDS
from stream.service.schemas import responses
from stream.service.source_policy import SourcePolicy


class KindOut(BaseModel):
    kind: str = Field(description="rtsp | whip | demo | file | screen | webcam")
    allowed: bool
    reason: str | None = Field(description="why the API may not add this kind (None when it may)")


class SourcesPolicyOut(BaseModel):
    """The source policy (`service.api_sources`, `service.media_dir`, `service.camera_hosts`)."""

    kinds: list[KindOut]
    media_dir: str | None = Field(description="the only folder files may come from (relative paths start there)")
    camera_hosts: list[str] = Field(description="hosts or networks cameras may be on; empty: any host")


def sources_router(policy: SourcePolicy) -> APIRouter:
    """The source policy, read-only (the caller adds the token guard)."""
    api = APIRouter()

    @api.get("/sources/policy", tags=["streams"], responses=responses())
    async def source_policy() -> SourcesPolicyOut:
        """What POST /api/streams (and WHIP) may add here; the Cameras page offers only these."""
        kinds = [policy.kind_policy(kind) for kind in API_SOURCE_KINDS]
        return SourcesPolicyOut(
            kinds=[KindOut(kind=k.kind, allowed=k.allowed, reason=k.reason) for k in kinds],
            media_dir=str(policy.media_dir) if policy.media_dir is not None else None,
            camera_hosts=list(policy.camera_hosts),
        )

    return api
