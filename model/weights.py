"""Known checkpoints and the one loader: strict, `weights_only=True`, clear one-line errors.

Reads the original project's six state_dicts unchanged and reads/writes our own format
(`deepfake-stream/1`). With no checkpoint at all, `resolve_weights("auto")` gives a seeded random model
flagged `calibrated=False`; `resolve_weights(folder)` picks from a folder the way `auto` picks from the weights
folder (`model.weights_dir.default_weights_dir()`).
Our own format is called calibrated only when it carries an evaluation (`model.evaluate --calibrate`), whose
threshold the live pipeline then uses by default.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from model.labels import ARCHITECTURE_NAMES, LABEL_ORDER, UNCALIBRATED_WARNING
from model.network import SeedNet, TemporalNet, build_network
from model.preprocess import SEED_PREPROCESSING, Preprocessing
from model.weights_dir import default_weights_dir

OWN_FORMAT = "deepfake-stream/1"
UNCALIBRATED_NAME = "uncalibrated-random"
RANDOM_SEED = 0
MAX_KEYS_NAMED = 5


class CheckpointError(Exception):
    """A checkpoint that cannot be used: missing, corrupt, refused, foreign or of the wrong shapes."""


@dataclass(frozen=True)
class KnownCheckpoint:
    """One of the original project's published checkpoints."""

    file_name: str
    trained_window: int
    reported_accuracy: float  # percent, on the original's own (optimistic) split: seed-notes.md
    label_order: tuple[str, str] = LABEL_ORDER
    preprocessing: Preprocessing = SEED_PREPROCESSING
    arch: str = "seed"


KNOWN_CHECKPOINTS: tuple[KnownCheckpoint, ...] = (
    KnownCheckpoint("model_84_acc_10_frames_final_data.pt", 10, 84.21),
    KnownCheckpoint("model_87_acc_20_frames_final_data.pt", 20, 87.79),
    KnownCheckpoint("model_89_acc_40_frames_final_data.pt", 40, 89.35),
    KnownCheckpoint("model_90_acc_60_frames_final_data.pt", 60, 90.59),
    KnownCheckpoint("model_91_acc_80_frames_final_data.pt", 80, 91.50),
    KnownCheckpoint("model_93_acc_100_frames_final_data.pt", 100, 93.59),
)
KNOWN_BY_NAME = {known.file_name: known for known in KNOWN_CHECKPOINTS}


@dataclass(frozen=True)
class LoadedModel:
    """A network in eval mode on the CPU plus everything a consumer must know about where it came from."""

    network: SeedNet | TemporalNet
    name: str
    path: Path | None
    calibrated: bool
    trained_window: int | None
    reported_accuracy: float | None
    preprocessing: Preprocessing
    label_order: tuple[str, str]
    weights_hash: str
    metrics: dict[str, Any] = field(default_factory=dict)
    threshold: float | None = None  # the verdict threshold `model.evaluate --calibrate` chose (None: not chosen)

    @property
    def arch(self) -> str:
        return self.network.arch

    @property
    def expected_window(self) -> int | None:
        """The window this checkpoint's scores and threshold were made for: its calibration's, else our trainer's;
        None for the original six uncalibrated by us, which score each frame alone and serve any window."""
        evaluation = self.metrics.get("evaluation")
        window = evaluation.get("window") if isinstance(evaluation, Mapping) else None
        if isinstance(window, int) and not isinstance(window, bool):
            return window
        return self.trained_window if "training" in self.metrics else None

    def describe(self) -> str:
        """One line for logs and the dashboard, with the uncalibrated warning where it applies."""
        if not self.calibrated and self.path is not None:
            return (
                f"{self.name} ({self.arch}, NOT CALIBRATED: no evaluation in it, every verdict UNSURE; run "
                f"python -m model.evaluate {self.path} DATA --calibrate OUT)"
            )
        if not self.calibrated:
            return f"{UNCALIBRATED_WARNING} (seeded random {self.arch} model; scores carry no meaning)"
        if self.threshold is not None:
            return f"{self.name} ({self.arch}, calibrated threshold {self.threshold:.3f})"
        accuracy = f", reported accuracy {self.reported_accuracy:.2f}%" if self.reported_accuracy else ""
        window = f", trained on {self.trained_window}-frame windows" if self.trained_window else ""
        return f"{self.name} ({self.arch}{window}{accuracy})"


def strip_prefix(state_dict: Mapping[str, Any], prefix: str = "module.") -> dict[str, Any]:
    """Drop a leading `module.` (saved through nn.DataParallel) from every key that has it."""
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def _name_keys(keys: set[str]) -> str:
    named = sorted(keys)[:MAX_KEYS_NAMED]
    more = f" and {len(keys) - MAX_KEYS_NAMED} more" if len(keys) > MAX_KEYS_NAMED else ""
    return ", ".join(named) + more


