"""What `edgeq check` finds: per-node verdicts, whole-model gates and the INT8 / DLA shares of the MACs."""

from __future__ import annotations

from collections import Counter
from typing import Literal

from pydantic import BaseModel, ConfigDict, computed_field

Verdict = Literal["int8", "int8-passthrough", "fallback", "unsupported"]
DlaVerdict = Literal["dla", "gpu-fallback"]
VERDICTS: tuple[Verdict, ...] = ("unsupported", "fallback", "int8-passthrough", "int8")
GateStatus = Literal["pass", "fail", "warn", "n/a"]


class Reason(BaseModel):
    """Why a node got its verdict: the rule, the words a user can act on, and where the fact comes from."""

    model_config = ConfigDict(frozen=True)

    rule: str
    message: str
    source: str


class NodeResult(BaseModel):
    """One ONNX node: its verdict on the GPU (or CPU), and on the DLA when one was asked for."""

    name: str
    op: str
    verdict: Verdict
    reasons: list[Reason] = []
    macs: int | None = 0
    dla: DlaVerdict | None = None
    dla_reasons: list[Reason] = []
    dla_disputed: str | None = None
    notes: list[str] = []


class Gate(BaseModel):
    """A whole-model check. A failed gate with ``blocking`` set means the engine will not build as asked."""

    model_config = ConfigDict(frozen=True)

    id: str
    title: str
    status: GateStatus
    blocking: bool
    message: str
    source: str


class Shares(BaseModel):
    """Multiply-accumulates (batch 1) in total, in INT8 and on the DLA, and the MAC nodes of unknown size.

    ``int8`` and ``dla`` are shares of the known MACs; ``unknown_not_int8`` (``unknown_not_dla``) MAC nodes of
    unknown size miss INT8 (the DLA), so while they are non-zero the true share is lower.
    """

    model_config = ConfigDict(frozen=True)

    total_macs: int
    int8_macs: int
    dla_macs: int | None
    unknown_mac_nodes: int
    unknown_not_int8: int = 0
    unknown_not_dla: int | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def int8(self) -> float | None:
        return self.int8_macs / self.total_macs if self.total_macs else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def dla(self) -> float | None:
        return self.dla_macs / self.total_macs if self.total_macs and self.dla_macs is not None else None


class CheckReport(BaseModel):
    """The whole check of one model for one target; ``model_dump(mode="json")`` adds the verdict counts and the
    blockers (by id)."""

    model: str
    target: str
    engine: str
    rule_files: list[str]
    opset: int
    int8: bool
    quantization: Literal["implicit", "explicit"]
    dla_core: int | None
    nodes: list[NodeResult]
    gates: list[Gate]
    shares: Shares
    dynamic_inputs: dict[str, str]

    @property
    def blocking_gates(self) -> list[Gate]:
        """Failed blocking gates: each one stops the build."""
        return [g for g in self.gates if g.status == "fail" and g.blocking]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        return not self.blocking_gates

    @computed_field  # type: ignore[prop-decorator]
    @property
    def blockers(self) -> list[str]:
        """The ids of the :attr:`blocking_gates`."""
        return [g.id for g in self.blocking_gates]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def counts(self) -> dict[str, int]:
        found = Counter(n.verdict for n in self.nodes)
        return {v: found.get(v, 0) for v in VERDICTS}

    @computed_field  # type: ignore[prop-decorator]
    @property
    def dla_counts(self) -> dict[str, int] | None:
        if self.dla_core is None:
            return None
        found = Counter(n.dla for n in self.nodes if n.dla is not None)
        return {"dla": found.get("dla", 0), "gpu-fallback": found.get("gpu-fallback", 0)}

    @property
    def disputed(self) -> list[NodeResult]:
        """Nodes whose DLA verdict rests on an op NVIDIA's sources disagree about."""
        return [n for n in self.nodes if n.dla_disputed]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def dla_disputed(self) -> list[str]:
        return [n.name for n in self.disputed]
