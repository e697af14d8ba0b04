"""`--cpu-engine auto` and the OpenVINO engines: every CPU engine stays within the parity gate's tolerance of the
PyTorch reference, a deliberately wrong engine is refused and auto falls back, the engines' timing is cached per
(CPU, shapes, engine versions, candidates) and the gate per (weights, calibration, window): a new checkpoint or
window is gated again, never timed again."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
import torch

import model.engines.choice as engine_choice
from model.cpu import cpu_description
from model.engines import Calibration, EngineChoice, build_engine
from model.engines.choice import AutoChoice, choose_cpu_engine, gate_key
from model.engines.named import cpu_engine_named
from model.engines.onnxruntime_engine import OnnxEngine
from model.engines.onnxruntime_int8 import OnnxInt8Engine
from model.engines.openvino_engine import OpenVinoEngine
from model.engines.parity import P_FAKE_DELTA_MAX, check_parity
from model.engines.timing import measure, timing_key
from model.engines.torch_engine import TorchEngine
from model.preprocess import crops_to_batch
from model.weights import LoadedModel, random_model
from stream.capture.references import parse_source
from stream.config import Settings, with_overrides
from stream.detector import Detector
from stream.records import VerdictState
from stream.store import open_reader
from tests import media
from tests.crop_sets import calibration_crops, held_back_crops, responsive_seed_model
from tests.doubles import FakeEngine
from tests.pipeline_run import run_specs


@pytest.fixture(scope="module")
def responsive() -> LoadedModel:
    return responsive_seed_model()


@pytest.fixture(scope="module")
def calibration() -> Calibration:
    return Calibration(calibration_crops(), held_back_crops(), 8)


@pytest.mark.parametrize("name", ["openvino", "openvino-int8", "onnxruntime-int8"])
def test_every_cpu_engine_passes_the_gate_against_the_pytorch_reference(name, responsive, calibration, engine_cache):
    reference = TorchEngine(responsive.network, torch.device("cpu"), precision="fp32")
    engine = cpu_engine_named(name, responsive, engine_cache, calibration)
    assert engine.name == name
    result = check_parity(reference, engine, calibration.held_back, responsive.preprocessing, calibration.window)
    assert result.passed, result.describe()
    assert result.p_fake_spread > 0.1  # the head responds, so |dp_fake| is a real test
    for crops in (calibration.held_back[:1], calibration.held_back[:2], calibration.held_back[:5]):
        outputs = engine.encode(crops_to_batch(crops))  # static (1, 2) and dynamic batch shapes alike
        assert outputs.features.shape == (len(crops), 2048) and outputs.logits.shape == (len(crops), 2)


def test_openvino_engine_runs_a_static_shape_for_small_batches(responsive, engine_cache, calibration):
    engine = cpu_engine_named("openvino", responsive, engine_cache, calibration)
    assert isinstance(engine, OpenVinoEngine)
    batch = crops_to_batch(calibration.held_back[:3])
    together = engine.encode(batch).features
    one_by_one = torch.cat([engine.encode(batch[i : i + 1]).features for i in range(3)])
    assert torch.allclose(together, one_by_one, atol=1e-4)


def broken_int8(name, loaded, cache_dir, calibration):
    """A candidate made deliberately wrong: int8 calibrated on black crops only."""
    black = [np.zeros_like(crop) for crop in calibration.fit]
    return OnnxInt8Engine(loaded, cache_dir, calibration_crops=black)


def rates_by_name(**rates: float):
    """A timer that times nothing: each engine's crops/s by its name (100 for any other), and a record of its calls."""
    calls: list[list[str]] = []

    def timer(engines, size):
        calls.append(sorted(engines))
        return {name: rates.get(name.replace("_", "-"), 100.0) for name in engines}

    timer.calls = calls
    return timer


def test_auto_refuses_a_wrong_engine_and_falls_back_to_fp32_with_a_warning(
    responsive, calibration, tmp_path, caplog
) -> None:
    timer = rates_by_name(broken=300.0)  # the wrong engine is the fastest: the gate alone keeps it out
    with caplog.at_level(logging.WARNING, logger="deepfake_stream"):
        engine = choose_cpu_engine(responsive, tmp_path, calibration, ("onnxruntime", "broken"), broken_int8, timer)
    assert type(engine) is OnnxEngine
    assert "refused by the parity gate" in caplog.text
    assert engine.choice is not None and engine.choice.how == "auto" and engine.choice.name == "onnxruntime-cpu"
    assert engine.choice.line.startswith("auto chose onnxruntime at 100 crops/s")
    assert "broken: refused by the parity gate" in engine.choice.line
    assert engine.choice.gate == ""  # the winner is the gate's reference: it was never gated
    (gates,) = tmp_path.glob("engine-gate-*.json")
    assert json.loads(gates.read_text())["broken"]["passed"] is False
    (timing,) = tmp_path.glob("engine-timing-*.json")
    assert json.loads(timing.read_text())["rates"] == {"broken": 300.0, "onnxruntime": 100.0}