def _read_file(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (put it in weights/ or pass --weights auto)")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): download it again")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if "Unsupported global" in str(error):
            raise CheckpointError(
                f"checkpoint {path} was refused: it needs code to load (a pickle of Python objects, not a "
                "plain state_dict); nothing in it was run. Re-save it as a state_dict"
            ) from None
        raise CheckpointError(f"checkpoint {path} is corrupt (not a valid pickle): download it again") from None
    # Any failure while parsing an untrusted file means the same thing to the user: it is not a checkpoint.
    except Exception as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(
            f"checkpoint {path} is not a readable PyTorch file (truncated or corrupt? {reason[:120]}): "
            "download it again"
        ) from None


def _check_state_dict(network: SeedNet | TemporalNet, state_dict: Mapping[str, Any], path: Path) -> None:
    expected = network.state_dict()
    # BatchNorm's step counters do not affect inference, and some savers leave them out.
    missing = {k for k in set(expected) - set(state_dict) if not k.endswith("num_batches_tracked")}
    unexpected = set(state_dict) - set(expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_name_keys(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_name_keys(unexpected)}")
        raise CheckpointError(f"checkpoint {path} does not fit the {network.arch} network ({'; '.join(parts)})")
    non_tensors = _not_tensor_keys(state_dict)
    if non_tensors:
        raise CheckpointError(f"checkpoint {path} has non-tensor weights: {_name_keys(non_tensors)}")
    wrong = {
        k: (tuple(v.shape), tuple(expected[k].shape)) for k, v in state_dict.items() if v.shape != expected[k].shape
    }
    if wrong:
        named = ", ".join(f"{k} {got} (expected {want})" for k, (got, want) in sorted(wrong.items())[:MAX_KEYS_NAMED])
        raise CheckpointError(f"checkpoint {path} has wrong shapes: {named}")


def _not_tensor_keys(state_dict: Mapping[str, Any]) -> set[str]:
    return {str(k) for k, v in state_dict.items() if not isinstance(v, Tensor)}


def state_dict_hash(network: torch.nn.Module) -> str:
    """A short content hash of the weights: the key for caches (e.g. an exported ONNX graph)."""
    digest = hashlib.blake2b(digest_size=12)
    for key, tensor in sorted(network.state_dict().items()):
        digest.update(key.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _build_loaded(
    network: SeedNet | TemporalNet, state_dict: Mapping[str, Any], path: Path, **info: Any
) -> LoadedModel:
    _check_state_dict(network, state_dict, path)
    counters = {k: v for k, v in network.state_dict().items() if k.endswith("num_batches_tracked")}
    network.load_state_dict({**counters, **state_dict}, strict=True)
    network.eval()
    return LoadedModel(network=network, path=path, weights_hash=state_dict_hash(network), **info)


def _load_own_format(content: Mapping[str, Any], path: Path) -> LoadedModel:
    required = ("arch", "state_dict", "window", "label_order", "mean", "std", "input_size", "channel_order")
    absent = [k for k in required if k not in content]
    if absent:
        raise CheckpointError(f"checkpoint {path} ({OWN_FORMAT}) lacks fields: {', '.join(absent)}")
    if content["arch"] not in ARCHITECTURE_NAMES:
        raise CheckpointError(f"checkpoint {path} names an unknown architecture {content['arch']!r}")
    if tuple(content["label_order"]) != LABEL_ORDER:
        raise CheckpointError(f"checkpoint {path} has label order {content['label_order']}, expected {LABEL_ORDER}")
    try:
        preprocessing = Preprocessing(
            input_size=int(content["input_size"]),
            channel_order=str(content["channel_order"]),
            mean=tuple(float(v) for v in content["mean"]),
            std=tuple(float(v) for v in content["std"]),
        )
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} has bad preprocessing fields: {error}") from None
    state_dict = content["state_dict"]
    if not isinstance(state_dict, Mapping):
        raise CheckpointError(f"checkpoint {path}: its state_dict field is not a dict of tensors")
    metrics = dict(content.get("metrics") or {})
    threshold = evaluated_threshold(metrics, path)
    return _build_loaded(
        build_network(content["arch"]),
        strip_prefix(state_dict),
        path,
        name=path.name,
        calibrated=threshold is not None,  # only an evaluated checkpoint is called calibrated
        trained_window=int(content["window"]),
        reported_accuracy=None,
        preprocessing=preprocessing,
        label_order=LABEL_ORDER,
        metrics=metrics,
        threshold=threshold,
    )


def evaluated_threshold(metrics: Mapping[str, Any], path: Path) -> float | None:
    """The threshold `model.evaluate --calibrate` wrote into `metrics["evaluation"]`, None when it was not evaluated."""
    evaluation = metrics.get("evaluation")
    if evaluation is None:
        return None
    threshold = evaluation.get("threshold") if isinstance(evaluation, Mapping) else None
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0.0 < float(threshold) < 1.0:
        raise CheckpointError(f"checkpoint {path} has an evaluation without a threshold in (0, 1): {threshold!r}")
    return float(threshold)


def load_checkpoint(path: str | Path) -> LoadedModel:
    """Load one checkpoint file (original state_dict or our format); CheckpointError says what is wrong."""
    path = Path(path)
    content = _read_file(path)
    if not isinstance(content, Mapping):
        raise CheckpointError(f"checkpoint {path} holds a {type(content).__name__}, not a state_dict")
    if content.get("format") == OWN_FORMAT:
        return _load_own_format(content, path)
    non_tensors = _not_tensor_keys(content)
    if non_tensors:
        raise CheckpointError(
            f"checkpoint {path} is not a state_dict nor {OWN_FORMAT} (non-tensor entries: {_name_keys(non_tensors)})"
        )
    known = KNOWN_BY_NAME.get(path.name)
    return _build_loaded(
        SeedNet(),
        strip_prefix(content),
        path,
        name=path.name,
        calibrated=True,
        trained_window=known.trained_window if known else None,
        reported_accuracy=known.reported_accuracy if known else None,
        preprocessing=known.preprocessing if known else SEED_PREPROCESSING,
        label_order=LABEL_ORDER,
    )


def save_checkpoint(
    loaded_network: SeedNet | TemporalNet,
    path: str | Path,
    *,
    window: int,
    trained_on: str,
    metrics: Mapping[str, Any] | None = None,
    preprocessing: Preprocessing = SEED_PREPROCESSING,
) -> Path:
    """Write our own format (`deepfake-stream/1`): the weights plus what is needed to use them faithfully."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = asdict(preprocessing)
    torch.save(
        {
            "format": OWN_FORMAT,
            "arch": loaded_network.arch,
            "window": int(window),
            "label_order": list(LABEL_ORDER),
            "mean": list(spec["mean"]),
            "std": list(spec["std"]),
            "input_size": spec["input_size"],
            "channel_order": spec["channel_order"],
            "state_dict": loaded_network.state_dict(),
            "trained_on": trained_on,
            "metrics": dict(metrics or {}),
        },
        path,
    )
    return path


def random_model(arch: str = "seed", seed: int = RANDOM_SEED) -> LoadedModel:
    """The seeded random model used when no checkpoint is present: flagged uncalibrated everywhere."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        network = build_network(arch)
    return LoadedModel(
        network=network,
        name=UNCALIBRATED_NAME,
        path=None,
        calibrated=False,
        trained_window=None,
        reported_accuracy=None,
        preprocessing=SEED_PREPROCESSING,
        label_order=LABEL_ORDER,
        weights_hash=state_dict_hash(network),
    )


def find_best_checkpoint(weights_dir: Path) -> Path | None:
    """The best-accuracy original checkpoint in `weights_dir`, else the newest `*.pt` there, else None."""
    originals = [k for k in KNOWN_CHECKPOINTS if (weights_dir / k.file_name).is_file()]
    if originals:
        return weights_dir / max(originals, key=lambda k: k.reported_accuracy).file_name
    others = sorted(weights_dir.glob("*.pt"), key=lambda p: (p.stat().st_mtime, p.name))
    return others[-1] if others else None


def resolve_weights(spec: str | Path = "auto", weights_dir: str | Path | None = None) -> LoadedModel:
    """`auto`: the best checkpoint present in `weights_dir` (default: `default_weights_dir()`), or the uncalibrated
    random model; a folder (e.g. the one the original checkpoints were downloaded into): the best checkpoint in it,
    as `auto` picks; else a file."""
    if str(spec) == "auto":
        found = find_best_checkpoint(Path(weights_dir) if weights_dir is not None else default_weights_dir())
        return load_checkpoint(found) if found else random_model()
    path = Path(spec)
    if path.is_dir():
        found = find_best_checkpoint(path)
        if found is None:
            raise CheckpointError(
                f"no checkpoint in the folder {path}: looked for the original project's "
                f"{', '.join(k.file_name for k in KNOWN_CHECKPOINTS)} and any other *.pt (our own {OWN_FORMAT} "
                "format); pass the folder that holds them, or one checkpoint file"
            )
        return load_checkpoint(found)
    return load_checkpoint(path)
