"""Typed, strict configuration: configs/default.yaml and flags fill the same frozen dataclasses that hold the defaults.

Light on purpose: importing it loads none of torch, av, cv2, mediapipe, onnxruntime or openvino.
"""

from stream.config.loading import (
    SECRET_KEYS,
    WEBHOOK_SECRET_ENV,
    config_keys,
    environment_overrides,
    load_settings,
    settings_as_dict,
    settings_from_mapping,
    with_overrides,
)
from stream.config.sections import (
    DEFAULT_CONFIG,
    DEFAULT_THRESHOLD,
    FACE_MODES,
    ROI_MODELS,
    THRESHOLD_ORIGINS,
    WINDOW_MODES,
    BoxMapping,
    ClipSettings,
    ConfigError,
    FaceSettings,
    LoopSettings,
    ModelSettings,
    ServiceSettings,
    Settings,
    SourceOptions,
    StoreSettings,
    TrackingSettings,
    VerdictPolicy,
)

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_THRESHOLD",
    "FACE_MODES",
    "ROI_MODELS",
    "SECRET_KEYS",
    "THRESHOLD_ORIGINS",
    "WEBHOOK_SECRET_ENV",
    "WINDOW_MODES",
    "BoxMapping",
    "ClipSettings",
    "ConfigError",
    "FaceSettings",
    "LoopSettings",
    "ModelSettings",
    "ServiceSettings",
    "Settings",
    "SourceOptions",
    "StoreSettings",
    "TrackingSettings",
    "VerdictPolicy",
    "config_keys",
    "environment_overrides",
    "load_settings",
    "settings_as_dict",
    "settings_from_mapping",
    "with_overrides",
]
