"""Verdicts from window scores: rolling mean, threshold with hysteresis, noise, flapping, alerts, uncalibrated."""

from __future__ import annotations

import pytest

from stream.config import VerdictPolicy
from stream.loop.verdicts import FaceScorer, ScoreUpdate
from stream.records import Alert, VerdictState, band_verdict

pytestmark = pytest.mark.fast  # make test-fast

REAL, FAKE, UNSURE = VerdictState.REAL, VerdictState.FAKE, VerdictState.UNSURE


def feed(scorer: FaceScorer, scores: list[float], t0: float = 0.0) -> list[ScoreUpdate]:
    return [scorer.update(p, t0 + i) for i, p in enumerate(scores)]


def states(updates: list[ScoreUpdate]) -> list[VerdictState]:
    return [u.verdict.state for u in updates]


def test_new_face_is_unsure_until_a_full_rolling_mean_crosses_a_band() -> None:
    scorer = FaceScorer("cam", 1, VerdictPolicy(rolling=3))
    updates = feed(scorer, [0.1, 0.1, 0.1])
    assert states(updates) == [UNSURE, UNSURE, REAL]
    assert [u.changed for u in updates] == [False, False, True]
    assert updates[0].verdict.since == 0.0 and updates[1].verdict.since == 0.0
    assert updates[2].verdict.since == 2.0 and scorer.current.since == 2.0
    assert scorer.scores_seen == 3


def test_in_band_scores_keep_unsure() -> None:
    scorer = FaceScorer("cam", 1, VerdictPolicy(rolling=2))
    assert set(states(feed(scorer, [0.45, 0.55, 0.5, 0.58, 0.42]))) == {UNSURE}


def test_rolling_is_mean_of_last_n() -> None:
    scorer = FaceScorer("cam", 1, VerdictPolicy(rolling=3))
    updates = feed(scorer, [0.9, 0.3, 0.6, 0.0])
    assert [u.rolling_p_fake for u in updates] == pytest.approx([0.9, 0.6, 0.6, 0.3])
    assert scorer.current.rolling_p_fake == pytest.approx(0.3)


def test_band_edges_are_inclusive() -> None:
    scorer = FaceScorer("cam", 1, VerdictPolicy(threshold=0.5, hysteresis=0.1, rolling=5))
    assert states(feed(scorer, [0.6] * 5))[-1] is FAKE
    scorer = FaceScorer("cam", 2, VerdictPolicy(threshold=0.5, hysteresis=0.1, rolling=5))
    assert states(feed(scorer, [0.4] * 5))[-1] is REAL


@pytest.mark.parametrize(
    ("rolling", "current", "expected"),
    [
        (0.6, UNSURE, FAKE),  # the upper edge is inclusive
        (0.6 - 5e-10, REAL, FAKE),  # within the 1e-9 slack of it
        (0.6 - 1e-6, REAL, REAL),  # inside the band: the current state stays
        (0.5, FAKE, FAKE),
        (0.5, UNSURE, UNSURE),
        (0.4 + 1e-6, FAKE, FAKE),
        (0.4 + 5e-10, FAKE, REAL),
        (0.4, UNSURE, REAL),  # the lower edge is inclusive
        (0.0, FAKE, REAL),
        (1.0, REAL, FAKE),
    ],
)
def test_band_verdict(rolling: float, current: VerdictState, expected: VerdictState) -> None:
    assert band_verdict(rolling, 0.5, 0.1, current) is expected


def test_one_noisy_window_does_not_flip_real_to_fake() -> None:
    scorer = FaceScorer("cam", 1, VerdictPolicy())
    updates = feed(scorer, [0.2] * 5 + [0.9] + [0.2] * 6)
    assert states(updates)[4:] == [REAL] * 8
    assert all(u.alert is None for u in updates)


