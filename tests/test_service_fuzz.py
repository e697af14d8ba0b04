"""A schema-driven fuzz run: schemathesis generates requests from the service's own /openapi.json and sends them to
the real service as `run_stream.py --serve` runs it (control API, uploads, WHIP, /metrics; uvicorn on 127.0.0.1 in a
private network namespace, with its token); none may get a 5xx, and
every answer must be one the schema documents. Bounded in count, so it takes seconds; a handler that raises is
found (its 500 is both a server error and an undocumented status)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from model.weights import LoadedModel
from tests.netns import private_network
from tests.test_service_api import serving

TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES = 25  # per operation, requests that fit the schema and requests that do not
NO_CACHE = SchemathesisConfig.from_dict({"cache": {"enabled": False}})  # leave no .schemathesis/ folder behind
# WHIP offers are SDP text: sent as plain text is sent (schemathesis has no serializer for application/sdp).
schemathesis.serializer.alias("application/sdp", "text/plain")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module", autouse=True)
def private_netns() -> Iterator[None]:
    with private_network():
        yield


def test_generated_requests_never_get_a_server_error(
    seed_model: LoadedModel, engine_cache: Path, tmp_path: Path
) -> None:
    overrides = {"sources.open_timeout_s": 2, "service.upload_max_mb": 1}
    db = tmp_path / "runs" / "deepfake.db"
    with serving(seed_model, db, engine_cache, overrides, token=TOKEN, full=True) as running:
        schema = schemathesis.openapi.from_url(running.url + "openapi.json", config=NO_CACHE, headers=AUTH)
        operations = [result.ok() for result in schema.get_all_operations()]
        labels = [op.label for op in operations]
        assert len(operations) >= 12 and "POST /whip/{stream_name}" in labels and "GET /metrics" in labels, labels
        failures: list[str] = []
        for operation in operations:

            @hypothesis.given(case=operation.as_strategy() | operation.as_strategy(GenerationMode.NEGATIVE))
            @hypothesis.settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def check(case: schemathesis.Case) -> None:
                response = case.call(headers=AUTH, timeout=30)
                case.validate_response(response, checks=CHECKS)

            try:
                check()
            except (Exception, BaseExceptionGroup) as error:  # schemathesis reports its findings as a group
                failures.append(f"{operation.label}: {' '.join(str(error).split())[:600]}")
        assert not failures, "\n".join(failures)
        assert running.client.get("/healthz").json() == {"ok": True}
        assert running.client.get("/api/streams").status_code == 200
