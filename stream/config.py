"""Typed, strict configuration: configs/default.yaml and flags fill the same frozen dataclasses that hold the defaults.

An unknown key, a wrong type or an out-of-range value is a one-line ConfigError naming the key (and the closest one).
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from model.labels import CPU_ENGINES, DEVICES, MAX_WINDOW, MIN_WINDOW, is_device_name
from stream.clips import ClipSettings
from stream.faces import BoxMapping
from stream.scores import VerdictPolicy
from stream.sources import SourceOptions
from stream.store.location import PostgresUrl, StoreTarget, parse_store_target

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "default.yaml"
WINDOW_MODES = ("mean", "last")


class ConfigError(Exception):
    """A configuration file, section, key or value that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class ModelSettings:
    weights: str = "auto"  # auto | a checkpoint path
    window: int = 20  # frames per window score
    stride: int = 1  # score a face's window every N scored crops
    window_mode: str = "mean"  # mean | last
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    cpu_engine: str = "auto"  # auto (fastest passing the parity gate here) | one of model.labels.CPU_ENGINES

    def __post_init__(self) -> None:
        if not self.weights:
            raise ValueError("weights must be auto or a checkpoint path, got an empty string")
        if not MIN_WINDOW <= self.window <= MAX_WINDOW:
            raise ValueError(f"window must be {MIN_WINDOW}..{MAX_WINDOW} frames, got {self.window}")
        if self.stride < 1:
            raise ValueError(f"stride must be at least 1, got {self.stride}")
        if self.window_mode not in WINDOW_MODES:
            raise ValueError(f"window_mode must be one of {', '.join(WINDOW_MODES)}, got {self.window_mode!r}")
        if not is_device_name(self.device):
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.cpu_engine not in CPU_ENGINES:
            raise ValueError(f"cpu_engine must be one of {', '.join(CPU_ENGINES)}, got {self.cpu_engine!r}")


FACE_MODES = ("roi", "full_frame")
ROI_MODELS = ("full_range", "short_range")


@dataclass(frozen=True)
class FaceSettings:
    min_score: float = 0.5  # detections below this confidence are ignored
    box_dx: float = 0.066  # MediaPipe box -> the original's dlib box (see stream.faces.BoxMapping)
    box_dy: float = 0.077
    box_scale_w: float = 0.886
    box_scale_h: float = 0.887
    suppression: float = 0.1  # overlapping detections of one face above this IoU are merged into one
    mode: str = "roi"  # roi: each face re-detected in its own crop | full_frame: one pass over the whole frame
    roi_scale: float = 2.5  # roi: a face is re-detected in a square this many times its box
    scan_period: int = 10  # roi: the whole frame is scanned for new faces every N frames ...
    scan_tile: int = 640  # ... and, between those, the next tile of this size of a larger frame
    birth_iou: float = 0.1  # roi: a detection overlapping a live face this much never starts a new one
    confirm_frames: int = 2  # roi: a new face gets an id after this many consecutive crop re-detections ...
    confirm_score: float = 0.75  # ... each scoring at least this
    roi_model: str = "short_range"  # roi: the model re-detecting in crops: short_range | full_range
    roi_box_dx: float = 0.061  # short-range box -> the same tight box (bench/geometry.py measured these) ...
    roi_box_dy: float = 0.023
    roi_box_scale_w: float = 0.901
    roi_box_scale_h: float = 0.902

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score must be in 0..1, got {self.min_score}")
        if self.roi_model not in ROI_MODELS:
            raise ValueError(f"roi_model must be one of {', '.join(ROI_MODELS)}, got {self.roi_model!r}")
        if self.mode not in FACE_MODES:
            raise ValueError(f"mode must be one of {', '.join(FACE_MODES)}, got {self.mode!r}")
        if not 0.0 < self.suppression < 1.0 or not 0.0 < self.birth_iou < 1.0:
            raise ValueError("suppression and birth_iou must be in (0, 1)")
        if not 0.0 <= self.confirm_score <= 1.0:
            raise ValueError(f"confirm_score must be in 0..1, got {self.confirm_score}")
        if not (0.2 <= self.box_scale_w <= 3.0 and 0.2 <= self.box_scale_h <= 3.0):
            raise ValueError(
                f"box_scale_w and box_scale_h must be within 0.2..3.0, got {self.box_scale_w}, {self.box_scale_h}"
            )

    def mapping(self) -> BoxMapping:
        return BoxMapping(dx=self.box_dx, dy=self.box_dy, scale_w=self.box_scale_w, scale_h=self.box_scale_h)

    def roi_mapping(self) -> BoxMapping:
        """For short-range boxes found in a face's crop."""
        return BoxMapping(
            dx=self.roi_box_dx, dy=self.roi_box_dy, scale_w=self.roi_box_scale_w, scale_h=self.roi_box_scale_h
        )


