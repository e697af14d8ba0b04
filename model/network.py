"""The ResNeXt50 + LSTM deepfake network, key-for-key the original's, split so each face crop is encoded once.

`SeedNet` is the original architecture (its checkpoints load unchanged); `TemporalNet` is ours, a real
batch-first LSTM over cached backbone features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torchvision.models import resnext50_32x4d

from model.labels import ARCHITECTURE_NAMES

FEATURE_DIM = 2048
NUM_CLASSES = 2
FAKE_INDEX = 0  # seed-notes.md: index 0 = FAKE, index 1 = REAL
WindowMode = Literal["mean", "last"]
WINDOW_MODES: tuple[str, ...] = ("mean", "last")


@dataclass(frozen=True)
class FrameOutputs:
    """What one face crop leaves in its ring: `features` [..., 2048] and, for the seed arch, `logits` [..., 2].

    Seed arch: `features` is the one-step LSTM output (kept for training parity), `logits` the head on it.
    Temporal arch: `features` is the pooled backbone vector; `logits` is None (the LSTM runs per window).
    """

    features: Tensor
    logits: Tensor | None


def build_backbone() -> nn.Sequential:
    """torchvision resnext50_32x4d minus avgpool and fc, built with `weights=None` (never downloads)."""
    resnext = resnext50_32x4d(weights=None)
    return nn.Sequential(*list(resnext.children())[:-2])


def _check_mode(mode: str) -> None:
    if mode not in WINDOW_MODES:
        raise ValueError(f"window mode must be one of {WINDOW_MODES}, got {mode!r}")


def fake_probability(logits: Tensor) -> Tensor:
    """softmax over the 2 classes, the FAKE column: [..., 2] -> [...]."""
    return torch.softmax(logits.float(), dim=-1)[..., FAKE_INDEX]


class SeedNet(nn.Module):
    """The original project's `Model`: attribute names and shapes match its state_dict exactly."""

    arch = "seed"

    def __init__(self) -> None:
        super().__init__()
        self.model = build_backbone()
        # The original wrote nn.LSTM(2048, 2048, 1, False): the 4th positional argument is `bias`.
        self.lstm = nn.LSTM(FEATURE_DIM, FEATURE_DIM, 1, False)
        self.relu = nn.LeakyReLU()  # declared by the original, never used in its forward
        self.dp = nn.Dropout(0.4)
        self.linear1 = nn.Linear(FEATURE_DIM, NUM_CLASSES)
        self.avgpool = nn.AdaptiveAvgPool2d(1)

    def pooled_features(self, crops: Tensor) -> Tensor:
        """[N, 3, H, W] normalised crops -> [N, 2048] pooled backbone features."""
        return self.avgpool(self.model(crops)).flatten(1)

    def encode_frames(self, crops: Tensor) -> FrameOutputs:
        """Per crop: backbone -> pool -> one LSTM step from zero state -> head logits."""
        return self.encode_pooled(self.pooled_features(crops))

    def encode_pooled(self, pooled: Tensor) -> FrameOutputs:
        """[N, 2048] pooled features -> cached outputs (the part after the backbone, always in fp32)."""
        pooled = pooled.float()
        # Sequence length 1, batch N: each crop is its own one-step sequence, as in the original forward.
        lstm_out, _ = self.lstm(pooled.unsqueeze(0), None)
        lstm_out = lstm_out.squeeze(0)
        return FrameOutputs(features=lstm_out, logits=self.linear1(self.dp(lstm_out)))

    def score_window(self, window: FrameOutputs, mode: WindowMode = "mean") -> Tensor:
        """p_fake for windows of cached outputs, `logits` [B, T, 2] (or [T, 2]) -> [B] (or scalar).

        "mean": the original training forward at batch size 1 (the head is affine, so the mean of cached
        logits equals the head on the mean LSTM output); "last": the original app's forward.
        """
        _check_mode(mode)
        if window.logits is None:
            raise ValueError("the seed arch scores windows from cached logits; this window has none")
        logits = window.logits.mean(dim=-2) if mode == "mean" else window.logits[..., -1, :]
        return fake_probability(logits)

    def forward(self, x: Tensor, mode: WindowMode = "last") -> Tensor:
        """The original forward, unchanged in its axis semantics: x [B, T, 3, H, W] -> logits [B, 2].

        Kept as the reference the cached path is tested against. With B > 1 the LSTM's time axis runs
        across the batch (seq-first), exactly the original's behaviour: never use it to batch faces.
        """
        _check_mode(mode)
        batch_size, seq_length, c, h, w = x.shape
        fmap = self.model(x.view(batch_size * seq_length, c, h, w))
        pooled = self.avgpool(fmap).view(batch_size, seq_length, FEATURE_DIM)
        x_lstm, _ = self.lstm(pooled, None)
        summary = x_lstm[:, -1, :] if mode == "last" else torch.mean(x_lstm, dim=1)
        return self.dp(self.linear1(summary))


