"""`python -m model.evaluate`: report and plots for our trained checkpoint and for a test-made checkpoint in the
original project's key layout; `--calibrate` gives a copy the live pipeline runs calibrated with its threshold,
unless a threshold is set explicitly; bad input is one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from model import evaluate
from model.engines import build_engine
from model.prepared import load_crops, read_manifest
from model.scoring import auc, eer, threshold_for_fpr
from model.weights import load_checkpoint
from stream.detector import Detector
from stream.store import build_report, open_reader
from tests import train_flow
from tests.helpers import fit_seed_head
from tests.pipeline_run import detector_settings

PNG = b"\x89PNG\r\n\x1a\n"
ORIGINAL_NAME = "model_87_acc_20_frames_final_data.pt"


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("error: "), err
    return err


@pytest.fixture(scope="module")
def original_layout(tmp_path_factory, seed_model):
    """A plain state_dict in the original key layout, its head fitted on a few of the set's FAKE vs REAL crops."""
    manifest = read_manifest(train_flow.prepared())

    def some(label: str) -> list[np.ndarray]:
        crops = []
        for video in (v for v in manifest.videos if v.label == label):
            crops += list(load_crops(manifest, video)[video.tracks[0].track_id][:2])
        return crops

    fitted = fit_seed_head(seed_model.network, some("FAKE"), some("REAL"))
    path = tmp_path_factory.mktemp("originals") / ORIGINAL_NAME
    torch.save(fitted.state_dict(), path)
    return path


def test_metrics_match_hand_counts() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])
    assert auc(labels, scores) == pytest.approx(15 / 16)
    assert eer(labels, scores) == pytest.approx(0.25)
    point = threshold_for_fpr(labels, scores, 0.0)
    assert 0.6 < point.threshold <= 0.7 and point.fpr == 0.0 and point.tpr == 0.75


def test_our_checkpoint_gets_a_report_and_plots(tmp_path, capsys) -> None:
    out = tmp_path / "eval"
    argv = [str(train_flow.trained_seed()), str(train_flow.prepared()), "--out", str(out), "--no-progress"]
    assert evaluate.main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "deepfake-stream/evaluation/1" and report["window"] == train_flow.WINDOW
    assert report["calibrated"] is False and report["checkpoint_threshold"] == 0.5
    for level in ("video", "frame"):
        assert report[level]["real"] > 0 and report[level]["fake"] > 0
        assert 0.0 <= report[level]["auc"] <= 1.0 and 0.0 <= report[level]["eer"] <= 1.0
    assert report["video"]["samples"] == 2 * train_flow.CLIPS
    assert report["target_fpr"] == 0.01 and report["threshold_for_target"]["fpr"] <= 0.01
    for name in ("roc", "reliability"):
        assert (out / f"{name}.png").read_bytes()[:8] == PNG
    assert "video level: 4 REAL, 4 FAKE" in capsys.readouterr().out


def test_original_layout_checkpoint_is_evaluated_calibrated_and_served(original_layout, tmp_path) -> None:
    calibrated = tmp_path / "calibrated.pt"
    argv = [str(original_layout), str(train_flow.prepared()), "--window", "10", "--out", str(tmp_path / "eval")]
    assert evaluate.main([*argv, "--calibrate", str(calibrated), "--no-progress"]) == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["arch"] == "seed" and report["video"]["auc"] >= 0.9 and report["frame"]["auc"] >= 0.9
    threshold = report["threshold_for_target"]["threshold"]

    loaded = load_checkpoint(calibrated)
    assert loaded.calibrated and loaded.threshold == pytest.approx(threshold)
    assert loaded.metrics["evaluation"]["video_auc"] == report["video"]["auc"]
    assert loaded.metrics["reported_accuracy"] == 87.79  # what the original claimed, kept beside what we measured
    assert load_checkpoint(original_layout).calibrated  # the original file is unchanged

    # The live pipeline: the checkpoint's threshold is the default, and the status line says so.
    video = train_flow.labelled() / "fake_1.mp4"
    settings = detector_settings(tmp_path / "db.sqlite", {"model.weights": str(calibrated)})
    with Detector(settings, [str(video)], loaded=loaded, engine=build_engine(loaded, "cpu", "torch")) as detector:
        assert detector.policy.threshold == pytest.approx(threshold)
        assert detector.policy.threshold_from == "checkpoint"
        assert any("the checkpoint's calibrated threshold" in line for line in detector.pipeline.status_lines())
        detector.open_source(str(video), name="s1")
        detector.run(duration_s=60)
        detector.close()
        session = detector.session_id
    with open_reader(tmp_path / "db.sqlite") as reader:
        document = build_report(reader, session).as_dict()
    assert document["calibrated"] is True and document["settings"]["threshold"] == pytest.approx(threshold)
    assert document["streams"][0]["faces"][0]["frames_scored"] > 0

    # A threshold set explicitly still wins.
    explicit = detector_settings(tmp_path / "db2.sqlite", {"model.weights": str(calibrated), "verdicts.threshold": 0.3})
    with Detector(explicit, loaded=loaded, engine=build_engine(loaded, "cpu", "torch")) as detector:
        assert detector.policy.threshold == 0.3 and detector.policy.threshold_from == "config"
        assert any("set in the config or with --threshold" in line for line in detector.pipeline.status_lines())


def test_bad_evaluation_input_is_one_line(tmp_path, capsys, original_layout) -> None:
    data = str(train_flow.prepared())
    assert evaluate.main([str(tmp_path / "missing.pt"), data]) == 2
    assert "checkpoint not found" in error_line(capsys)
    assert evaluate.main([str(original_layout), str(tmp_path)]) == 2
    assert "not prepared data" in error_line(capsys)
    assert evaluate.main([str(original_layout), data, "--window", "90", "--out", str(tmp_path / "e")]) == 2
    assert "--window 90 is longer than every face track" in error_line(capsys)
    assert evaluate.main([str(original_layout), data, "--split", "test", "--out", str(tmp_path / "e")]) == 2
    assert "no official test videos" in error_line(capsys)
    assert evaluate.main([str(original_layout), data, "--calibrate", str(original_layout)]) == 2
    assert "must be a new file" in error_line(capsys)
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([str(original_layout), data, "--target-fpr", "1.5"])
    assert exit_info.value.code == 2 and "between 0 and 1" in error_line(capsys)