@dataclass(frozen=True)
class TrackingSettings:
    iou_threshold: float = 0.3  # a detection joins a track at least this IoU with its predicted box
    max_missed_frames: int = 15  # a track unseen for more frames than this is evicted

    def __post_init__(self) -> None:
        if not 0.0 < self.iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {self.iou_threshold}")
        if self.max_missed_frames < 0:
            raise ValueError(f"max_missed_frames must be at least 0, got {self.max_missed_frames}")


@dataclass(frozen=True)
class LoopSettings:
    max_batch: int = 16  # crops per encoder call
    max_wait_ms: float = 0.0  # wait for other live streams' frames to share a batch (0: never)
    annotate_fps: float = 4.0  # annotated frames per second per stream written to the store
    status_interval_s: float = 5.0  # seconds between status lines on stderr
    health_interval_s: float = 1.0  # seconds between stream health rows in the store
    thumb_size: int = 112  # ring crops (the evidence clips' pre-roll) are thumb_size x thumb_size
    min_track_fps: float = 10.0  # under overload an iteration lasts at most 1/this: no live camera processed slower
    encode_budget_ms: float = 0.0  # live crops' encode time per iteration (0: what the rest leaves of 1/min_track_fps)

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be at least 0, got {self.max_wait_ms}")
        if self.encode_budget_ms < 0:
            raise ValueError(f"encode_budget_ms must be at least 0 (0: derived), got {self.encode_budget_ms}")
        if self.min_track_fps <= 0:
            raise ValueError(f"min_track_fps must be positive, got {self.min_track_fps}")
        for name in ("annotate_fps", "status_interval_s", "health_interval_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if not 8 <= self.thumb_size <= 512:
            raise ValueError(f"thumb_size must be 8..512 pixels per side, got {self.thumb_size}")


@dataclass(frozen=True)
class StoreSettings:
    db: StoreTarget = Path("runs/deepfake.db")  # a SQLite file, or postgresql://user@host:port/dbname
    retention_days: float | None = 30.0  # sessions ended longer ago are deleted (None: keep all)

    def __post_init__(self) -> None:
        if self.retention_days is not None and not self.retention_days > 0:
            raise ValueError(f"retention_days must be a positive number of days or null, got {self.retention_days}")


@dataclass(frozen=True)
class ServiceSettings:
    host: str = "127.0.0.1"  # where the HTTP service listens; anything but loopback needs a token
    port: int | None = None  # None: no service; 0: a free port
    token: str | None = None  # bearer token the API and WHIP require (never stored or logged)
    webhooks: tuple[str, ...] = ()  # URLs that get a JSON POST for each FAKE alert and stream lost/recovered
    webhook_timeout_s: float = 5.0  # one POST gives up after this long ...
    webhook_retries: int = 3  # ... and is retried this many times with growing backoff
    webhook_queue: int = 256  # events waiting for delivery; past this the oldest are dropped (and counted)
    ice_servers: tuple[str, ...] = ()  # STUN/TURN URLs for WHIP peers (none: local interfaces only)
    upload_max_mb: float = 500.0  # the largest video an upload may send
    upload_dir: Path | None = None  # where uploads are kept; None: an uploads/ folder beside store.db

    def __post_init__(self) -> None:
        if self.port is not None and not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535 or null, got {self.port}")
        if not self.host:
            raise ValueError("host must be an address, got an empty string")
        if self.token is not None and not self.token.strip():
            raise ValueError("token must not be empty (null: no token)")
        if not self.webhook_timeout_s > 0:
            raise ValueError(f"webhook_timeout_s must be positive, got {self.webhook_timeout_s}")
        if self.webhook_retries < 0:
            raise ValueError(f"webhook_retries must be 0 or more, got {self.webhook_retries}")
        if self.webhook_queue < 1:
            raise ValueError(f"webhook_queue must be at least 1, got {self.webhook_queue}")
        if not self.upload_max_mb > 0:
            raise ValueError(f"upload_max_mb must be positive, got {self.upload_max_mb}")
        for url in self.webhooks:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"webhooks must be http:// or https:// URLs, got {url!r}")

    def is_loopback(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")


@dataclass(frozen=True)
class Settings:
    """One field per YAML section, in configs/default.yaml's order."""

    model: ModelSettings = field(default_factory=ModelSettings)
    faces: FaceSettings = field(default_factory=FaceSettings)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)
    verdicts: VerdictPolicy = field(default_factory=VerdictPolicy)
    pipeline: LoopSettings = field(default_factory=LoopSettings)
    sources: SourceOptions = field(default_factory=SourceOptions)
    store: StoreSettings = field(default_factory=StoreSettings)
    clips: ClipSettings = field(default_factory=ClipSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)


