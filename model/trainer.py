"""The training loop behind `python -m model.train`: clips of prepared crops -> the network's window logits ->
cross-entropy, with Adam; validation AUC per epoch; resumable state; our checkpoint format with its metrics."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from model.augment import augment_clip, self_blend_clip
from model.clips import ClipRef, CropCache, Split
from model.network import FAKE_INDEX, DeepfakeNet, SeedNet
from model.prepared import Manifest
from model.preprocess import SEED_PREPROCESSING, Preprocessing, normalise
from model.progress import Progress
from model.scoring import MetricError, auc

STATE_FORMAT = "deepfake-stream/train-state/2"  # 2: the seed arch's optimiser leaves weight_hh out
REAL_INDEX = 1 - FAKE_INDEX


class TrainError(Exception):
    """Training that cannot start or go on; the message is one line saying what to do."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a run (and must match to resume one). Defaults: the original's (seed-notes.md)."""

    arch: str = "seed"
    window: int = 20
    epochs: int = 20
    batch_size: int = 4
    lr: float = 1e-5
    weight_decay: float = 1e-5
    augment: bool = True
    self_blend: bool = False
    freeze_backbone: bool = False
    val_fraction: float = 0.2
    seed: int = 0
    clip_stride: int = 0  # 0: half a window

    @property
    def stride(self) -> int:
        return self.clip_stride or max(1, self.window // 2)


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    loss: float
    val_auc: float | None


@dataclass
class TrainState:
    """What a resumed run needs: finished epochs, their records, and the optimiser."""

    epochs_done: int = 0
    history: list[EpochRecord] = field(default_factory=list)


def labels_of(refs: Sequence[ClipRef]) -> np.ndarray:
    """1 = FAKE."""
    return np.array([1 if (r.fake or r.synthetic) else 0 for r in refs], dtype=np.int64)


def targets_of(refs: Sequence[ClipRef]) -> Tensor:
    """Class indices for cross-entropy: FAKE_INDEX or REAL_INDEX."""
    return torch.tensor([FAKE_INDEX if (r.fake or r.synthetic) else REAL_INDEX for r in refs], dtype=torch.long)


def window_logits(network: DeepfakeNet, pooled: Tensor) -> Tensor:
    """[B, T, 2048] pooled backbone features -> [B, 2] window logits, exactly as serving scores a window:
    seed: the mean of per-crop logits (each crop a one-step LSTM from zero state); temporal: its LSTM over T."""
    batch, steps = pooled.shape[:2]
    if isinstance(network, SeedNet):
        logits = network.encode_pooled(pooled.reshape(batch * steps, -1)).logits
        return logits.view(batch, steps, -1).mean(dim=1)
    return network.window_logits(pooled.float())


class ClipFeeder:
    """Turns clip references into normalised crop batches (augmenting and self-blending) or cached features."""

    def __init__(
        self,
        crops: CropCache,
        config: TrainConfig,
        device: torch.device,
        spec: Preprocessing = SEED_PREPROCESSING,
    ) -> None:
        self.crops, self.config, self.device, self.spec = crops, config, device, spec
        self._features: dict[tuple[int, int, bool], Tensor] = {}

    def pixels(self, refs: Sequence[ClipRef], rng: np.random.Generator | None) -> Tensor:
        """[B*T, 3, S, S] normalised; `rng` given: augmented (training), else as prepared."""
        clips = []
        for ref in refs:
            clip = self.crops.clip(ref)
            if ref.synthetic:
                clip = self_blend_clip(clip, rng or _fixed_rng(ref))
            if rng is not None and self.config.augment:
                clip = augment_clip(clip, rng)
            clips.append(clip)
        batch = torch.from_numpy(np.ascontiguousarray(np.stack(clips)))  # [B, T, S, S, 3] uint8
        batch = batch.to(self.device).permute(0, 1, 4, 2, 3).flatten(0, 1)
        return normalise(batch, self.spec)

    def cached_pooled(self, network: DeepfakeNet, refs: Sequence[ClipRef]) -> Tensor:
        """[B, T, 2048] from features computed once per track (a frozen backbone without augmentation)."""
        out = []
        for ref in refs:
            key = (ref.video, ref.track_id, ref.synthetic)
            if key not in self._features:
                track = self.crops.track(ref.video, ref.track_id)
                if ref.synthetic:
                    track = self_blend_clip(track, _fixed_rng(ref))
                self._features[key] = encode_pooled_crops(network, track, self.device, self.spec)
            out.append(self._features[key][ref.start : ref.start + ref.window])
        return torch.stack(out)


def _fixed_rng(ref: ClipRef) -> np.random.Generator:
    """The same self-blend for a track every time it is seen outside training (validation, cached features)."""
    return np.random.default_rng([ref.video, ref.track_id, 7])


def encode_pooled_crops(
    network: DeepfakeNet, crops: np.ndarray, device: torch.device, spec: Preprocessing, batch: int = 32
) -> Tensor:
    """[N, S, S, 3] uint8 BGR crops -> [N, 2048] pooled backbone features (no gradient)."""
    parts = []
    with torch.no_grad():
        for at in range(0, len(crops), batch):
            chunk = torch.from_numpy(np.ascontiguousarray(crops[at : at + batch])).to(device).permute(0, 3, 1, 2)
            parts.append(network.pooled_features(normalise(chunk, spec)).float())
    return torch.cat(parts)


class Trainer:
    """One training run over `split`'s clips; `run()` trains the remaining epochs, `state` is what a resume needs."""

    def __init__(
        self,
        network: DeepfakeNet,
        manifest: Manifest,
        split: Split,
        train_refs: list[ClipRef],
        val_refs: list[ClipRef],
        config: TrainConfig,
        device: torch.device,
        progress: bool = True,
    ) -> None:
        self.network, self.manifest, self.split, self.config, self.device = network, manifest, split, config, device
        self.train_refs, self.val_refs = train_refs, val_refs
        self.progress = progress
        self.network.to(device)
        if config.freeze_backbone:
            for parameter in network.model.parameters():
                parameter.requires_grad_(False)
        if isinstance(network, SeedNet):
            # One LSTM step from zero state: weight_hh never acts, and Adam's weight decay would only walk it to noise
            # (at lr 1e-3, ~1e-3 a step). Left out, each step is about a quarter cheaper.
            network.lstm.weight_hh_l0.requires_grad_(False)
        trainable = [p for p in network.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=config.lr, weight_decay=config.weight_decay)
        self.amp = device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.loss_fn = nn.CrossEntropyLoss()
        self.feeder = ClipFeeder(CropCache(manifest), config, device)
        self.cache_features = config.freeze_backbone and not config.augment
        self.state = TrainState()

    @property
    def val_videos(self) -> int:
        """How many videos the validation AUC is measured on."""
        return len({ref.video for ref in self.val_refs})

    def _set_mode(self, training: bool) -> None:
        self.network.train(training)
        if self.config.freeze_backbone:
            self.network.model.eval()  # frozen BatchNorm statistics too

    def _autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast("cuda", dtype=torch.float16) if self.amp else contextlib.nullcontext()

    def logits(self, refs: Sequence[ClipRef], rng: np.random.Generator | None) -> Tensor:
        batch, steps = len(refs), refs[0].window
        if self.cache_features:
            pooled = self.feeder.cached_pooled(self.network, refs)
        else:
            pixels = self.feeder.pixels(refs, rng)
            with self._autocast():
                pooled = self.network.pooled_features(pixels).view(batch, steps, -1)
        with self._autocast():
            return window_logits(self.network, pooled.float())

    def p_fake(self, refs: Sequence[ClipRef]) -> np.ndarray:
        """Each clip's p_fake in eval mode, without augmentation."""
        self._set_mode(False)
        scores = []
        with torch.no_grad():
            for at in range(0, len(refs), max(self.config.batch_size, 8)):
                logits = self.logits(refs[at : at + max(self.config.batch_size, 8)], None)
                scores.append(torch.softmax(logits.float(), dim=-1)[:, FAKE_INDEX].cpu().numpy())
        return np.concatenate(scores) if scores else np.zeros(0)

    def auc_of(self, refs: Sequence[ClipRef]) -> float | None:
        if not refs:
            return None
        try:
            return auc(labels_of(refs), self.p_fake(refs))
        except MetricError:
            return None

    def run_epoch(self, epoch: int, on_step: Callable[[int, float], None] | None = None) -> float:
        rng = np.random.default_rng([self.config.seed, epoch])
        order = rng.permutation(len(self.train_refs))
        size = self.config.batch_size
        losses = []
        self._set_mode(True)
        for step, at in enumerate(range(0, len(order), size)):
            refs = [self.train_refs[i] for i in order[at : at + size]]
            self.optimizer.zero_grad(set_to_none=True)
            logits = self.logits(refs, rng)
            loss = self.loss_fn(logits.float(), targets_of(refs).to(self.device))
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            losses.append(float(loss.detach()))
            if on_step:
                on_step(step + 1, float(np.mean(losses)))
        return float(np.mean(losses)) if losses else math.nan

    def run(self, on_epoch: Callable[[EpochRecord], None] | None = None) -> TrainState:
        steps = math.ceil(len(self.train_refs) / self.config.batch_size)
        for epoch in range(self.state.epochs_done, self.config.epochs):
            bar = Progress(f"epoch {epoch + 1}/{self.config.epochs}", steps, unit="batches") if self.progress else None
            last_val = self.state.history[-1].val_auc if self.state.history else None
            note = f" val AUC {last_val:.3f} on {self.val_videos} videos" if last_val is not None else ""

            def on_step(step: int, loss: float, bar: Progress | None = bar, note: str = note) -> None:
                if bar:
                    bar.update(step, f"loss {loss:.4f}{note}")

            loss = self.run_epoch(epoch, on_step)
            if bar:
                bar.close()
            record = EpochRecord(epoch + 1, loss, self.auc_of(self.val_refs))
            self.state.history.append(record)
            self.state.epochs_done = epoch + 1
            if on_epoch:
                on_epoch(record)
        return self.state

    # ---- resumable state ---------------------------------------------------------------------------------------
    def save_state(self, path: Path, fingerprint: dict[str, Any]) -> None:
        temporary = path.with_name(path.name + ".tmp")
        torch.save(
            {
                "format": STATE_FORMAT,
                "fingerprint": fingerprint,
                "epochs_done": self.state.epochs_done,
                "history": [asdict(r) for r in self.state.history],
                "network": self.network.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
            },
            temporary,
        )
        temporary.replace(path)

    def load_state(self, path: Path, fingerprint: dict[str, Any]) -> None:
        try:
            content = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as error:  # an unreadable state file is the user's to remove; say so, do not crash
            raise TrainError(
                f"cannot read the resume state {path} ({type(error).__name__}): delete it or pass --restart"
            ) from None
        if not isinstance(content, dict) or content.get("format") != STATE_FORMAT:
            older = isinstance(content, dict) and str(content.get("format", "")).startswith(STATE_FORMAT[:-1])
            what = "was saved by another version of the trainer" if older else "is not a training resume state"
            raise TrainError(f"{path} {what}: delete it or pass --restart")
        if content.get("fingerprint") != fingerprint:
            raise TrainError(
                f"{path} resumes a different run (other data or settings): pass --restart to start over, or --out "
                "another checkpoint"
            )
        self.network.load_state_dict(content["network"])
        self.optimizer.load_state_dict(content["optimizer"])
        if content.get("scaler"):
            self.scaler.load_state_dict(content["scaler"])
        self.state = TrainState(int(content["epochs_done"]), [EpochRecord(**r) for r in content["history"]])
