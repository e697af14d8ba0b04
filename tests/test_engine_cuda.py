"""The CUDA path (runs where a CUDA GPU is, skipped elsewhere): the autocast engine (bf16, or fp16 without bf16)
passes the parity gate against the CPU fp32 reference with a responsive head, `build_engine` picks it for
`--device cuda:N`, and the loop scores every face through it on the GPU."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from model.engines import build_engine
from model.engines.parity import check_parity
from model.engines.torch_engine import TorchEngine
from model.weights import LoadedModel
from stream.capture.references import SourceSpec
from stream.capture.sources import Source
from stream.config import Settings, with_overrides
from stream.loop.pipeline import Pipeline
from stream.records import WindowScore
from tests.crop_sets import held_back_crops, responsive_seed_model
from tests.doubles import BLUE, RED, FaceFactory, RecordingSink, Square, stub_producer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def own_copy() -> LoadedModel:
    """The responsive model with a network of its own: a CUDA engine moves its network to the GPU in place, and
    responsive_seed_model() is shared by every test in the process."""
    loaded = responsive_seed_model()
    return dataclasses.replace(loaded, network=copy.deepcopy(loaded.network))


@pytest.mark.parametrize("precision", ["auto", "fp16", "bf16"])
def test_cuda_engine_passes_the_gate_against_the_cpu_reference(precision: str) -> None:
    loaded = responsive_seed_model()
    reference = TorchEngine(loaded.network, torch.device("cpu"), precision="fp32")
    gpu_network = copy.deepcopy(loaded.network)  # the engine moves its network to the GPU; the reference stays
    engine = TorchEngine(gpu_network, torch.device("cuda:0"), precision=precision)
    result = check_parity(reference, engine, held_back_crops(24), loaded.preprocessing, 8)
    assert result.passed, result.describe()
    assert result.p_fake_spread > 0.1


def test_build_engine_on_cuda_index() -> None:
    engine = build_engine(own_copy(), f"cuda:{torch.cuda.device_count() - 1}", "auto")
    assert engine.device.type == "cuda" and engine.name.startswith("torch-cuda-")


def test_loop_scores_every_face_on_the_gpu() -> None:
    loaded = own_copy()
    settings = with_overrides(
        Settings(),
        {"faces.mode": "full_frame", "model.window": 10, "clips.enabled": False, "model.device": "cuda"},
        "test",
    )
    engine = build_engine(loaded, "cuda", "auto")
    sink = RecordingSink()
    pipeline = Pipeline(engine, loaded, "gpu-session", settings, [sink], FaceFactory())
    scene = lambda index: (Square(RED, 10, 40), Square(BLUE, 110, 40))  # noqa: E731
    spec = SourceSpec("file", "stub", live=False, display="stub")
    pipeline.add_source(Source("cam", spec, settings.sources, producer=stub_producer(scene, 30)))
    pipeline.run(duration_s=60)
    pipeline.close()
    scores = sink.of(WindowScore)
    assert {score.track_id for score in scores} == {1, 2}
    assert len(scores) == 2 * (30 - 10 + 1)
    assert all(0.0 <= score.p_fake <= 1.0 for score in scores)