def test_auto_timing_is_cached_and_reused_for_another_checkpoint(responsive, calibration, tmp_path) -> None:
    built: list[str] = []
    timed: list[int] = []

    def counting(name, loaded, cache_dir, calibration):
        built.append(name)
        return cpu_engine_named(name, loaded, cache_dir, calibration)

    def timer(engines, size):
        timed.append(len(engines))
        return measure(engines, size)

    candidates = ("onnxruntime", "openvino")
    first = choose_cpu_engine(responsive, tmp_path, calibration, candidates, counting, timer)
    assert built == ["openvino"] and timed == [2] and "cached" not in first.choice.line
    winner = first.choice.line.split()[2]  # "auto chose WINNER at …": which one wins depends on the machine's load
    assert winner in candidates and first.choice.crops_per_s > 0
    assert first.choice.name == first.name and first.choice.how == "auto"
    built.clear()
    again = choose_cpu_engine(responsive, tmp_path, calibration, candidates, counting, timer)
    assert "timing cached" in again.choice.line and again.name == first.name and timed == [2]
    assert built == ([] if winner == "onnxruntime" else ["openvino"])  # only the winner is built, no gate
    built.clear()
    other = random_model("seed", 123)  # another checkpoint: another gate key, the same timing key
    assert gate_key(other, calibration, "cpu") != gate_key(responsive, calibration, "cpu")
    changed = choose_cpu_engine(other, tmp_path, calibration, candidates, counting, timer)
    assert "timing cached" in changed.choice.line and timed == [2]
    assert built == ([] if winner == "onnxruntime" else ["openvino"])  # gated again where it can win
    assert len(list(tmp_path.glob("engine-timing-*.json"))) == 1