def test_sustained_run_turns_fake_with_one_alert() -> None:
    scorer = FaceScorer("cam", 7, VerdictPolicy())
    updates = feed(scorer, [0.2] * 5 + [0.9] * 6, t0=100.0)
    # rolling after the 0.9s: 0.34, 0.48, 0.62 -> FAKE on the third
    assert states(updates)[5:] == [REAL, REAL, FAKE, FAKE, FAKE, FAKE]
    turned = updates[7]
    assert turned.changed and turned.verdict.since == 107.0
    assert turned.alert == Alert("cam", 7, "turned_fake", 107.0, turned.rolling_p_fake, None)
    assert turned.rolling_p_fake == pytest.approx(0.62)
    assert [u.alert is not None for u in updates].count(True) == 1
    assert all(u.verdict.since == 107.0 for u in updates[8:])


def test_alternating_near_threshold_does_not_flap() -> None:
    scorer = FaceScorer("cam", 1, VerdictPolicy())
    updates = feed(scorer, [0.2] * 5 + [0.45, 0.65] * 20)
    assert states(updates)[4:] == [REAL] * 41
    assert sum(u.changed for u in updates) == 1  # UNSURE -> REAL only


def test_hysteresis_is_what_stops_flapping() -> None:
    alternating = [0.7, 0.7] + [0.45, 0.55] * 10
    with_band = FaceScorer("cam", 1, VerdictPolicy(threshold=0.5, hysteresis=0.1, rolling=1))
    without_band = FaceScorer("cam", 2, VerdictPolicy(threshold=0.5, hysteresis=0.0, rolling=1))
    assert sum(u.changed for u in feed(with_band, alternating)) == 1
    assert sum(u.changed for u in feed(without_band, alternating)) == 21


def test_alerts_again_only_after_going_back_to_real() -> None:
    scorer = FaceScorer("cam", 1, VerdictPolicy(rolling=2))
    updates = feed(scorer, [0.9, 0.9, 0.9, 0.5, 0.5, 0.9, 0.9, 0.1, 0.1, 0.9, 0.9, 0.9])
    assert states(updates) == [UNSURE, FAKE, FAKE, FAKE, FAKE, FAKE, FAKE, FAKE, REAL, REAL, FAKE, FAKE]
    assert [i for i, u in enumerate(updates) if u.alert is not None] == [1, 10]
    assert [i for i, u in enumerate(updates) if u.changed] == [1, 8, 10]


def test_uncalibrated_never_leaves_unsure_and_never_alerts() -> None:
    scorer = FaceScorer("cam", 1, VerdictPolicy(calibrated=False))
    updates = feed(scorer, [0.99] * 10 + [0.01] * 10)
    assert set(states(updates)) == {UNSURE}
    assert not any(u.changed or u.alert for u in updates)
    assert updates[9].rolling_p_fake == pytest.approx(0.99)  # still computed and stored
    assert updates[-1].rolling_p_fake == pytest.approx(0.01)
    assert scorer.current.since == 0.0


def test_current_before_any_score_raises() -> None:
    with pytest.raises(RuntimeError, match="no score yet"):
        _ = FaceScorer("cam", 1, VerdictPolicy()).current


@pytest.mark.parametrize("p_fake", [-0.1, 1.1, float("nan"), float("inf")])
def test_invalid_score_rejected(p_fake: float) -> None:
    scorer = FaceScorer("cam", 1, VerdictPolicy())
    with pytest.raises(ValueError, match="p_fake"):
        scorer.update(p_fake, 0.0)
    assert scorer.scores_seen == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": 1.0}, "threshold"),
        ({"hysteresis": -0.01}, "hysteresis"),
        ({"threshold": 0.8, "hysteresis": 0.2}, "hysteresis"),
        ({"threshold": 0.2, "hysteresis": 0.2}, "hysteresis"),
        ({"rolling": 0}, "rolling"),
        ({"rolling": 2.0}, "rolling"),
    ],
)
def test_invalid_policy(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VerdictPolicy(**kwargs)
