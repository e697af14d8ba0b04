"""Calibration that cannot fool its user: held-out videos only, enough of them, AUC with an interval, a warning when
the threshold ± hysteresis band holds most scores (verdicts would stay UNSURE), and one when a checkpoint is served at
another window than it was calibrated at — in evaluate, the detector's status line, `--model-info` and the report."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest

import model.engines
import model.weights
import run_stream
from model.held_out import EvaluationError, calibration_size_check, held_out, training_groups
from model.prepared import Manifest, PreparedTrack, PreparedVideo
from model.scoring import auc, bootstrap_auc
from model.spread import (
    SERVING_HYSTERESIS,
    band_share,
    score_percentiles,
    spread_of,
    suggested_hysteresis,
    unsure_warning,
)
from model.weights import LoadedModel
from stream.config import VerdictPolicy
from stream.detector import Detector
from stream.loop.verdicts import window_warning
from stream.store import build_report, open_reader
from tests.doubles import FakeEngine
from tests.pipeline_run import detector_settings

# What the issue saw: every held-out score in 0.478-0.493, a calibrated threshold of 0.480, the default ±0.1.
NARROW = score_percentiles(np.linspace(0.478, 0.493, 200))


def calibrated_at(seed_model: LoadedModel, window: int, spread: list[float], threshold: float = 0.48) -> LoadedModel:
    """A checkpoint as `model.evaluate --calibrate` leaves it (no file: the network is the shared random one)."""
    evaluation = {"threshold": threshold, "window": window, "score_percentiles": spread}
    metrics = {"training": {"groups": {"train": ["a"], "val": ["b"]}}, "evaluation": evaluation}
    return dataclasses.replace(
        seed_model, name="mine.pt", calibrated=True, threshold=threshold, trained_window=window, metrics=metrics
    )


def test_the_serving_hysteresis_is_the_verdict_policys() -> None:
    assert VerdictPolicy().hysteresis == SERVING_HYSTERESIS


def test_a_band_over_most_scores_says_verdicts_stay_unsure_and_suggests_a_hysteresis() -> None:
    warning = unsure_warning(NARROW, 0.48, 0.1)
    assert warning is not None and warning.startswith("verdicts will stay UNSURE")
    assert "covers 100% of the calibration's window scores (0.478–0.493)" in warning
    suggestion = suggested_hysteresis(NARROW, 0.48)
    assert 0 < suggestion < 0.01 and f"a hysteresis of {suggestion:g}" in warning
    assert band_share(NARROW, 0.48, suggestion) <= 0.25  # the suggestion lets most scores decide
    assert unsure_warning(NARROW, 0.48, suggestion) is None
    spread_out = score_percentiles(np.r_[np.linspace(0.02, 0.3, 50), np.linspace(0.7, 0.98, 50)])
    assert unsure_warning(spread_out, 0.5, 0.1) is None
    assert unsure_warning(None, 0.5, 0.1) is None  # no spread recorded: nothing to say
    assert spread_of({"evaluation": {"score_percentiles": NARROW}}) == NARROW and spread_of({}) is None


def test_the_auc_interval_is_seeded_and_resamples_whole_videos() -> None:
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 10)
    scores = labels * 0.3 + rng.random(20)
    first = bootstrap_auc(labels, scores, rounds=300)
    assert first == bootstrap_auc(labels, scores, rounds=300)  # the same data, the same interval
    assert first.low <= auc(labels, scores) <= first.high < 1.0 and first.level == 0.95
    perfect = bootstrap_auc(labels, labels + 0.1 * rng.random(20), rounds=100)
    assert (perfect.low, perfect.high) == (1.0, 1.0)
    # Windows of one video repeat its score: as independent samples they look like 20x the evidence.
    windows = np.repeat(scores, 20)
    as_samples = bootstrap_auc(np.repeat(labels, 20), windows, rounds=300)
    by_video = bootstrap_auc(np.repeat(labels, 20), windows, np.repeat(np.arange(20), 20), rounds=300)
    assert by_video.high - by_video.low > 2 * (as_samples.high - as_samples.low)


def manifest_of(groups: dict[str, str]) -> Manifest:
    videos = tuple(
        PreparedVideo(f"{name}.mp4", label, name.split("_")[1], "", f"{name}.npz", 20, (PreparedTrack(0, 20),))
        for name, label in groups.items()
    )
    return Manifest(Path("prepared"), "src", "labels.csv", 3, 112, "bgr", None, videos)


def test_training_groups_are_left_out_and_counted() -> None:
    manifest = manifest_of({"real_a": "REAL", "fake_a": "FAKE", "real_b": "REAL", "fake_b": "FAKE"})
    metrics = {"training": {"groups": {"train": ["a"], "val": ["b"]}}}
    assert training_groups(metrics) == {"a"} and training_groups({}) is None
    chosen = held_out(manifest, range(4), metrics, include_trained=False)
    assert chosen.videos == (2, 3) and chosen.left_out == 2 and chosen.overlap == "none"
    assert chosen.note == "left out 2 of 4 videos: their groups trained this checkpoint"
    anyway = held_out(manifest, range(4), metrics, include_trained=True)
    assert anyway.videos == (0, 1, 2, 3) and anyway.overlap == "included" and anyway.note.startswith("warning: 2 of 4")
    unknown = held_out(manifest, range(4), {}, include_trained=False)
    assert unknown.videos == (0, 1, 2, 3) and unknown.overlap == "unknown"
    assert "records no training groups" in unknown.note and "unknown" in unknown.note
    with pytest.raises(EvaluationError, match=r"all 2 chosen videos .* are in groups this checkpoint trained on"):
        held_out(manifest, (0, 1), metrics, include_trained=False)


def test_calibration_needs_five_held_out_videos_of_each_label() -> None:
    assert calibration_size_check({"REAL": 5, "FAKE": 7}, allow_few=False) is None
    with pytest.raises(EvaluationError, match="refusing to calibrate on 4 REAL and 9 FAKE held-out videos"):
        calibration_size_check({"REAL": 4, "FAKE": 9}, allow_few=False)
    warning = calibration_size_check({"REAL": 4, "FAKE": 9}, allow_few=True)
    assert warning is not None and warning.startswith("warning: calibrating on 4 REAL and 9 FAKE")


def test_a_window_other_than_the_calibrated_one_gets_a_warning(seed_model) -> None:
    mine = calibrated_at(seed_model, 10, NARROW)
    line = window_warning(mine, 20)
    assert line is not None and "calibrated at window 10 but is served at window 20" in line
    assert window_warning(mine, 10) is None
    trained = dataclasses.replace(mine, threshold=None, calibrated=False, metrics={"training": {}})
    assert "was trained at window 10" in (window_warning(trained, 20) or "")
    original = dataclasses.replace(seed_model, trained_window=100, metrics={})  # the original six: any window
    assert window_warning(original, 20) is None


def test_the_detector_says_verdicts_stay_unsure_and_the_served_window(seed_model, tmp_path, caplog) -> None:
    loaded = calibrated_at(seed_model, 10, NARROW)
    settings = detector_settings(tmp_path / "db.sqlite", {"model.window": 20})
    with (
        caplog.at_level(logging.WARNING, logger="deepfake_stream"),
        Detector(settings, loaded=loaded, engine=FakeEngine()) as detector,
    ):
        session = detector.session_id
        [threshold] = [line for line in detector.pipeline.status_lines() if line.startswith("verdict threshold")]
    assert "verdict threshold 0.480 ± 0.100" in threshold and "WARNING: verdicts will stay UNSURE" in threshold
    assert "verdicts.hysteresis" in threshold
    served = [r.getMessage() for r in caplog.records if "is served at window 20" in r.getMessage()]
    assert len(served) == 1 and "calibrated at window 10" in served[0]
    with open_reader(settings.store.db) as reader:
        report = build_report(reader, session)
    assert report.settings["window"] == 20 and report.settings["window_warning"] == served[0]

    at_its_window = detector_settings(tmp_path / "db2.sqlite", {"model.window": 10})
    with Detector(at_its_window, loaded=loaded, engine=FakeEngine()) as detector:
        assert detector.window_warning is None
        session = detector.session_id
    with open_reader(at_its_window.store.db) as reader:
        assert build_report(reader, session).settings["window_warning"] is None


def test_model_info_says_verdicts_stay_unsure_and_the_served_window(seed_model, monkeypatch, capsys) -> None:
    loaded = calibrated_at(seed_model, 10, NARROW)
    monkeypatch.setattr(model.weights, "resolve_weights", lambda spec: loaded)
    monkeypatch.setattr(model.engines, "build_engine", lambda *args, **kwargs: FakeEngine())
    assert run_stream.main(["--model-info", "--cpu-engine", "torch", "--window", "20"]) == 0
    out = capsys.readouterr().out
    assert "WARNING: verdicts will stay UNSURE: threshold 0.480 ± 0.100 covers 100%" in out
    assert "warning: mine.pt was calibrated at window 10 but is served at window 20" in out
