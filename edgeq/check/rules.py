"""The check's rule files (edgeq/check/rules/*.yaml): their schema, loading, and which file covers a target.

A rule file describes one compute unit (the GPU under one TensorRT family, that family's DLA, or ONNX
Runtime's CPU provider): which ops run in INT8, which only move INT8 data, which limits send a node
elsewhere, and the source of each fact. A file may ``extends`` another; its fields replace the base's,
and its rules replace base rules of the same id. Which file applies is decided by its ``versions`` range. Where NVIDIA's
sources disagree on whether the DLA takes an op, the family file picks one and lists the op under ``dla_disputed`` with
both sources: verdicts on it are marked disputed.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgeq.errors import InputError
from edgeq.targets import Target

Unit = Literal["gpu", "dla", "cpu"]
NodeVerdictName = Literal["fallback", "unsupported", "gpu-fallback"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OpList(_Strict):
    """A set of ONNX op types, with the source that says so."""

    ops: tuple[str, ...]
    source: str


class VersionRange(_Strict):
    """TensorRT versions ``min`` <= v < ``below`` (dotted strings)."""

    min: str
    below: str

    def contains(self, version: tuple[int, int, int]) -> bool:
        return _parse(self.min) <= version < _parse(self.below)


class OpsetRange(_Strict):
    min: int | None = None
    max: int | None = None


class Parser(_Strict):
    """The ONNX parser of a TensorRT family: its column in the op-support CSV and its opset range."""

    op_support_column: str
    opset: OpsetRange
    source: str


class Rule(_Strict):
    """One limit: a fact measured on a node, compared with a bound; a node that fails it gets ``verdict``."""

    id: str
    ops: tuple[str, ...]
    fact: str
    verdict: NodeVerdictName
    reason: str
    source: str
    max: float | None = None
    min: float | None = None
    equals: bool | int | str | None = None
    one_of: tuple[int | float | str, ...] | None = None
    multiple_of: int | None = None
    integer: bool | None = None
    below_fact: str | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> Rule:
        bounds = [f for f in ("max", "min", "equals", "one_of", "multiple_of", "integer", "below_fact") if getattr(self, f) is not None]
        if len(bounds) != 1:
            raise ValueError(f"rule {self.id}: give exactly one bound (max, min, equals, one_of, multiple_of, integer, below_fact), found {bounds or 'none'}")
        return self

    def applies_to(self, op: str) -> bool:
        return "*" in self.ops or op in self.ops


class GateInfo(_Strict):
    title: str
    source: str


class RuleFile(_Strict):
    """One rule file, after its ``extends`` chain is merged."""

    id: str
    title: str
    unit: Unit
    backend: Literal["tensorrt", "onnxruntime"]
    abstract: bool = False
    family: str | None = None
    versions: VersionRange | None = None
    parser: Parser | None = None
    int8_modes: tuple[Literal["implicit", "explicit"], ...] = ()
    int8_ops: OpList | None = None
    int8_elementwise_ops: OpList | None = None
    passthrough_ops: OpList | None = None
    folded_ops: OpList | None = None
    fallback_reasons: dict[str, str] = Field(default_factory=dict)
    default_fallback_reason: str | None = None
    dla_ops: OpList | None = None
    dla_op_reasons: dict[str, str] = Field(default_factory=dict)
    default_dla_reason: str | None = None
    dla_disputed: dict[str, str] = Field(default_factory=dict)
    accepts_qdq: bool = True
    rules: tuple[Rule, ...] = ()
    gates: dict[str, GateInfo] = Field(default_factory=dict)
    not_checked: tuple[str, ...] = ()

    def ops_of(self, name: str) -> frozenset[str]:
        """The op set of ``int8_ops``, ``int8_elementwise_ops``, ``passthrough_ops``, ``folded_ops`` or ``dla_ops`` (empty if unset)."""
        found: OpList | None = getattr(self, name)
        return frozenset(found.ops if found else ())


def _parse(version: str) -> tuple[int, int, int]:
    parts = [int(p) for p in version.split(".")[:3]]
    major, minor, patch = (parts + [0, 0, 0])[:3]
    return major, minor, patch


def rules_dir() -> Path:
    """The folder of shipped rule files."""
    return Path(str(resources.files("edgeq.check") / "rules"))


def _merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    merged = {k: v for k, v in base.items() if k != "abstract"}
    for key, value in child.items():
        if key == "rules":
            ids = {rule["id"] for rule in value}
            merged["rules"] = [r for r in base.get("rules", []) if r["id"] not in ids] + list(value)
        elif key in ("gates", "fallback_reasons", "dla_op_reasons", "dla_disputed"):
            merged[key] = {**base.get(key, {}), **value}
        elif key != "extends":
            merged[key] = value
    return merged


def all_rule_files(folder: Path | None = None) -> tuple[RuleFile, ...]:
    """Every rule file in ``folder`` (default: the shipped ones, read once), merged with its bases, sorted by id."""
    return _shipped() if folder is None else _read(folder)


@cache
def _shipped() -> tuple[RuleFile, ...]:
    return _read(rules_dir())


def _read(folder: Path) -> tuple[RuleFile, ...]:
    raw: dict[str, dict[str, Any]] = {}
    for path in sorted(folder.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or "id" not in data:
            raise InputError(f"{path}: not a check rule file (expected a mapping with an 'id')")
        raw[data["id"]] = data

    def resolved(file_id: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
        if file_id in seen:
            raise InputError(f"{folder}: rule files extend each other in a loop: {' -> '.join((*seen, file_id))}")
        if file_id not in raw:
            raise InputError(f"{folder}: rule file '{seen[-1]}' extends '{file_id}', which does not exist")
        data = raw[file_id]
        return _merge(resolved(data["extends"], (*seen, file_id)), data) if "extends" in data else data

    files = []
    for file_id in sorted(raw):
        try:
            files.append(RuleFile.model_validate(resolved(file_id)))
        except ValidationError as exc:
            raise InputError(f"{folder / file_id}.yaml: not a valid check rule file: {exc}") from None
    return tuple(files)


def select(target: Target, unit: Literal["main", "dla"], folder: Path | None = None) -> RuleFile:
    """The one concrete rule file for ``target``: its GPU/CPU file (``main``) or its DLA file."""
    candidates = []
    for rule_file in all_rule_files(folder):
        if rule_file.abstract or rule_file.backend != target.backend:
            continue
        if (unit == "dla") != (rule_file.unit == "dla"):
            continue
        version = target.trt_version
        if rule_file.versions is not None and (version is None or not rule_file.versions.contains(version)):
            continue
        candidates.append(rule_file)
    what = "DLA" if unit == "dla" else "check"
    if not candidates:
        engine = f"TensorRT {target.tensorrt}" if target.tensorrt else target.backend
        raise InputError(f"target '{target.name}': no {what} rules cover {engine} (edgeq/check/rules/ has none for it)")
    if len(candidates) > 1:
        raise InputError(f"target '{target.name}': several {what} rule files cover it: {', '.join(c.id for c in candidates)}")
    return candidates[0]