def test_a_new_window_or_checkpoint_is_gated_again_without_timing_again(
    responsive, calibration, tmp_path, monkeypatch
) -> None:
    gated: list[tuple[str, int]] = []

    def counting_gate(reference, candidate, crops, preprocessing, window, *rest):
        gated.append((candidate.name, window))
        return check_parity(reference, candidate, crops, preprocessing, window, *rest)

    monkeypatch.setattr(engine_choice, "check_parity", counting_gate)
    timer = rates_by_name(openvino=300.0)
    candidates = ("onnxruntime", "openvino")
    first = choose_cpu_engine(responsive, tmp_path, calibration, candidates, timer=timer)
    assert timer.calls == [["onnxruntime", "openvino"]] and gated == [("openvino", calibration.window)]
    assert first.name == "openvino" and first.choice.gate.startswith("parity PASS")
    assert first.choice.line.startswith("auto chose openvino at 300 crops/s")

    same = choose_cpu_engine(responsive, tmp_path, calibration, candidates, timer=timer)
    assert same.name == "openvino" and "timing cached" in same.choice.line and same.choice.gate == first.choice.gate
    assert len(timer.calls) == 1 and len(gated) == 1  # nothing timed or gated again

    other_window = dataclasses.replace(calibration, window=calibration.window // 2)
    served = choose_cpu_engine(responsive, tmp_path, other_window, candidates, timer=timer)
    assert served.name == "openvino" and len(timer.calls) == 1
    assert gated[1:] == [("openvino", other_window.window)]

    other_checkpoint = random_model("seed", 123)
    served = choose_cpu_engine(other_checkpoint, tmp_path, calibration, candidates, timer=timer)
    assert served.name == "openvino" and len(timer.calls) == 1
    assert gated[2:] == [("openvino", calibration.window)]
    assert len(list(tmp_path.glob("engine-gate-*.json"))) == 3


def test_a_corrupt_cache_file_is_timed_again(responsive, calibration, tmp_path) -> None:
    candidates = ("onnxruntime",)
    key = timing_key(responsive.arch, responsive.preprocessing.input_size, cpu_description(), candidates)
    (tmp_path / f"engine-timing-{key}.json").write_text("{not json")
    timer = rates_by_name()
    engine = choose_cpu_engine(responsive, tmp_path, calibration, candidates, timer=timer)
    assert "cached" not in engine.choice.line and type(engine) is OnnxEngine and len(timer.calls) == 1


def test_build_engine_auto_goes_through_the_choice(responsive, calibration, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(engine_choice, "CANDIDATES", ("onnxruntime",))  # keep the test short: one candidate
    engine = build_engine(responsive, "cpu", "auto", tmp_path, calibration)
    assert engine.choice is not None and engine.choice.line.startswith("auto chose onnxruntime")
    with pytest.raises(Exception, match="calibration"):
        build_engine(responsive, "cpu", "auto", tmp_path)


def test_engine_choice_describes_itself() -> None:
    choice = AutoChoice("openvino-int8", 295.4, {"openvino-int8": 295.4, "onnxruntime": 114.0}, {"x": "no"})
    assert choice.describe() == (
        "auto chose openvino-int8 at 295 crops/s (batch 1/4 on this CPU); others onnxruntime 114; not used: x: no"
    )
    cached = dataclasses.replace(choice, cached=True)
    assert cached.describe().startswith(
        "auto chose openvino-int8 at 295 crops/s (batch 1/4 on this CPU, timing cached)"
    )


def test_no_verdict_differs_between_fp32_and_int8_on_a_test_video(tmp_path, engine_cache, calibration) -> None:
    """The whole pipeline over a video with a colour face (the fitted head: FAKE) and a gray one (REAL), once with fp32
    ONNX Runtime and once with OpenVINO int8: the same faces, the same verdicts, window scores within the gate."""
    video = media.write_video(tmp_path / "colour_gray.mkv", media.render(media.colour_and_gray_faces(), 40))
    loaded = dataclasses.replace(responsive_seed_model(), calibrated=True)  # verdicts may move off UNSURE
    runs = {}
    for name in ("onnxruntime", "openvino-int8"):
        engine = cpu_engine_named(name, loaded, engine_cache, calibration)
        runs[name] = run_specs([parse_source(str(video))], loaded, tmp_path / f"{name}.db", engine_cache, engine=engine)
    verdicts = {name: {s.track_id: s.verdict for s in run.summaries} for name, run in runs.items()}
    assert verdicts["onnxruntime"] == verdicts["openvino-int8"]
    assert set(verdicts["onnxruntime"].values()) == {VerdictState.FAKE, VerdictState.REAL}
    p_fake = {}
    for name, run in runs.items():
        with run.reader() as reader:
            p_fake[name] = {
                (track, score.frame_index): score.p_fake
                for track in verdicts[name]
                for score in reader.scores(run.session_id, "s1", track)
            }
    assert p_fake["onnxruntime"].keys() == p_fake["openvino-int8"].keys() and len(p_fake["onnxruntime"]) > 20
    worst = max(abs(p_fake["onnxruntime"][key] - p_fake["openvino-int8"][key]) for key in p_fake["onnxruntime"])
    assert worst <= P_FAKE_DELTA_MAX, worst


def test_the_detector_records_how_its_engine_was_chosen(tmp_path) -> None:
    """The session row shows the auto engine's rate; the session config keeps the choice's and the gate's lines."""
    engine = FakeEngine()
    engine.choice = EngineChoice("fake", "auto", 295.4, gate="parity PASS: fake", line="auto chose fake at 295")
    settings = with_overrides(Settings(), {"store.db": str(tmp_path / "db.sqlite")}, "test")
    with Detector(settings, loaded=random_model(), engine=engine) as detector:
        session_id = detector.session_id
    with open_reader(settings.store.db) as reader:
        config = reader.session_config(session_id)
        assert (config["engine_choice"], config["engine_gate"]) == ("auto chose fake at 295", "parity PASS: fake")
        [session] = reader.sessions()
        assert session.engine == "fake (auto, 295 crops/s)"
    pinned = FakeEngine()
    pinned.choice = EngineChoice("fake", "pinned")
    with Detector(settings, loaded=random_model(), engine=pinned) as detector:
        session_id = detector.session_id
    with open_reader(settings.store.db) as reader:
        config = reader.session_config(session_id)
        assert "engine_choice" not in config and "engine_gate" not in config
        assert {s.session_id: s.engine for s in reader.sessions()}[session_id] == "fake"
