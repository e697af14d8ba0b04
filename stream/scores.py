"""Window score -> rolling score -> verdict (REAL / FAKE / UNSURE) with threshold and hysteresis; alert events."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace
from enum import StrEnum


class VerdictState(StrEnum):
    REAL = "REAL"
    FAKE = "FAKE"
    UNSURE = "UNSURE"


@dataclass(frozen=True)
class WindowScore:
    """One window's score for one face. `frame_index` is the newest frame in the window."""

    session_id: str
    stream_id: str
    track_id: int
    frame_index: int
    t_media: float | None  # media time of that frame in seconds (pts), None where the source has none
    window: int  # frames in the window
    p_fake: float
    t_capture: float  # wall-clock (time.time()) when that frame was captured
    t_scored: float  # wall-clock when the score was computed


@dataclass(frozen=True)
class Verdict:
    stream_id: str
    track_id: int
    state: VerdictState
    since: float  # wall-clock time the state began
    rolling_p_fake: float


@dataclass(frozen=True)
class Alert:
    stream_id: str
    track_id: int
    kind: str  # "turned_fake"
    t: float  # wall-clock
    p_fake: float
    clip_path: str | None
    t_media: float | None = None  # where in the media it happened (files: seconds into the file)


DEFAULT_THRESHOLD = 0.5  # used when neither the config nor the checkpoint gives one
THRESHOLD_ORIGINS = {
    "config": "set in the config or with --threshold",
    "checkpoint": "the checkpoint's calibrated threshold (python -m model.evaluate --calibrate)",
    "default": "the default: neither the config nor the checkpoint sets one",
}

# Band edges are inclusive; this slack keeps a rolling mean like (0.6 * 5) / 5 from missing 0.5 + 0.1 by one ulp.
_BAND_EPS = 1e-9


def band_verdict(rolling: float, threshold: float, hysteresis: float, current: VerdictState) -> VerdictState:
    """The verdict band: FAKE at `rolling` >= threshold + hysteresis, REAL at <= threshold - hysteresis (both edges
    inclusive), otherwise `current` (inside the band a face keeps its state: that is what hysteresis means)."""
    if rolling >= threshold + hysteresis - _BAND_EPS:
        return VerdictState.FAKE
    if rolling <= threshold - hysteresis + _BAND_EPS:
        return VerdictState.REAL
    return current


@dataclass(frozen=True)
class VerdictPolicy:
    """How window scores become a verdict: FAKE at rolling >= threshold + hysteresis, REAL at <= threshold - it.

    `rolling`: how many recent window scores are averaged. `calibrated=False` (random weights) keeps every
    verdict UNSURE: their scores mean nothing, and a REAL verdict from them would be a lie. `threshold` None: the
    checkpoint's calibrated threshold when it has one, else DEFAULT_THRESHOLD (`with_checkpoint` settles it).
    """

    threshold: float | None = None
    hysteresis: float = 0.1
    rolling: int = 5
    overall_fake_windows: int = 3  # a stream's overall verdict is FAKE when a face was FAKE for this many windows
    calibrated: bool = True
    threshold_from: str = ""  # once settled: a key of THRESHOLD_ORIGINS

    @property
    def effective_threshold(self) -> float:
        return DEFAULT_THRESHOLD if self.threshold is None else self.threshold

    def __post_init__(self) -> None:
        threshold = self.effective_threshold
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        limit = min(threshold, 1.0 - threshold)
        if not 0.0 <= self.hysteresis < limit:
            raise ValueError(
                f"hysteresis must be in [0, {limit:g}) so both bands stay inside (0, 1) for threshold "
                f"{threshold}, got {self.hysteresis}"
            )
        if self.threshold_from and self.threshold_from not in THRESHOLD_ORIGINS:
            raise ValueError(
                f"threshold_from must be one of {', '.join(THRESHOLD_ORIGINS)}, got {self.threshold_from!r}"
            )
        if isinstance(self.rolling, bool) or not isinstance(self.rolling, int) or self.rolling < 1:
            raise ValueError(f"rolling must be an int >= 1 (window scores averaged), got {self.rolling!r}")
        if self.overall_fake_windows < 1:
            raise ValueError(f"overall_fake_windows must be at least 1, got {self.overall_fake_windows}")


