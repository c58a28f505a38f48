"""Device profiles: the Jetson module / JetPack combinations in targets/, plus this machine (`local`)."""

from __future__ import annotations

import difflib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from edgeq.errors import InputError


class Target(BaseModel):
    """One deployable platform: what its TensorRT, GPU and DLA can do, and where each fact comes from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    title: str
    aliases: tuple[str, ...] = ()
    backend: Literal["tensorrt", "onnxruntime"] = "tensorrt"
    module: str
    soc: str | None = None
    gpu_arch: str | None = None
    compute_capability: str | None = None
    dla_cores: int = 0
    dla_generation: int | None = None
    memory_gb: float | None = None
    jetpack: str | None = None
    l4t: str | None = None
    tensorrt: str | None = None
    cuda: str | None = None
    cudnn: str | None = None
    python: str
    int8: bool
    notes: tuple[str, ...] = ()
    sources: dict[str, str]

    @property
    def trt_version(self) -> tuple[int, int, int] | None:
        """TensorRT version as (major, minor, patch), or None for a target without TensorRT."""
        if self.tensorrt is None:
            return None
        parts = [int(p) for p in self.tensorrt.split(".")[:3]]
        return (parts + [0, 0, 0])[0], (parts + [0, 0])[1], (parts + [0, 0, 0])[2]

    @property
    def implicit_int8(self) -> bool:
        """Whether INT8 from a calibration cache (implicit quantization) exists; gone in TensorRT 11."""
        version = self.trt_version
        return version is not None and version[0] < 11

    @property
    def explicit_int8(self) -> bool:
        """Whether Q/DQ (explicit quantization) builds exist: TensorRT 8.0 on, or ONNX Runtime."""
        return self.backend == "onnxruntime" or self.trt_version is not None


def _targets_dir() -> Path:
    """The folder of profile YAMLs: inside the wheel, or targets/ beside the package in a checkout."""
    packaged = resources.files("edgeq") / "_targets"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "targets"


@cache
def all_targets() -> tuple[Target, ...]:
    """Every shipped profile, sorted by name."""
    found = []
    for path in sorted(_targets_dir().glob("*.yaml")):
        try:
            found.append(Target.model_validate(yaml.safe_load(path.read_text())))
        except (ValidationError, yaml.YAMLError) as exc:
            raise InputError(f"{path}: not a valid target profile: {exc}") from exc
    return tuple(found)


def resolve(name: str) -> Target:
    """The target called ``name`` (a profile name or an alias); unknown names suggest close ones."""
    by_name: dict[str, Target] = {}
    for target in all_targets():
        for key in (target.name, *target.aliases):
            by_name[key] = target
    if name in by_name:
        return by_name[name]
    close = difflib.get_close_matches(name, by_name, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `edgeq targets` lists them"
    raise InputError(f"unknown target '{name}'{hint}")