# Fields of a section's dataclass that are not configuration (set by the program, not by YAML or flags).
_NOT_CONFIG: dict[type, frozenset[str]] = {VerdictPolicy: frozenset({"calibrated", "threshold_from"})}
_SECTIONS: dict[str, type] = dict(typing.get_type_hints(Settings))
_HINTS: dict[type, dict[str, Any]] = {cls: typing.get_type_hints(cls) for cls in _SECTIONS.values()}


def config_keys(section: str) -> list[str]:
    """The keys YAML and flags may set in `section`, in declaration order."""
    cls = _SECTIONS[section]
    return [f.name for f in fields(cls) if f.init and f.name not in _NOT_CONFIG.get(cls, frozenset())]


_KEYS: dict[str, list[str]] = {section: config_keys(section) for section in _SECTIONS}
_DOTTED: dict[str, str] = {key: f"{section}.{key}" for section, keys in _KEYS.items() for key in keys}


def _closest(word: str, candidates: list[str]) -> str | None:
    matches = difflib.get_close_matches(word, candidates, n=1)
    return matches[0] if matches else None


def _unknown_key(origin: str, section: str, key: str) -> ConfigError:
    """`key` is not in `section`: suggest a key it was meant to be, here or in another section, else list them."""
    name = f"{section}.{key}"
    suggestion = _DOTTED.get(key)  # the right key in the wrong section
    if suggestion is None:
        close = _closest(key, _KEYS[section])
        suggestion = f"{section}.{close}" if close else None
    if suggestion is None:
        close = _closest(key, list(_DOTTED))
        suggestion = _DOTTED[close] if close else None
    if suggestion is not None:
        return ConfigError(f"{origin}: unknown key {name} (did you mean {suggestion}?)")
    return ConfigError(f"{origin}: unknown key {name} (valid keys of {section}: {', '.join(_KEYS[section])})")


def _unknown_top_level(origin: str, name: str, is_section: bool) -> ConfigError:
    """`name` at top level is neither a section nor placed in one: suggest a section or the full dotted key.

    `is_section`: it holds a mapping, so a section is the likelier meaning; else a key left out of its section.
    """
    if name in _DOTTED:
        return ConfigError(f"{origin}: unknown key {name} at top level (did you mean {_DOTTED[name]}?)")
    section, key = _closest(name, list(_SECTIONS)), _closest(name, list(_DOTTED))
    dotted = _DOTTED[key] if key else None
    first, second = (section, dotted) if is_section else (dotted, section)
    suggestion = first or second
    kind = "section" if is_section else "key"
    if suggestion is not None:
        return ConfigError(f"{origin}: unknown {kind} {name} (did you mean {suggestion}?)")
    return ConfigError(f"{origin}: unknown {kind} {name} (valid sections: {', '.join(_SECTIONS)})")


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


_EXPECTED = {int: "an integer", float: "a number", bool: "true or false", str: "a string", Path: "a path (string)"}
# Keys whose value is a secret: kept out of the config saved with a session.
SECRET_KEYS = frozenset({"service.token"})


def _typed(origin: str, dotted: str, hint: Any, value: Any) -> Any:
    """`value` checked against the field annotation `hint` (and int -> float, str -> Path); ConfigError if it is not."""
    if hint == StoreTarget:  # read as a URL before it is read as a path
        if not isinstance(value, str | Path | PostgresUrl):
            raise ConfigError(f"{origin}: {dotted} must be a path or a postgresql:// URL (string), got {_shown(value)}")
        try:
            return parse_store_target(value)
        except ValueError as error:
            raise ConfigError(f"{origin}: {dotted}: {error}") from None
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        optional = len(members) < len(typing.get_args(hint))
        if len(members) != 1:
            raise TypeError(f"config field {dotted}: unsupported annotation {hint}")
        hint = members[0]
    if value is None and optional:
        return None
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f"{origin}: {dotted} must be a list of strings, got {_shown(value)}")
        return tuple(value)
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    elif hint is Path:
        ok = isinstance(value, str | Path)
        value = Path(value) if ok else value
    else:
        raise TypeError(f"config field {dotted}: unsupported annotation {hint}")
    if not ok:
        expected = _EXPECTED[hint] + (" or null" if optional else "")
        raise ConfigError(f"{origin}: {dotted} must be {expected}, got {_shown(value)}")
    return value


