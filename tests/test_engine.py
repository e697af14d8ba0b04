"""The CPU engine (ONNX Runtime over the exported graph) equals the PyTorch reference."""

from __future__ import annotations

import os

import pytest
import torch

from model.cpu import cgroup_cpu_quota, cpu_budget
from model.engines import EngineError, build_engine
from model.engines.export import export_onnx
from model.engines.onnxruntime_engine import OnnxEngine
from model.engines.torch_engine import TorchEngine
from model.preprocess import crops_to_batch
from model.weights import LoadedModel, random_model
from tests.helpers import astronaut_face_bgr


@pytest.fixture(scope="module")
def crops() -> torch.Tensor:
    face = astronaut_face_bgr()
    return crops_to_batch([face, face[::-1].copy(), face[20:, 10:], face[:, ::-1].copy(), face[::2, ::2]])


@pytest.mark.parametrize("arch", ["seed", "temporal"])
def test_onnxruntime_matches_torch(arch, crops, engine_cache) -> None:
    loaded = random_model(arch)
    reference = TorchEngine(loaded.network, torch.device("cpu"))
    onnx = build_engine(loaded, "cpu", "onnxruntime", engine_cache)
    assert isinstance(onnx, OnnxEngine)
    for batch in (crops[:1], crops):
        expected, actual = reference.encode(batch), onnx.encode(batch)
        assert torch.allclose(actual.features, expected.features, atol=1e-4)
        if arch == "seed":
            assert torch.allclose(actual.logits, expected.logits, atol=1e-4)
        else:
            assert actual.logits is None
    window = onnx.encode(crops)
    stacked = type(window)(window.features.unsqueeze(0), None if window.logits is None else window.logits.unsqueeze(0))
    assert torch.allclose(onnx.score(stacked, "mean"), reference.score(stacked, "mean"), atol=1e-6)


def test_exported_graph_is_cached_by_weights_hash(seed_model: LoadedModel, engine_cache) -> None:
    first = export_onnx(seed_model, engine_cache, 112)
    modified = first.stat().st_mtime_ns
    assert export_onnx(seed_model, engine_cache, 112) == first
    assert first.stat().st_mtime_ns == modified
    assert seed_model.weights_hash in first.name


def test_bad_device_and_engine_names_are_clear(seed_model) -> None:
    with pytest.raises(EngineError, match="--device must be one of"):
        build_engine(seed_model, "tpu")
    with pytest.raises(EngineError, match="cpu engine must be one of"):
        build_engine(seed_model, "cpu", "tensorrt")
    if not torch.cuda.is_available():
        with pytest.raises(EngineError, match="no CUDA GPU"):
            build_engine(seed_model, "cuda")


def test_torch_precision_is_explicit(seed_model) -> None:
    assert TorchEngine(random_model().network, torch.device("cpu")).name == "torch-cpu-fp32"
    with pytest.raises(EngineError, match="precision must be one of"):
        TorchEngine(random_model().network, torch.device("cpu"), precision="int8")


@pytest.fixture
def torch_threads():
    """Put torch's intra-op thread count back after a test that changes it (it is process-wide)."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_cpu_torch_engine_sets_an_explicit_thread_count(torch_threads, monkeypatch) -> None:
    budget = cpu_budget()
    assert 1 <= budget <= len(os.sched_getaffinity(0))
    torch.set_num_threads(budget + 5)  # whatever the process had: a library's choice, a default blind to a quota
    engine = TorchEngine(random_model().network, torch.device("cpu"))
    assert torch.get_num_threads() == budget == engine.threads
    assert TorchEngine(random_model().network, torch.device("cpu"), threads=1).threads == torch.get_num_threads() == 1

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})  # a process pinned to one CPU (taskset)
    TorchEngine(random_model().network, torch.device("cpu"))
    assert torch.get_num_threads() == 1
    with pytest.raises(EngineError, match="threads must be"):
        TorchEngine(random_model().network, torch.device("cpu"), threads=-1)


@pytest.mark.parametrize(
    ("membership", "files", "expected"),
    [
        ("0::/box\n", {"box/cpu.max": "150000 100000\n"}, 1.5),
        ("0::/\n", {"cpu.max": "max 100000\n"}, None),
        (
            "4:cpu,cpuacct:/box\n",
            {"cpu,cpuacct/box/cpu.cfs_quota_us": "200000", "cpu,cpuacct/box/cpu.cfs_period_us": "100000"},
            2.0,
        ),
        (
            "4:cpu,cpuacct:/box\n",
            {"cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
            None,
        ),
        ("1:memory:/box\n", {}, None),
    ],
)
def test_cgroup_cpu_quota_reads_v1_and_v2(tmp_path, membership, files, expected) -> None:
    (tmp_path / "cgroup").write_text(membership)
    for name, text in files.items():
        (tmp_path / "fs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "fs" / name).write_text(text)
    assert cgroup_cpu_quota(tmp_path / "fs", tmp_path / "cgroup") == expected
