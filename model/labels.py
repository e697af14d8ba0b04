"""The model layer's names that other layers show: label order, architecture names, window limits, the
uncalibrated wording.

Imports nothing heavy (no torch, no numpy), so the store and the dashboard can show these names without
loading the model.
"""

from __future__ import annotations

LABEL_ORDER: tuple[str, str] = ("FAKE", "REAL")  # index 0 = FAKE, index 1 = REAL (seed-notes.md)
ARCHITECTURE_NAMES: tuple[str, ...] = ("seed", "temporal")
UNCALIBRATED_WARNING = "UNCALIBRATED: this checkpoint's scores are not calibrated"
# Window lengths any checkpoint serves (the original six were trained on 10 to 100 frames).
MIN_WINDOW, MAX_WINDOW = 10, 100
