"""What the model layer resolved, in one record: checkpoint, calibration, device, engine and measured speed."""

from __future__ import annotations

import time
from dataclasses import dataclass

from model.engines import Engine
from model.preprocess import crops_to_batch
from model.weights import LoadedModel


@dataclass(frozen=True)
class ModelSummary:
    checkpoint: str
    calibrated: bool
    arch: str
    device: str
    engine: str
    crops_per_s: float
    batch: int

    def lines(self) -> list[str]:
        return [
            f"checkpoint: {self.checkpoint}",
            f"calibrated: {'yes' if self.calibrated else 'NO: scores are uncalibrated'}",
            f"architecture: {self.arch}",
            f"device: {self.device}",
            f"engine: {self.engine}",
            f"measured: {self.crops_per_s:.0f} crops/s at batch {self.batch}",
        ]


def summarise(loaded: LoadedModel, engine: Engine, sample_crops: list, seconds: float = 2.0) -> ModelSummary:
    """Time `engine.encode` on `sample_crops` (HxWx3 uint8 BGR face crops) for about `seconds`."""
    batch = crops_to_batch(sample_crops, loaded.preprocessing, engine.device)
    engine.encode(batch)  # warm-up: first call allocates
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        engine.encode(batch)
        count += len(sample_crops)
    return ModelSummary(
        checkpoint=loaded.describe(),
        calibrated=loaded.calibrated,
        arch=loaded.arch,
        device=str(engine.device),
        engine=engine.name,
        crops_per_s=count / (time.perf_counter() - start),
        batch=len(sample_crops),
    )
