"""The settings: one frozen dataclass per section of configs/default.yaml, holding the one set of defaults.

Light on purpose (no torch, av, cv2 or mediapipe): the CLI checks a config before anything heavy loads, and every
component takes its own section from here instead of declaring defaults of its own.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from model.labels import CPU_ENGINES, DEVICES, MAX_WINDOW, MIN_WINDOW, is_device_name
from stream.config.store_location import StoreTarget
from stream.network import LOOPBACK, is_loopback
from stream.text import redact_url

# Users read and edit the checkout's configs/default.yaml. An installed package has no checkout: it reads the copy
# shipped beside this module, which in the repository is a symlink to that file (so the two cannot drift apart, and
# no build step has to copy it) and in a wheel is the file itself (setuptools copies a symlink's content).
_CHECKOUT = Path(__file__).resolve().parents[2]
_CHECKOUT_CONFIG = _CHECKOUT / "configs" / "default.yaml"
_FROM_CHECKOUT = (_CHECKOUT / "pyproject.toml").is_file() and _CHECKOUT_CONFIG.is_file()
DEFAULT_CONFIG = _CHECKOUT_CONFIG if _FROM_CHECKOUT else Path(__file__).resolve().with_name("default.yaml")
WINDOW_MODES = ("mean", "last")
# Kinds of source the service's API may add (`service.api_sources`); uploads are their own resource, always on.
API_SOURCE_KINDS = ("rtsp", "whip", "demo", "file", "screen", "webcam")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_NAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")


class ConfigError(Exception):
    """A configuration file, section, key or value that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class SourceOptions:
    realtime: bool = False  # pace files to their own frame rate like a live stream (live sources always are)
    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    live_buffer: int = 2
    file_buffer: int = 8

    def __post_init__(self) -> None:
        if min(self.open_timeout_s, self.read_timeout_s, self.reconnect_initial_s) <= 0:
            raise ValueError("open_timeout_s, read_timeout_s and reconnect_initial_s must be positive seconds")
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError(
                f"reconnect_max_s must be at least reconnect_initial_s ({self.reconnect_initial_s}), "
                f"got {self.reconnect_max_s}"
            )
        if self.live_buffer < 1 or self.file_buffer < 1:
            raise ValueError(
                f"live_buffer and file_buffer must be at least 1 frame, got {self.live_buffer}, {self.file_buffer}"
            )


