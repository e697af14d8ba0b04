"""The model layer's names that other layers show: label order, architecture names, the uncalibrated wording.

Imports nothing heavy (no torch, no numpy), so the store and the dashboard can show these names without
loading the model.
"""

from __future__ import annotations

LABEL_ORDER: tuple[str, str] = ("FAKE", "REAL")  # index 0 = FAKE, index 1 = REAL (seed-notes.md)
ARCHITECTURE_NAMES: tuple[str, ...] = ("seed", "temporal")
UNCALIBRATED_WARNING = "UNCALIBRATED: no trained weights loaded"