def _section_values(origin: str, section: str, values: Mapping[Any, Any]) -> dict[str, Any]:
    hints = _HINTS[_SECTIONS[section]]
    checked: dict[str, Any] = {}
    for key, value in values.items():
        if not isinstance(key, str) or key not in _KEYS[section]:
            raise _unknown_key(origin, section, str(key))
        checked[key] = _typed(origin, f"{section}.{key}", hints[key], value)
    return checked


def _build(origin: str, section: str, make: Callable[..., Any], values: dict[str, Any]) -> Any:
    """`make(**values)` with the dataclass's own ValueError as a ConfigError naming origin and section."""
    try:
        return make(**values)
    except ValueError as error:
        raise ConfigError(f"{origin}: {section}: {error}") from None


def settings_from_mapping(data: Mapping[Any, Any], origin: str) -> Settings:
    """Settings from parsed YAML `{section: {key: value}}`; absent sections and keys keep their defaults."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origin}: must be a mapping of sections, got {_shown(data)}")
    sections: dict[str, Any] = {}
    for name, values in data.items():
        if not isinstance(name, str) or name not in _SECTIONS:
            raise _unknown_top_level(origin, str(name), is_section=isinstance(values, Mapping))
        if not isinstance(values, Mapping):
            raise ConfigError(f"{origin}: section {name} must be a mapping of keys, got {_shown(values)}")
        sections[name] = _build(origin, name, _SECTIONS[name], _section_values(origin, name, values))
    return Settings(**sections)


def with_overrides(settings: Settings, overrides: Mapping[str, Any], origin: str = "flags") -> Settings:
    """`settings` with dotted keys (`{"model.window": 10}`) replaced; a value of None (flag not given) is skipped."""
    changes: dict[str, dict[str, Any]] = {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, dot, key = dotted.partition(".")
        if not dot and dotted in _SECTIONS:
            keys = ", ".join(f"{dotted}.{key}" for key in _KEYS[dotted])
            raise ConfigError(f"{origin}: {dotted} is a section, not a key (its keys: {keys})")
        if not dot:
            raise _unknown_top_level(origin, dotted, is_section=False)
        if section not in _SECTIONS:
            suggestion = _DOTTED.get(key) or _closest(dotted, list(_DOTTED.values()))
            if suggestion is None:
                raise ConfigError(f"{origin}: unknown key {dotted} (valid sections: {', '.join(_SECTIONS)})")
            raise ConfigError(f"{origin}: unknown key {dotted} (did you mean {suggestion}?)")
        changes.setdefault(section, {}).update(_section_values(origin, section, {key: value}))
    updated: dict[str, Any] = {}
    for section, values in changes.items():
        updated[section] = _build(origin, section, partial(replace, getattr(settings, section)), values)
    return replace(settings, **updated)


def load_settings(path: Path | None = DEFAULT_CONFIG, overrides: Mapping[str, Any] | None = None) -> Settings:
    """The YAML file at `path` (None: the defaults alone) over the defaults, then `overrides` (dotted keys)."""
    settings = Settings()
    if path is not None:
        try:
            content = yaml.safe_load(Path(path).read_text())
        except OSError as error:
            raise ConfigError(f"cannot read config {path}: {error.strerror or error}") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"config {path} is not valid YAML: {_yaml_problem(error)}") from None
        if not isinstance(content, Mapping):
            raise ConfigError(f"config {path} must be a mapping of sections, got {_shown(content)}")
        settings = settings_from_mapping(content, str(path))
    return with_overrides(settings, overrides or {})


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return problem if mark is None else f"{problem} (line {mark.line + 1}, column {mark.column + 1})"


def settings_as_dict(settings: Settings) -> dict[str, dict[str, Any]]:
    """Exactly the config keys, JSON-serialisable (paths as strings): the resolved config saved with a run."""
    result: dict[str, dict[str, Any]] = {}
    for section, keys in _KEYS.items():
        values = getattr(settings, section)
        result[section] = {
            key: "<set>"
            if f"{section}.{key}" in SECRET_KEYS and getattr(values, key) is not None
            else _plain(getattr(values, key))
            for key in keys
        }
    return result


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return str(value) if isinstance(value, Path | PostgresUrl) else value