@dataclass(frozen=True)
class BoxMapping:
    """MediaPipe's box -> the original's dlib HOG box, as fractions of MediaPipe's width and height.

    Defaults from seed-notes.md (one identity, 27 sizes): dlib's box is x + 0.066·w, y + 0.077·h,
    0.886·w × 0.887·h of MediaPipe's: the same centre, 2% lower, 11% smaller.
    """

    dx: float = 0.066
    dy: float = 0.077
    scale_w: float = 0.886
    scale_h: float = 0.887

    def __post_init__(self) -> None:
        if not (0.2 <= self.scale_w <= 3.0 and 0.2 <= self.scale_h <= 3.0):
            raise ValueError(f"box scales must be within 0.2..3.0, got {self.scale_w}, {self.scale_h}")

    def apply(self, x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
        left, top = x + self.dx * w, y + self.dy * h
        return (left, top, left + self.scale_w * w, top + self.scale_h * h)


@dataclass(frozen=True)
class ClipSettings:
    enabled: bool = True  # False: no evidence clips are written
    directory: Path | None = None  # None: a `clips` folder beside the store (see `beside_store`)
    post_roll_s: float = 3.0  # seconds of the face recorded after it turned FAKE
    size: int = 112  # clip frames are size x size
    fps: float = 15.0  # nominal playback rate of the mp4 (crops arrive at whatever rate was scored)
    max_total_mb: float = 500.0  # oldest clips are deleted past this

    def __post_init__(self) -> None:
        if self.post_roll_s < 0 or self.size < 16 or self.size % 2 or self.fps <= 0 or self.max_total_mb <= 0:
            raise ValueError(
                "clip settings: post_roll_s >= 0, an even size >= 16, fps > 0 and max_total_mb > 0 are required"
            )

    def beside_store(self, store_db: Path) -> ClipSettings:
        """These settings with an absolute directory, fixed now: the one given (a relative one against the current
        directory, as any path on a command line), else `clips` in the store's folder. Alerts then link clips by
        absolute paths that a dashboard started anywhere can open."""
        directory = self.directory if self.directory is not None else Path(store_db).parent / "clips"
        return replace(self, directory=directory.absolute())


DEFAULT_THRESHOLD = 0.5  # used when neither the config nor the checkpoint gives one


THRESHOLD_ORIGINS = {
    "config": "set in the config or with --threshold",
    "checkpoint": "the checkpoint's calibrated threshold (python -m model.evaluate --calibrate)",
    "default": "the default: neither the config nor the checkpoint sets one",
}


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
        if self.roi_scale < 1.2 or self.scan_period < 1 or self.scan_tile < 64 or self.confirm_frames < 0:
            raise ValueError("roi_scale >= 1.2, scan_period >= 1, scan_tile >= 64, confirm_frames >= 0 are required")
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


MAX_LOOKAHEAD_FRAMES = 256  # each held 720p frame is 2.8 MB


@dataclass(frozen=True)
class LoopSettings:
    max_batch: int = 16  # crops per encoder call
    lookahead_frames: int = 32  # a file's faces found this many frames ahead of the encoder (0: frame by frame)
    max_wait_ms: float = 0.0  # wait for other live streams' frames to share a batch (0: never)
    annotate_fps: float = 4.0  # annotated frames per second per stream written to the store
    status_interval_s: float = 5.0  # seconds between status lines on stderr
    health_interval_s: float = 1.0  # seconds between stream health rows in the store
    thumb_size: int = 112  # ring crops (the evidence clips' pre-roll) are thumb_size x thumb_size
    min_track_fps: float = 10.0  # under overload an iteration lasts at most 1/this: no live camera processed slower
    encode_budget_ms: float = 0.0  # live crops' encode time per iteration (0: what the rest leaves of 1/min_track_fps)
    overload_share: float = 0.2  # "overloaded" once more than this share of frames is thinned or of crops skipped ...
    overload_window_s: float = 10.0  # ... over this many seconds
    upload_share: float = 0.5  # beside live cameras a running upload gets at least this share of the loop's time

    def __post_init__(self) -> None:
        if not 0.0 < self.overload_share <= 1.0:
            raise ValueError(f"overload_share must be in (0, 1], got {self.overload_share}")
        if not 0.0 < self.upload_share < 1.0:
            raise ValueError(
                f"upload_share must be in (0, 1) (the part of the loop's time an upload gets beside live cameras), "
                f"got {self.upload_share}"
            )
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be at least 0, got {self.max_wait_ms}")
        if not 0 <= self.lookahead_frames <= MAX_LOOKAHEAD_FRAMES:
            raise ValueError(
                f"lookahead_frames must be 0..{MAX_LOOKAHEAD_FRAMES} frames (0: no look-ahead), "
                f"got {self.lookahead_frames}"
            )
        if self.encode_budget_ms < 0:
            raise ValueError(f"encode_budget_ms must be at least 0 (0: derived), got {self.encode_budget_ms}")
        if self.min_track_fps <= 0:
            raise ValueError(f"min_track_fps must be positive, got {self.min_track_fps}")
        for name in ("annotate_fps", "status_interval_s", "health_interval_s", "overload_window_s"):
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


def is_host_or_network(text: str) -> bool:
    """A host name (`camera.local`), an address (`10.0.0.7`, `::1`) or a network (`10.0.0.0/24`)."""
    try:
        ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return bool(_HOST_NAME.match(text.strip()))
    return True


def _has_host(url: str) -> bool:
    try:
        parts = urlsplit(url)
        return bool(parts.hostname) and (parts.port is None or parts.port > 0)
    except ValueError:  # an unclosed [IPv6 or a port that is not a number
        return False


@dataclass(frozen=True)
class ServiceSettings:
    host: str = LOOPBACK  # where the HTTP service listens; anything but loopback needs a token
    port: int | None = None  # None: no service; 0: a free port
    token: str | None = None  # the admin's bearer token: the API, uploads, metrics and WHIP (never stored or logged)
    publish_token: str | None = None  # a publisher's bearer token: WHIP only (needs `token`; never stored or logged)
    allowed_hosts: tuple[str, ...] = ()  # Host header names accepted besides loopback (DNS-rebinding guard)
    public_url: str | None = None  # the URL clients call (stored in the session instead of the bind address)
    tls_cert: Path | None = None  # PEM certificate (chain): serve https:// (with tls_key)
    tls_key: Path | None = None  # PEM private key of tls_cert
    tls_ca: Path | None = None  # PEM CA the dashboard's client verifies the service's certificate with
    webhooks: tuple[str, ...] = ()  # URLs that get a JSON POST for each FAKE alert and stream lost/recovered
    webhook_timeout_s: float = 5.0  # one POST gives up after this long ...
    webhook_retries: int = 3  # ... and is retried this many times with growing backoff
    webhook_queue: int = 256  # events waiting for delivery; past this the oldest are dropped (and counted)
    webhook_secret: str | None = None  # HMAC key that signs each webhook body (None: unsigned; never stored or logged)
    ice_servers: tuple[str, ...] = ()  # STUN/TURN URLs for WHIP peers (none: local interfaces only)
    upload_max_mb: float = 500.0  # the largest video an upload may send
    upload_dir: Path | None = None  # where uploads are kept; None: an uploads/ folder beside store.db
    upload_retention_days: float | None = None  # uploaded videos older than this are deleted; None: store's
    upload_quota_mb: float | None = 5000.0  # past this the oldest uploaded videos are deleted; None: no quota
    api_sources: tuple[str, ...] = ("rtsp", "whip", "demo", "file")  # what POST /api/streams and WHIP may add
    media_dir: Path | None = None  # the only folder API-added files may come from; None: no files through the API
    camera_hosts: tuple[str, ...] = ()  # hosts/networks API-added cameras may be on; empty: any host
    # Caps (over one: 429 with Retry-After, naming the key; docs/service-and-api.md).
    max_streams: int = 16  # running streams (any kind but uploads) before the API and WHIP refuse more
    max_opening: int = 4  # sources the API opens at once, each on its own worker of a pool of this size
    max_publishers: int = 8  # WHIP sessions, counted from the POST (an unconnected one too)
    max_uploads_running: int = 1  # uploads scored at once; the next ones wait in a queue ...
    upload_queue: int = 20  # ... of this many (received or being received)
    max_connections: int = 64  # HTTP requests served at once
    upload_min_kbps: float = 64.0  # an upload slower than this (kilobits/s, after upload_grace_s) is cut off ...
    upload_grace_s: float = 10.0  # ... measured from this long after its start
    upload_deadline_s: float = 1800.0  # an upload still arriving after this long is cut off (408)
    ended_keep_s: float = 600.0  # ended streams stay in /api/streams and /metrics this long (the store keeps all)

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
        if self.webhook_secret is not None and not self.webhook_secret.strip():
            raise ValueError("webhook_secret must not be empty (null: webhooks unsigned)")
        if not self.upload_max_mb > 0:
            raise ValueError(f"upload_max_mb must be positive, got {self.upload_max_mb}")
        for key in ("max_streams", "max_opening", "max_publishers", "max_uploads_running", "max_connections"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.upload_queue < 0:
            raise ValueError(f"upload_queue must be 0 or more (0: no queue), got {self.upload_queue}")
        if self.upload_min_kbps < 0 or self.upload_grace_s < 0:
            raise ValueError("upload_min_kbps and upload_grace_s must be 0 or more (upload_min_kbps 0: no minimum)")
        if not self.upload_deadline_s > 0 or not self.ended_keep_s > 0:
            raise ValueError(
                f"upload_deadline_s and ended_keep_s must be positive seconds, got "
                f"{self.upload_deadline_s} and {self.ended_keep_s}"
            )
        for url in self.webhooks:
            if not url.startswith(("http://", "https://")) or not _has_host(url):
                raise ValueError(f"webhooks must be http:// or https:// URLs with a host, got {redact_url(url)!r}")
        self._check_access()
        self._check_sources()

    def _check_access(self) -> None:
        if self.publish_token is not None:
            if not self.publish_token.strip():
                raise ValueError("publish_token must not be empty (null: no publish token)")
            if self.token is None:
                raise ValueError("publish_token needs token (the admin's) too: set both, or neither")
            if self.publish_token == self.token:
                raise ValueError("publish_token must differ from token (the admin's): make a second one")
        for name in self.allowed_hosts:
            if not name or any(c in name for c in "/@ \t") or name.count(":") == 1:
                raise ValueError(f"allowed_hosts holds names or addresses without scheme or port, got {name!r}")
        if self.public_url is not None and not _is_base_url(self.public_url):
            raise ValueError(f"public_url must be an http:// or https:// URL with a host, got {self.public_url!r}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both (--tls-cert and --tls-key), or neither")

    def _check_sources(self) -> None:
        if self.upload_retention_days is not None and not self.upload_retention_days > 0:
            raise ValueError(
                f"upload_retention_days must be a positive number of days or null, got {self.upload_retention_days}"
            )
        if self.upload_quota_mb is not None and not self.upload_quota_mb > 0:
            raise ValueError(f"upload_quota_mb must be positive (MB) or null, got {self.upload_quota_mb}")
        for kind in self.api_sources:
            if kind not in API_SOURCE_KINDS:
                raise ValueError(f"api_sources: unknown kind {kind!r} (choose from {', '.join(API_SOURCE_KINDS)})")
        for host in self.camera_hosts:
            if not is_host_or_network(host):
                raise ValueError(f"camera_hosts: {host!r} is not a host name, an address or a network (10.0.0.0/24)")

    def is_loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


def _is_base_url(url: str) -> bool:
    parsed = urlsplit(url)
    try:
        parsed.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.hostname) and not parsed.username and not parsed.query


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
