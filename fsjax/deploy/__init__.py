"""Deployment exports that run outside fsjax: StableHLO (:mod:`jax.export`) and ONNX
(``jax2onnx``; float32 or int8 QDQ for onnxruntime). See docs/deploy.md.

    from fsjax import deploy
    deploy.export_stablehlo(model, (32, 32, 3), "m.stablehlo")
    deploy.export_onnx(model, (32, 32, 3), "m.onnx")
    deploy.export_onnx(model, (32, 32, 3), "m.int8.onnx", int8=True, calibration=x_train[:512])
"""

from fsjax.deploy.fold import Folded, fold_batchnorm, forward_of, inference_model, logits_of
from fsjax.deploy.onnx import export_onnx, onnx_session, require, run_onnx
from fsjax.deploy.stablehlo import PLATFORMS, export_stablehlo, load_stablehlo

FORMATS = ("onnx", "stablehlo")

__all__ = ["FORMATS", "PLATFORMS", "Folded", "export_onnx", "export_stablehlo",
           "fold_batchnorm", "forward_of", "inference_model", "load_stablehlo", "logits_of", "onnx_session",
           "require", "run_onnx"]
