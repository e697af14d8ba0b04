"""ONNX Runtime int8 on the CPU: the encoder graph quantised statically on given face crops, and its engine.

Only the backbone's convolutions are quantised (QDQ format, per-channel symmetric int8 weights, uint8
activations): the pooled features, the LSTM step and the linear head stay fp32, exactly as in the fp32
graph. The calibration crops must be real face crops as the serving pipeline cuts them (HxWx3 uint8 BGR);
this module never makes crops itself (`model` imports nothing from `stream`).

The int8 graph is cached next to the fp32 one, keyed by (weights hash, calibration set hash, ONNX Runtime
version, recipe): a new checkpoint, new calibration crops or a new ONNX Runtime quantise again. OpenVINO's int8
engine runs the same graph.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from model.engines.base import EngineError
from model.engines.export import export_onnx
from model.engines.onnxruntime_engine import OnnxEngine
from model.preprocess import Preprocessing, crops_to_batch
from model.weights import LoadedModel

# Bump when anything below changes what the quantised graph is, so cached graphs of the old recipe are not reused.
RECIPE_VERSION = 1
# Quantised: Conv only. ONNX Runtime then fuses DQ -> Conv -> Q into QLinearConv (and the residual Adds between
# two quantised Convs into QLinearAdd); GlobalAveragePool, the LSTM and the Gemm head see fp32 tensors (the
# graph's only MatMul-like nodes are those two, so MatMul is not quantised). Activations are uint8: with int8
# activations ONNX Runtime 1.32 left the 20 grouped (32-group) convolutions unfused, dequantised around them,
# and the graph ran slower than fp32 on the 2-core AMD EPYC.
OP_TYPES_TO_QUANTIZE = ("Conv",)
CALIBRATION_BATCH = 8


def _check_crops(crops: Sequence[np.ndarray]) -> None:
    if len(crops) == 0:
        raise EngineError("int8 calibration needs face crops (HxWx3 uint8 BGR); none were given")
    for index, crop in enumerate(crops):
        if not isinstance(crop, np.ndarray) or crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3:
            shape = getattr(crop, "shape", None)
            dtype = getattr(crop, "dtype", type(crop).__name__)
            raise EngineError(f"calibration crop {index} must be an HxWx3 uint8 BGR array, got {dtype} {shape}")


def calibration_hash(crops: Sequence[np.ndarray], preprocessing: Preprocessing) -> str:
    """A short content hash of the calibration set: every crop's shape and pixels, in order, and the preprocessing."""
    _check_crops(crops)
    digest = hashlib.blake2b(digest_size=8)
    digest.update(repr(preprocessing).encode())
    for crop in crops:
        digest.update(str(crop.shape).encode())
        digest.update(np.ascontiguousarray(crop).tobytes())
    return digest.hexdigest()


@cache
def cpu_has_vnni() -> bool:
    """Whether the CPU has VNNI (AVX512-VNNI or AVX-VNNI): int8 dot products without 16-bit saturation."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True  # unknown: assume a modern CPU; the parity gate still checks the result
    return " avx512_vnni" in flags or " avx_vnni" in flags


def int8_graph_path(
    loaded: LoadedModel, crops: Sequence[np.ndarray], cache_dir: Path, reduce_range: bool | None = None
) -> Path:
    """Where the int8 graph for (weights, calibration crops, ONNX Runtime version, recipe) is cached."""
    import onnxruntime as ort  # here, not at the top: kept out of start-up (see onnxruntime_engine.py)

    reduce = _reduce_range(reduce_range)
    size = loaded.preprocessing.input_size
    calibration = calibration_hash(crops, loaded.preprocessing)
    recipe = f"q{RECIPE_VERSION}{'r' if reduce else ''}"
    stem = f"encoder-{loaded.arch}-{loaded.weights_hash}-{size}"
    return cache_dir / f"{stem}-int8-{calibration}-ort{ort.__version__}-{recipe}.onnx"


def _reduce_range(reduce_range: bool | None) -> bool:
    # Without VNNI, x86 int8 kernels multiply u8 x s8 pairs into int16 (VPMADDUBSW), which can saturate;
    # 7-bit weights avoid it (ONNX Runtime's advice). With VNNI, full 8-bit weights are exact.
    return (not cpu_has_vnni()) if reduce_range is None else reduce_range


class _CropReader:
    """ONNX Runtime's CalibrationDataReader over a normalised batch, `CALIBRATION_BATCH` crops at a time."""

    def __init__(self, batch: np.ndarray) -> None:
        self._batches: Iterator[np.ndarray] = iter(
            [batch[i : i + CALIBRATION_BATCH] for i in range(0, len(batch), CALIBRATION_BATCH)]
        )

    def get_next(self) -> dict[str, np.ndarray] | None:  # all CalibrationDataReader asks for (its subclass hook)
        chunk = next(self._batches, None)
        return None if chunk is None else {"crops": chunk}


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """ONNX Runtime's quantiser warns through the root logger (and would configure it): keep a user's terminal clean."""
    root = logging.getLogger()
    guard = logging.NullHandler() if not root.handlers else None
    if guard is not None:
        root.addHandler(guard)  # stops logging.warning() from calling basicConfig() on the process's root logger
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)
        if guard is not None:
            root.removeHandler(guard)


def quantize_encoder(
    loaded: LoadedModel, crops: Sequence[np.ndarray], cache_dir: Path, reduce_range: bool | None = None
) -> Path:
    """The int8 encoder graph for `loaded`, calibrated on `crops` (HxWx3 uint8 BGR face crops); cached.

    Exports the fp32 graph first when it is not cached (`export_onnx`), pre-processes it (constant folding,
    shape inference: the exporter leaves Conv biases behind Identity nodes, which the quantiser cannot fold),
    calibrates activation ranges (min/max) on the crops and writes a QDQ graph with per-channel symmetric
    int8 weights for every Conv and uint8 activations (the fast u8 x s8 kernels on x86).
    """
    # Here, not at the top: the quantiser is needed only when no cached int8 graph fits, and it is slow to load.
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    path = int8_graph_path(loaded, crops, cache_dir, reduce_range)
    if path.is_file():
        return path
    fp32 = export_onnx(loaded, cache_dir, loaded.preprocessing.input_size)
    batch = crops_to_batch(crops, loaded.preprocessing).numpy()
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix="quantize-") as work, _quiet_quantizer():
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared))
        partial = Path(work) / "int8.onnx"
        quantize_static(
            str(prepared),
            str(partial),
            _CropReader(batch),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(OP_TYPES_TO_QUANTIZE),
            per_channel=True,
            reduce_range=_reduce_range(reduce_range),
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )
        # Rename into place, so a concurrent process never reads half a file.
        partial.replace(path)
    return path


@dataclass
class OnnxInt8Engine(OnnxEngine):
    """ONNX Runtime on the CPU over the int8 graph: the backbone's convolutions quantised (`quantize_encoder`),
    calibrated on `calibration_crops` (real face crops, HxWx3 uint8 BGR, made by the caller with the serving
    pipeline's own cropper); pooling, the LSTM step and the head stay fp32. Use it only after the parity gate
    (model/engines/parity.py) has passed it against the fp32 engine.
    """

    calibration_crops: Sequence[np.ndarray] = ()
    reduce_range: bool | None = None  # None: 7-bit weights only on CPUs without VNNI (see `_reduce_range`)
    name: str = "onnxruntime-int8"

    def _graph(self) -> Path:
        self.calibration_hash = calibration_hash(self.calibration_crops, self.loaded.preprocessing)
        return quantize_encoder(self.loaded, self.calibration_crops, self.cache_dir, self.reduce_range)
