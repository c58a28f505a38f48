"""The onnxruntime backend: the Q/DQ model on ONNX Runtime's CPU INT8 kernels.

Its "engine" is the model ONNX Runtime writes after graph optimization
(SessionOptions.optimized_model_filepath), made from the Q/DQ model rewritten for this CPU
(qdq_rewrite): activations moved to uint8 and, where the probe finds that the CPU's u8 x s8 kernels
saturate (int8_arith), weights requantized to 7 bits. Its FP32 reference is the FP32 model itself.
Needs onnxruntime; the rewrite also needs onnx (without it the Q/DQ model runs as pushed).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import time
from typing import Any, Dict, List, Optional

import numpy as np

from .backend import Backend, BuildResult, Session, TensorSpec, artifact
from .errors import AgentError
from .int8_arith import int8_arithmetic
from .qdq_rewrite import kernels_sentence, rewrite_for_kernels
from .report import BuildOptions, BuiltModel, LayerPlacement

ENGINE_FILE = "engine.onnx"
REFERENCE_FILE = "reference.fp32.onnx"
_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(uint8)": "uint8", "tensor(int8)": "int8"}


def _ort() -> Any:
    import onnxruntime

    return onnxruntime


class OrtSession(Session):
    def __init__(self, path: str, threads: int, profile_prefix: Optional[str] = None) -> None:
        ort = _ort()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        if profile_prefix:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.inputs = [
            TensorSpec(i.name, [d if isinstance(d, int) else None for d in i.shape], _ORT_TYPES.get(i.type, "float32"))
            for i in self.session.get_inputs()
        ]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
        return self.session.run(None, feeds)


def layers_from_profile(events: List[Dict[str, Any]]) -> List[LayerPlacement]:
    """Per-node op type, output element type and provider from an onnxruntime profile (chrome-trace JSON)."""
    layers = []
    for event in events:
        args = event.get("args", {})
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        outputs = args.get("output_type_shape") or [{}]
        precision = next(iter(outputs[0]), None)
        layers.append(LayerPlacement(
            name=event["name"][: -len("_kernel_time")],
            layer_type=args.get("op_name"),
            precision=precision,
            device=str(args.get("provider", "CPUExecutionProvider")).replace("ExecutionProvider", ""),
        ))
    return layers


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads

    def version(self) -> str:
        return str(_ort().__version__)

    def _optimize(self, src: str, dst: str) -> float:
        ort = _ort()
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = dst
        options.intra_op_num_threads = self.threads
        options.log_severity_level = 3
        start = time.perf_counter()
        try:
            ort.InferenceSession(src, options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise AgentError(AgentError.BUILD_FAILED, f"onnxruntime could not load {src}: {exc}") from exc
        return time.perf_counter() - start

    def _profile(self, folder: str, name: str, shapes: Dict[str, List[int]]) -> List[LayerPlacement]:
        prefix = os.path.join(folder, ".profile")
        session = OrtSession(os.path.join(folder, name), self.threads, prefix)
        session.run({s.name: np.zeros(s.concrete(1, shapes), s.dtype) for s in session.inputs})
        path = session.session.end_profiling()
        with open(path) as f:
            events = json.load(f)
        for leftover in glob.glob(prefix + "*"):
            os.remove(leftover)
        return layers_from_profile(events)

    def build(self, options: BuildOptions, folder: str, timing_cache_dir: str) -> BuildResult:
        if options.precision == "fp16":
            raise AgentError(AgentError.UNSUPPORTED, "the onnxruntime CPU backend has no FP16: use int8 or fp32")
        if options.dla_core is not None:
            raise AgentError(AgentError.UNSUPPORTED, "DLA needs the tensorrt backend")
        warnings: List[str] = []
        if options.builder_optimization_level is not None:
            warnings.append("builder_optimization_level is a TensorRT setting: onnxruntime does not use it")
        source = options.model
        arithmetic, kernels = None, None
        if options.precision == "int8":
            if not options.qdq:
                raise AgentError(AgentError.INVALID_INPUT, "the onnxruntime backend runs the Q/DQ model: pass --qdq")
            if options.quantization == "implicit":
                warnings.append("onnxruntime has no implicit INT8 (calibration cache): built from the Q/DQ model")
            arithmetic = int8_arithmetic()
            source = os.path.join(folder, ".qdq.rewritten.onnx")
            rewrite = rewrite_for_kernels(options.qdq, source, reduced_range=arithmetic.verdict == "saturating")
            if rewrite is None:
                source = options.qdq
                kernels = "the Q/DQ model as pushed (onnx is not installed to rewrite it for this CPU)"
                warnings.append("onnx is not installed: the Q/DQ model runs as pushed (int8 activations, if any, stay int8: slower on x86)")
                if arithmetic.verdict == "saturating":
                    warnings.append("this CPU's u8 x s8 kernels add product pairs in 16 bits with saturation and onnx is not "
                                    "installed to requantize the weights to 7 bits: INT8 results may clip")
            else:
                kernels = kernels_sentence(rewrite)
                if rewrite.weights_8bit:
                    warnings.append(f"{rewrite.weights_8bit} asymmetric int8 weight tensors stay 8-bit on a CPU "
                                    "whose u8 x s8 kernels saturate: they may clip")
        seconds = self._optimize(source, os.path.join(folder, ENGINE_FILE))
        if source != options.qdq and source != options.model:
            os.remove(source)
        shutil.copyfile(options.model, os.path.join(folder, REFERENCE_FILE))
        reference_session = OrtSession(os.path.join(folder, REFERENCE_FILE), self.threads)
        engine = BuiltModel(
            artifact=artifact(folder, ENGINE_FILE),
            seconds=seconds,
            layers=self._profile(folder, ENGINE_FILE, options.shapes),
            warnings=warnings,
            int8_arithmetic=arithmetic,
            int8_kernels=kernels,
        )
        reference = BuiltModel(artifact=artifact(folder, REFERENCE_FILE), seconds=0.0)
        return BuildResult(self.version(), engine, reference, reference_session.inputs)

    def load(self, folder: str, built: BuiltModel) -> Session:
        return OrtSession(os.path.join(folder, built.artifact.path), self.threads)
