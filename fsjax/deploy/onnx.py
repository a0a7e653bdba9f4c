"""ONNX export (``jax2onnx``), float32 or int8 in the QDQ format, and an onnxruntime runner.

The graph is the inference form of the model (:func:`~fsjax.deploy.fold.inference_model`):
FS/DFS layers as dense convs with their materialised kernels (the Filter Summary is a
training-time representation; ONNX has no op that builds filters from it), BatchNorm folded
where exact, KS/WKS layers as the weighted channel-group sum (Mul + ReduceSum) followed by the
small conv, so their MAC saving is kept; ThiNet-pruned models at their pruned widths.

int8 (``int8=True``): onnxruntime's static QDQ quantizer inserts QuantizeLinear /
DequantizeLinear pairs: activations uint8 per tensor, scales from min/max over ``calibration``
batches; weights int8 symmetric per output channel, on 7 bits by default (``reduce_range``:
onnxruntime's integer kernels on x86 CPUs without VNNI multiply uint8 by int8 with
``vpmaddubsw``, whose 16-bit sums saturate; on the 2-core AVX2 development CPU a tiny net's
int8 top-1 fell from 100% to 95.1% with 8-bit weights, and stayed at 100% with 7-bit ones or
with the graph optimisations off). The weights it rounds are the ones the
model holds: quantize the model with :func:`fsjax.quant.quantize_model` first (or train it
with QAT) and the int8 file carries fsjax's quantized weights, re-rounded onto the symmetric
int8 grid that ONNX's integer kernels need (the BatchNorm scale folded into each output
channel moves weights off fsjax's grid; the export reports the largest change).

Needs the ``deploy`` extra: ``pip install -e .[deploy]`` (jax2onnx, onnxruntime).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable

import numpy as np
from flax import nnx

from fsjax import ops
from fsjax.deploy.fold import forward_of

__all__ = ["export_onnx", "onnx_session", "run_onnx", "require"]


def require():
    """``(jax2onnx.to_onnx, onnx, onnxruntime)``, or ImportError naming the extra."""
    try:
        import onnx
        import onnxruntime
        from jax2onnx import to_onnx
    except ImportError as e:
        raise ImportError(f"ONNX export needs the deploy extra (jax2onnx, onnxruntime): "
                          f"pip install -e '.[deploy]' ({e.name} is missing)") from None
    logging.getLogger("onnx_ir").setLevel(logging.ERROR)
    return to_onnx, onnx, onnxruntime


def onnx_session(path_or_bytes, threads: int | None = None):
    """An onnxruntime CPU session (``threads``: intra-op threads, None = onnxruntime's)."""
    _, _, ort = require()
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    return ort.InferenceSession(path_or_bytes, so, providers=["CPUExecutionProvider"])


def run_onnx(session, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Logits of ``x (N, *input_shape)`` float32 through ``session``, ``batch`` at a time."""
    name = session.get_inputs()[0].name
    out = [session.run(None, {name: np.ascontiguousarray(x[i:i + batch], np.float32)})[0]
           for i in range(0, len(x), batch)]
    return np.concatenate(out)


def _float_proto(model, input_shape, fold: bool):
    to_onnx, _, _ = require()
    forward, info = forward_of(model, fold)
    try:
        with ops.inference_trace(conv3d_as_2d=True):  # jax2onnx's conv is 1-D/2-D only
            proto = to_onnx(forward, [("batch", *tuple(input_shape))], model_name="fsjax",
                            input_names=["images"], output_names=["logits"])
    except NotImplementedError as e:  # an op or option jax2onnx has no conversion for
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"ONNX export: jax2onnx cannot convert this model ({first}); the "
                         f"StableHLO export has no such limit") from None
    return proto, info


class _Reader:
    """onnxruntime's CalibrationDataReader over an array of calibration inputs."""

    def __init__(self, x, batch):
        self.batches = iter([{"images": np.ascontiguousarray(x[i:i + batch], np.float32)}
                             for i in range(0, len(x), batch)])

    def get_next(self):
        return next(self.batches, None)

    def rewind(self):  # older onnxruntime versions call it
        pass


def _weight_change(float_proto, q_proto) -> float:
    """Largest ``|int8 weight - float weight| / max|float weight of that tensor|`` over the
    quantized weights (the DequantizeLinear'd initializers)."""
    from onnx import numpy_helper

    fl = {t.name: numpy_helper.to_array(t) for t in float_proto.graph.initializer}
    qi = {t.name: numpy_helper.to_array(t) for t in q_proto.graph.initializer}
    worst = 0.0
    for n in q_proto.graph.node:
        if n.op_type != "DequantizeLinear" or n.input[0] not in qi:
            continue
        q = qi[n.input[0]]
        if q.dtype != np.int8 or q.ndim < 2:
            continue
        scale = qi[n.input[1]]
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        shape = [1] * q.ndim
        if scale.ndim:
            shape[axis] = -1
        deq = q.astype(np.float32) * scale.reshape(shape)
        src = fl.get(n.input[0].removesuffix("_quantized"))  # the quantizer's naming
        if src is not None and src.shape == q.shape and np.abs(src).max() > 0:
            worst = max(worst, float(np.abs(deq - src).max() / np.abs(src).max()))
    return worst


def export_onnx(model: nnx.Module | Callable, input_shape, path: str, *, int8: bool = False,
                calibration: np.ndarray | None = None, per_channel: bool = True,
                reduce_range: bool = True, fold: bool = True, meta: dict | None = None,
                calib_batch: int = 64) -> dict:
    """Write ``model``'s eval-mode forward (an NNX module, or any function ``x -> logits``)
    as ONNX to ``path`` (input ``images``
    ``(batch, *input_shape)`` float32 normalised as in training, output ``logits``; batch
    dynamic). ``int8``: QDQ int8 with activation ranges from ``calibration`` (``(N,
    *input_shape)``, a few training batches); ``reduce_range``: 7-bit weights (the default;
    False for 8-bit weights where the int8 file runs only on VNNI or ARM CPUs). ``meta`` goes
    into the file's metadata_props (e.g. mean/std). Returns a dict: format, bytes, the folding
    info (and, int8, the largest relative weight change of the int8 rounding)."""
    _, onnx, _ = require()
    if int8 and (calibration is None or len(calibration) == 0):
        raise ValueError("int8 ONNX export needs calibration inputs (N, *input_shape): a few "
                         "training batches, normalised as in training")
    proto, info = _float_proto(model, input_shape, fold)
    for k, v in (meta or {}).items():
        proto.metadata_props.add(key=str(k), value=str(v))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    out = dict(format="onnx-int8" if int8 else "onnx", input_shape=list(input_shape), **info)
    tmp = path + ".tmp"
    if not int8:
        onnx.save(proto, tmp)
    else:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        with tempfile.TemporaryDirectory() as d:
            src, pre = os.path.join(d, "float.onnx"), os.path.join(d, "pre.onnx")
            onnx.save(proto, src)
            # constant-fold the HWIO -> OIHW kernel transposes, so every conv's weight is an
            # initializer the quantizer sees (else it leaves the convs in float)
            quant_pre_process(src, pre, skip_symbolic_shape=True)
            proto = onnx.load(pre)
            quantize_static(pre, tmp, _Reader(np.asarray(calibration), calib_batch),
                            quant_format=QuantFormat.QDQ, per_channel=per_channel,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            reduce_range=reduce_range,
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"ActivationSymmetric": False,
                                           "WeightSymmetric": True})
        out["int8_weight_change"] = _weight_change(proto, onnx.load(tmp))
        out["calibration_images"] = int(len(calibration))
    os.replace(tmp, path)
    out["bytes"] = os.path.getsize(path)
    return out