class TemporalNet(nn.Module):
    """Our trainer's architecture: the ResNeXt backbone per crop, a batch_first LSTM over the window."""

    arch = "temporal"

    def __init__(self, hidden_dim: int = FEATURE_DIM) -> None:
        super().__init__()
        self.model = build_backbone()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.lstm = nn.LSTM(FEATURE_DIM, hidden_dim, 1, batch_first=True)
        self.dp = nn.Dropout(0.4)
        self.linear1 = nn.Linear(hidden_dim, NUM_CLASSES)

    def pooled_features(self, crops: Tensor) -> Tensor:
        """[N, 3, H, W] normalised crops -> [N, 2048] pooled backbone features."""
        return self.avgpool(self.model(crops)).flatten(1)

    def encode_frames(self, crops: Tensor) -> FrameOutputs:
        """Per crop: backbone -> pool. The LSTM runs later, over the cached window."""
        return self.encode_pooled(self.pooled_features(crops))

    def encode_pooled(self, pooled: Tensor) -> FrameOutputs:
        """[N, 2048] pooled features -> cached outputs (they are the features themselves)."""
        return FrameOutputs(features=pooled.float(), logits=None)

    def window_logits(self, features: Tensor, mode: WindowMode = "mean") -> Tensor:
        """[B, T, 2048] cached features -> [B, 2] logits."""
        _check_mode(mode)
        lstm_out, _ = self.lstm(features.float(), None)
        summary = lstm_out.mean(dim=1) if mode == "mean" else lstm_out[:, -1, :]
        return self.linear1(self.dp(summary))

    def score_window(self, window: FrameOutputs, mode: WindowMode = "mean") -> Tensor:
        """p_fake for windows of cached features, [B, T, 2048] (or [T, 2048]) -> [B] (or scalar)."""
        features = window.features
        single = features.dim() == 2
        probs = fake_probability(self.window_logits(features.unsqueeze(0) if single else features, mode))
        return probs[0] if single else probs

    def forward(self, x: Tensor, mode: WindowMode = "mean") -> Tensor:
        """x [B, T, 3, H, W] -> logits [B, 2] (used by training)."""
        batch_size, seq_length, c, h, w = x.shape
        features = self.pooled_features(x.view(batch_size * seq_length, c, h, w))
        return self.window_logits(features.view(batch_size, seq_length, -1), mode)


DeepfakeNet = SeedNet | TemporalNet
ARCHITECTURES: dict[str, type[SeedNet] | type[TemporalNet]] = {cls.arch: cls for cls in (SeedNet, TemporalNet)}
assert tuple(ARCHITECTURES) == ARCHITECTURE_NAMES, (tuple(ARCHITECTURES), ARCHITECTURE_NAMES)


def build_network(arch: str) -> DeepfakeNet:
    """A network of the named architecture with untrained (random) weights, in eval mode."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch]().eval()