def with_checkpoint(policy: VerdictPolicy, checkpoint_threshold: float | None) -> VerdictPolicy:
    """Settle the threshold: the config's (or --threshold) wins, else the checkpoint's calibrated one, else the
    default. A checkpoint threshold near 0 or 1 narrows the hysteresis so both bands stay inside (0, 1)."""
    if policy.threshold_from:
        return policy
    if policy.threshold is not None:
        return replace(policy, threshold_from="config")
    if checkpoint_threshold is None:
        return replace(policy, threshold=DEFAULT_THRESHOLD, threshold_from="default")
    room = min(checkpoint_threshold, 1.0 - checkpoint_threshold)
    hysteresis = min(policy.hysteresis, room / 2)
    return replace(policy, threshold=checkpoint_threshold, hysteresis=hysteresis, threshold_from="checkpoint")


def threshold_line(policy: VerdictPolicy) -> str:
    """`verdict threshold 0.620 ± 0.100: the checkpoint's calibrated threshold (...)`."""
    origin = THRESHOLD_ORIGINS.get(policy.threshold_from or ("config" if policy.threshold is not None else "default"))
    return f"verdict threshold {policy.effective_threshold:.3f} ± {policy.hysteresis:.3f}: {origin}"


@dataclass(frozen=True)
class ScoreUpdate:
    rolling_p_fake: float
    verdict: Verdict
    changed: bool  # the state differs from the previous one (never on a face's first UNSURE)
    alert: Alert | None  # set exactly when the state turned FAKE


class FaceScorer:
    """One face's rolling score and verdict state; feed it each window score in order."""

    def __init__(self, stream_id: str, track_id: int, policy: VerdictPolicy) -> None:
        self.stream_id, self.track_id, self.policy = stream_id, track_id, policy
        self._recent: deque[float] = deque(maxlen=policy.rolling)
        self._verdict: Verdict | None = None
        self._seen = 0

    def update(self, p_fake: float, t: float) -> ScoreUpdate:
        """Add one window score `p_fake` in [0, 1] seen at wall-clock `t`; return the rolling score and verdict."""
        if not (math.isfinite(p_fake) and 0.0 <= p_fake <= 1.0):
            raise ValueError(f"p_fake must be a finite probability in [0, 1], got {p_fake}")
        self._recent.append(float(p_fake))
        self._seen += 1
        rolling = math.fsum(self._recent) / len(self._recent)
        previous = self._verdict
        before = VerdictState.UNSURE if previous is None else previous.state
        state = before
        # A face leaves UNSURE only on a full rolling average, so its first noisy window cannot alert.
        if not self.policy.calibrated:
            state = VerdictState.UNSURE
        elif len(self._recent) == self.policy.rolling:
            state = band_verdict(rolling, self.policy.effective_threshold, self.policy.hysteresis, before)
        changed = state != before
        since = t if previous is None or changed else previous.since
        self._verdict = Verdict(self.stream_id, self.track_id, state, since, rolling)
        alert = None
        if changed and state is VerdictState.FAKE:
            alert = Alert(self.stream_id, self.track_id, "turned_fake", t, rolling, None)
        return ScoreUpdate(rolling, self._verdict, changed, alert)

    @property
    def current(self) -> Verdict:
        """The latest verdict; raises before the first `update` (a face has no verdict until it is scored)."""
        if self._verdict is None:
            raise RuntimeError(f"face {self.stream_id}/{self.track_id} has no score yet: call update() first")
        return self._verdict

    @property
    def scores_seen(self) -> int:
        return self._seen
