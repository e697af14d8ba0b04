"""deepfake-stream command line: parse arguments and configuration, build the model layer, run.

Until the pipeline lands this prints what the model layer resolved (`--model-info`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from model.engine import EngineError, build_engine
from model.summary import summarise
from model.weights import CheckpointError, resolve_weights
from stream.demo import astronaut_face_crops

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "default.yaml"


class ConfigError(Exception):
    """A configuration file or a flag value that cannot be used."""


def load_config(path: Path) -> dict[str, Any]:
    try:
        content = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"cannot read config {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config {path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(content, dict):
        raise ConfigError(f"config {path} must be a mapping of sections")
    return content


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="run_stream.py", description="Real-time deepfake detection for live video.")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="YAML with every default")
    parser.add_argument("--weights", help="auto | PATH to a checkpoint")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--cpu-engine", choices=["auto", "onnxruntime", "torch"])
    parser.add_argument("--model-info", action="store_true", help="print what the model layer resolved and exit")
    return parser.parse_args(argv)


def model_info(args: argparse.Namespace, config: dict[str, Any]) -> int:

    settings = config.get("model", {})
    loaded = resolve_weights(args.weights or settings.get("weights", "auto"))
    device = args.device or settings.get("device", "auto")
    engine = build_engine(loaded, device, args.cpu_engine or settings.get("cpu_engine", "auto"))
    for line in summarise(loaded, engine, astronaut_face_crops()).lines():
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = load_config(args.config)
        return model_info(args, config)
    except (ConfigError, CheckpointError, EngineError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
