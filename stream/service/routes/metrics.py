"""`GET /metrics`: the detector's Prometheus metrics, behind the service's token."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Response

from stream.sinks.metrics import Metrics


class MetricsRoute:
    """A service extension serving one detector's metrics sink as Prometheus text."""

    def __init__(self, metrics: Metrics, guard: Callable[..., Any]) -> None:
        self._metrics = metrics
        self.router = APIRouter()
        self.router.add_api_route(
            "/metrics",
            self._scrape,
            methods=["GET"],
            response_class=Response,
            dependencies=[Depends(guard)],
            summary="Prometheus metrics",
            responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
        )

    def _scrape(self) -> Response:
        body, content_type = self._metrics.exposition()
        return Response(body, media_type=content_type)

    async def aclose(self) -> None:
        """Nothing runs on the service's loop."""
