"""The interface every backend implements (build, run a batch, benchmark) and the choice between them."""

from __future__ import annotations

import abc
import importlib.util
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Union

import numpy as np

from .errors import AgentError
from .hashing import sha256_file
from .latency import latency_stats, time_calls
from .report import Artifact, BuildOptions, BuiltModel, LatencyStats, ProbeReport

Dim = Union[int, str, None]


@dataclass
class TensorSpec:
    """A model input: name, dims (int, or a name/None when dynamic), numpy dtype name."""

    name: str
    shape: List[Dim]
    dtype: str = "float32"

    def concrete(self, batch: int, shapes: Dict[str, List[int]]) -> List[int]:
        """The shape to feed: the build's --shapes if given, else dynamic batch -> ``batch``, other dynamic dims -> 1."""
        if self.name in shapes:
            return list(shapes[self.name])
        return [d if isinstance(d, int) and d > 0 else (batch if i == 0 else 1) for i, d in enumerate(self.shape)]


@dataclass
class BuildResult:
    """What a backend's build produced in the engine folder."""

    backend_version: str
    engine: BuiltModel
    reference: BuiltModel
    inputs: List[TensorSpec]
    timing_cache: Optional[str] = None


class Session(abc.ABC):
    """A loaded engine (or reference) that runs batches."""

    inputs: List[TensorSpec]
    outputs: List[str]  # output names, in the order run() returns them

    @abc.abstractmethod
    def run(self, feeds: Dict[str, np.ndarray]) -> List[np.ndarray]:
        """Outputs of one batch, in the model's output order."""


class Backend(abc.ABC):
    name = ""

    @abc.abstractmethod
    def version(self) -> str:
        ...

    @abc.abstractmethod
    def build(self, options: BuildOptions, folder: str, timing_cache_dir: str) -> BuildResult:
        """Build the INT8 (or requested precision) engine and the FP32 reference into ``folder``."""

    @abc.abstractmethod
    def load(self, folder: str, built: BuiltModel) -> Session:
        ...

    def benchmark(
        self, folder: str, built: BuiltModel, batch: int, warmup: int, iterations: int, shapes: Dict[str, List[int]]
    ) -> LatencyStats:
        """Wall-clock latency of ``session.run`` on random inputs; backends with a better tool override it."""
        session = self.load(folder, built)
        rng = np.random.default_rng(0)
        feeds = {
            s.name: rng.standard_normal(s.concrete(batch, shapes)).astype(s.dtype) for s in session.inputs
        }
        samples = time_calls(lambda: session.run(feeds), warmup, iterations)
        return latency_stats(samples, batch, "wallclock")


def artifact(folder: str, name: str) -> Artifact:
    """Size and sha256 of a file in the engine folder."""
    path = os.path.join(folder, name)
    return Artifact(path=name, size_bytes=os.path.getsize(path), sha256=sha256_file(path))


def select_backend(name: str, threads: int, probe_device: Callable[[], ProbeReport]) -> Backend:
    """``auto``: tensorrt when the device has it, else onnxruntime. The device is probed only when needed."""
    if name == "onnxruntime":
        if importlib.util.find_spec("onnxruntime") is None:
            raise AgentError(AgentError.UNSUPPORTED, "onnxruntime is not installed on this device")
        from .ort_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(threads)
    if name not in ("auto", "tensorrt"):
        raise AgentError(AgentError.USAGE, f"unknown backend {name!r}")
    probe = probe_device()
    if name == "auto":
        if not probe.backends:
            raise AgentError(AgentError.UNSUPPORTED, "no backend on this device: " + "; ".join(probe.missing))
        return select_backend(probe.backends[0], threads, lambda: probe)
    if "tensorrt" not in probe.backends:
        raise AgentError(AgentError.UNSUPPORTED, "TensorRT is not available on this device")
    from .trt_backend import TensorRTBackend

    return TensorRTBackend(probe)
