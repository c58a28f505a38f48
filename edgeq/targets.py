"""Device profiles: the Jetson module / JetPack combinations in targets/, plus this machine (`local`)."""

from __future__ import annotations

import difflib
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from edgeq.device.trt_rules import DlaSupport, dla_support
from edgeq.device.trt_version import TrtVersion
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
    dla_usable_cores: int | None = None
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
        major, minor, patch = (parts + [0, 0, 0])[:3]
        return major, minor, patch

    @model_validator(mode="after")
    def _usable_dla_matches_tensorrt(self) -> Target:
        if self.dla_usable_cores is not None and self.dla_usable_cores != self.usable_dla_cores:
            support = self.dla_support
            why = support.reason if support else "no TensorRT"
            raise ValueError(f"dla_usable_cores: {self.dla_usable_cores}, but {why} ({self.usable_dla_cores} usable)")
        return self

    @property
    def dla_support(self) -> DlaSupport | None:
        """Whether this target's TensorRT drives its DLA hardware; None without DLA hardware or TensorRT."""
        version = self.trt_version
        return dla_support(TrtVersion(*version), self.module) if self.dla_cores and version is not None else None

    @property
    def usable_dla_cores(self) -> int:
        """DLA cores this target's TensorRT can build for: the hardware's, or 0 where the release has no DLA."""
        support = self.dla_support
        return self.dla_cores if support is not None and support.available else 0

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
