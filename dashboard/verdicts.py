"""Verdicts as the page shows them: re-coloured against the page's threshold slider, never written back.

The detector decides each face's verdict with its own threshold and hysteresis and stores it. An analyst may
try another threshold on the page: a face's stored rolling p_fake is compared with the slider's value and the
session's hysteresis band. Inside the band a face keeps the verdict the detector gave it (that is what
hysteresis means). An uncalibrated session's verdicts stay UNSURE whatever the slider says.
"""

from __future__ import annotations

import math

from stream.records import VerdictState, band_verdict

VERDICT_COLOURS = {"FAKE": "red", "REAL": "green", "UNSURE": "gray"}


def shown_verdict(
    stored: str,
    rolling_p_fake: float | None,
    threshold: float,
    detector_threshold: float,
    hysteresis: float,
    calibrated: bool,
) -> str:
    """The verdict to show for a face whose stored verdict is `stored`, with the slider at `threshold`."""
    if not calibrated:
        return "UNSURE"
    if rolling_p_fake is None or math.isclose(threshold, detector_threshold, abs_tol=1e-6):
        return stored
    # The detector's own band (inclusive edges), against the slider's threshold; inside it the stored verdict stays.
    shown = band_verdict(rolling_p_fake, threshold, hysteresis, VerdictState.UNSURE)
    return stored if shown is VerdictState.UNSURE else str(shown)


def badge(verdict: str) -> str:
    """Streamlit markdown for a coloured verdict badge."""
    return f":{VERDICT_COLOURS.get(verdict, 'gray')}-badge[{verdict}]"
