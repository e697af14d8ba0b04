"""The typed, strict configuration: one set of defaults, unknown keys and bad values are one-line errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from model.engines import EngineError, resolve_device
from model.labels import MAX_WINDOW, MIN_WINDOW
from stream.config import (
    DEFAULT_CONFIG,
    BoxMapping,
    ConfigError,
    FaceSettings,
    ModelSettings,
    Settings,
    StoreSettings,
    config_keys,
    load_settings,
    settings_as_dict,
    settings_from_mapping,
    with_overrides,
)
from stream.faces.mediapipe_detectors import SHORT_RANGE_BOX_MAPPING

pytestmark = pytest.mark.fast  # make test-fast


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    return path


def error_of(data: object) -> str:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(data, "configs/x.yaml")  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_default_yaml_is_the_dataclass_defaults() -> None:
    assert load_settings(DEFAULT_CONFIG) == Settings()
    assert load_settings(None) == Settings()
    assert load_settings() == Settings()


def test_default_yaml_has_every_config_key_and_no_other() -> None:
    content = yaml.safe_load(DEFAULT_CONFIG.read_text())
    expected = settings_as_dict(Settings())
    assert list(content) == list(expected)
    for section, keys in expected.items():
        assert list(content[section]) == list(keys), section
        assert list(keys) == config_keys(section)


def test_default_yaml_comments_every_key() -> None:
    for line in DEFAULT_CONFIG.read_text().splitlines():
        if line.startswith("  ") and ":" in line:
            assert "#" in line, line


def test_face_settings_defaults_equal_box_mapping_defaults() -> None:
    assert FaceSettings().mapping() == BoxMapping()
    assert FaceSettings().roi_mapping() == SHORT_RANGE_BOX_MAPPING
    custom = FaceSettings(box_dx=0.1, box_dy=0.2, box_scale_w=1.0, box_scale_h=1.1).mapping()
    assert custom == BoxMapping(dx=0.1, dy=0.2, scale_w=1.0, scale_h=1.1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pipeline:\n  max_bacth: 1\n", "unknown key pipeline.max_bacth (did you mean pipeline.max_batch?)"),
        ("treshold: 0.9\n", "unknown key treshold (did you mean verdicts.threshold?)"),
        ("sources:\n  live_bufer: 9\n", "unknown key sources.live_bufer (did you mean sources.live_buffer?)"),
    ],
)
def test_typos_name_the_closest_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value) == f"{path}: {expected}"


def test_misplaced_and_unknown_keys() -> None:
    assert "did you mean verdicts.threshold?" in error_of({"threshold": 0.9})
    assert "did you mean sources.realtime?" in error_of({"pipeline": {"realtime": True}})
    assert "unknown section modle (did you mean model?)" in error_of({"modle": {"window": 20}})
    assert "valid sections: model, faces" in error_of({"zzz": {}})
    message = error_of({"store": {"qqqq": 1}})
    assert message == "configs/x.yaml: unknown key store.qqqq (valid keys of store: db, retention_days)"


def test_calibrated_is_not_a_config_key() -> None:
    assert "calibrated" not in config_keys("verdicts")
    assert "unknown key verdicts.calibrated" in error_of({"verdicts": {"calibrated": False}})
    assert "calibrated" not in settings_as_dict(Settings())["verdicts"]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"model": {"window": "twenty"}}, "model.window must be an integer, got 'twenty'"),
        ({"model": {"window": 20.0}}, "model.window must be an integer, got 20.0"),
        ({"model": {"stride": True}}, "model.stride must be an integer, got true"),
        ({"verdicts": {"threshold": "high"}}, "verdicts.threshold must be a number or null, got 'high'"),
        ({"verdicts": {"threshold": False}}, "verdicts.threshold must be a number or null, got false"),
        ({"sources": {"realtime": 1}}, "sources.realtime must be true or false, got 1"),
        ({"model": {"device": 0}}, "model.device must be a string, got 0"),
        ({"store": {"db": 5}}, "store.db must be a path or a postgresql:// URL (string), got 5"),
        ({"store": {"db": None}}, "store.db must be a path or a postgresql:// URL (string), got null"),
        ({"store": {"retention_days": "forever"}}, "store.retention_days must be a number or null, got 'forever'"),
        ({"model": None}, "section model must be a mapping of keys, got null"),
        ({"model": [1]}, "section model must be a mapping of keys, got [1]"),
    ],
)
def test_wrong_types_name_key_expected_and_value(data: dict, expected: str) -> None:
    assert error_of(data) == f"configs/x.yaml: {expected}"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"model": {"window": MIN_WINDOW - 1}}, f"model: window must be {MIN_WINDOW}..{MAX_WINDOW} frames, got 9"),
        ({"model": {"window": MAX_WINDOW + 1}}, "model: window must be"),
        ({"model": {"stride": 0}}, "model: stride must be at least 1"),
        ({"model": {"window_mode": "max"}}, "model: window_mode must be one of mean, last"),
        ({"model": {"cpu_engine": "tensorrt"}}, "model: cpu_engine must be one of auto, onnxruntime, onnxruntime-int8"),
        ({"verdicts": {"hysteresis": 0.6}}, "verdicts: hysteresis must be in"),
        ({"verdicts": {"rolling": 0}}, "verdicts: rolling must be"),
        ({"pipeline": {"max_batch": 0}}, "pipeline: max_batch must be at least 1"),
        ({"pipeline": {"max_wait_ms": -1}}, "pipeline: max_wait_ms must be at least 0"),
        ({"pipeline": {"annotate_fps": 0}}, "pipeline: annotate_fps must be positive"),
        ({"pipeline": {"thumb_size": 4}}, "pipeline: thumb_size must be 8..512"),
        ({"pipeline": {"overload_share": 0}}, "pipeline: overload_share must be in (0, 1]"),
        ({"pipeline": {"overload_share": 1.5}}, "pipeline: overload_share must be in (0, 1]"),
        ({"pipeline": {"overload_window_s": 0}}, "pipeline: overload_window_s must be positive"),
        ({"tracking": {"iou_threshold": 0}}, "tracking: iou_threshold must be in (0, 1]"),
        ({"faces": {"box_scale_w": 5.0}}, "faces: box_scale_w and box_scale_h must be within"),
        ({"sources": {"live_buffer": 0}}, "sources: live_buffer and file_buffer must be at least 1"),
        ({"store": {"retention_days": 0}}, "store: retention_days must be a positive number of days or null"),
        ({"clips": {"size": 15}}, "clips: clip settings:"),
    ],
)
def test_out_of_range_values_name_origin_and_section(data: dict, expected: str) -> None:
    assert error_of(data).startswith(f"configs/x.yaml: {expected}")


def test_values_are_typed_and_null_retention_keeps_all(tmp_path: Path) -> None:
    path = write(tmp_path, "store:\n  db: a/b.db\n  retention_days: null\npipeline:\n  max_wait_ms: 2\n")
    settings = load_settings(path)
    assert settings.store == StoreSettings(db=Path("a/b.db"), retention_days=None)
    assert isinstance(settings.pipeline.max_wait_ms, float)
    assert settings.model == ModelSettings()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("model: [1\n", "is not valid YAML: "),
        ("- 1\n- 2\n", "must be a mapping of sections, got [1, 2]"),
        ("", "must be a mapping of sections, got null"),
    ],
)
def test_unusable_files_name_the_file(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=re.escape(expected)) as caught:
        load_settings(path)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"cannot read config {tmp_path / 'nope.yaml'}"):
        load_settings(tmp_path / "nope.yaml")


def test_dotted_overrides_win_and_none_is_skipped(tmp_path: Path) -> None:
    path = write(tmp_path, "model:\n  window: 30\n  stride: 2\n")
    overrides = {"model.window": 10, "model.stride": None, "store.db": "x.db", "sources.realtime": True}
    settings = load_settings(path, overrides)
    assert (settings.model.window, settings.model.stride) == (10, 2)
    assert settings.store.db == Path("x.db")
    assert settings.sources.realtime is True
    assert with_overrides(Settings(), {"store.db": Path("y.db")}).store.db == Path("y.db")
    assert with_overrides(Settings(), {}) == Settings()


def test_overrides_keep_calibrated() -> None:
    base = Settings()
    calibrated_off = with_overrides(base, {"verdicts.threshold": 0.6})
    assert calibrated_off.verdicts.calibrated is base.verdicts.calibrated
    assert calibrated_off.verdicts.threshold == 0.6


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"model.windw": 10}, "flags: unknown key model.windw (did you mean model.window?)"),
        ({"modle.window": 10}, "flags: unknown key modle.window (did you mean model.window?)"),
        ({"threshold": 0.7}, "flags: unknown key threshold at top level (did you mean verdicts.threshold?)"),
        ({"store": "x.db"}, "flags: store is a section, not a key (its keys: store.db, store.retention_days)"),
        ({"model.window": 5}, f"flags: model: window must be {MIN_WINDOW}..{MAX_WINDOW} frames, got 5"),
        ({"model.window": "10"}, "flags: model.window must be an integer, got '10'"),
    ],
)
def test_bad_overrides_are_config_errors(overrides: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        with_overrides(Settings(), overrides)
    assert str(caught.value) == expected


def test_settings_as_dict_round_trips_through_json() -> None:
    custom = with_overrides(
        Settings(),
        {"model.device": "cuda:1", "store.db": "r/s.db", "store.retention_days": 7, "clips.enabled": False},
    )
    for settings in (Settings(), custom):
        saved = json.loads(json.dumps(settings_as_dict(settings)))
        assert settings_from_mapping(saved, "saved") == settings
    assert settings_as_dict(custom)["store"] == {"db": "r/s.db", "retention_days": 7.0}


def test_model_device_accepts_cuda_index_only() -> None:
    for device in ("auto", "cpu", "cuda", "cuda:0", "cuda:12"):
        assert ModelSettings(device=device).device == device
    for device in ("cuda:", "cuda:-1", "cuda:x", "gpu", "CUDA", "cuda:1 "):
        with pytest.raises(ValueError, match="device must be one of auto, cpu, cuda, cuda:N"):
            ModelSettings(device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error path needs a machine without CUDA")
def test_resolve_device_cuda_index_without_gpu() -> None:
    with pytest.raises(EngineError, match="--device cuda:0 was asked for but no CUDA GPU is available"):
        resolve_device("cuda:0")
    with pytest.raises(EngineError, match="--device must be one of"):
        resolve_device("cuda:x")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_resolve_device_cuda_index_past_the_gpus() -> None:
    count = torch.cuda.device_count()
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(EngineError, match=f"this machine has {count} CUDA GPU"):
        resolve_device(f"cuda:{count}")
