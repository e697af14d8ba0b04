"""Window score -> rolling score -> verdict (REAL / FAKE / UNSURE) with threshold and hysteresis; alert events; what a
checkpoint's calibration says about the threshold in force and the served window."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace

from model.spread import served_hysteresis, unsure_warning
from model.weights import LoadedModel
from stream.config import DEFAULT_THRESHOLD, THRESHOLD_ORIGINS, VerdictPolicy
from stream.records import Alert, Verdict, VerdictState, band_verdict


def with_checkpoint(policy: VerdictPolicy, checkpoint_threshold: float | None) -> VerdictPolicy:
    """Settle the threshold: the config's (or --threshold) wins, else the checkpoint's calibrated one, else the
    default. A checkpoint threshold near 0 or 1 narrows the hysteresis so both bands stay inside (0, 1)."""
    if policy.threshold_from:
        return policy
    if policy.threshold is not None:
        return replace(policy, threshold_from="config")
    if checkpoint_threshold is None:
        return replace(policy, threshold=DEFAULT_THRESHOLD, threshold_from="default")
    hysteresis = served_hysteresis(checkpoint_threshold, policy.hysteresis)
    return replace(policy, threshold=checkpoint_threshold, hysteresis=hysteresis, threshold_from="checkpoint")


def threshold_line(policy: VerdictPolicy, score_spread: list[float] | None = None) -> str:
    """`verdict threshold 0.620 ± 0.100: the checkpoint's calibrated threshold (...)`; with the calibration's
    `score_spread` (model/spread.py), a warning when that band would keep most verdicts UNSURE."""
    origin = THRESHOLD_ORIGINS.get(policy.threshold_from or ("config" if policy.threshold is not None else "default"))
    line = f"verdict threshold {policy.effective_threshold:.3f} ± {policy.hysteresis:.3f}: {origin}"
    warning = unsure_warning(score_spread, policy.effective_threshold, policy.hysteresis) if policy.calibrated else None
    return f"{line}; WARNING: {warning} (verdicts.hysteresis in a --config file)" if warning else line


def window_warning(loaded: LoadedModel, window: int) -> str | None:
    """One line when `loaded` was calibrated (or, ours, trained) at another window than the one served, else None."""
    made_for = loaded.expected_window
    if made_for is None or made_for == window:
        return None
    how = "calibrated" if loaded.threshold is not None else "trained"
    return (
        f"{loaded.name} was {how} at window {made_for} but is served at window {window}: its scores and threshold "
        f"were made for {made_for}-frame windows (serve it with --window {made_for}, or calibrate it at {window})"
    )


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
