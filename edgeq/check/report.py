"""What `edgeq check` finds: per-node verdicts, whole-model gates and the INT8 / DLA shares of the MACs."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Verdict = Literal["int8", "int8-passthrough", "fallback", "unsupported"]
DlaVerdict = Literal["dla", "gpu-fallback"]
VERDICTS: tuple[Verdict, ...] = ("unsupported", "fallback", "int8-passthrough", "int8")
GateStatus = Literal["pass", "fail", "warn", "n/a"]


@dataclass(frozen=True)
class Reason:
    """Why a node got its verdict: the rule, the words a user can act on, and where the fact comes from."""

    rule: str
    message: str
    source: str


@dataclass
class NodeResult:
    """One ONNX node: its verdict on the GPU (or CPU), and on the DLA when one was asked for."""

    name: str
    op: str
    verdict: Verdict
    reasons: list[Reason] = field(default_factory=list)
    macs: int | None = 0
    dla: DlaVerdict | None = None
    dla_reasons: list[Reason] = field(default_factory=list)
    dla_disputed: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Gate:
    """A whole-model check. A failed gate with ``blocking`` set means the engine will not build as asked."""

    id: str
    title: str
    status: GateStatus
    blocking: bool
    message: str
    source: str


@dataclass(frozen=True)
class Shares:
    """Multiply-accumulates (batch 1) in total, in INT8 and on the DLA, and the MAC nodes of unknown size.

    ``int8`` and ``dla`` are shares of the known MACs; ``unknown_not_int8`` (``unknown_not_dla``) MAC nodes of
    unknown size miss INT8 (the DLA), so while they are non-zero the true share is lower.
    """

    total_macs: int
    int8_macs: int
    dla_macs: int | None
    unknown_mac_nodes: int
    unknown_not_int8: int = 0
    unknown_not_dla: int | None = None

    @property
    def int8(self) -> float | None:
        return self.int8_macs / self.total_macs if self.total_macs else None

    @property
    def dla(self) -> float | None:
        return self.dla_macs / self.total_macs if self.total_macs and self.dla_macs is not None else None


@dataclass
class CheckReport:
    """The whole check of one model for one target."""

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
    def blockers(self) -> list[Gate]:
        """Failed blocking gates: each one stops the build."""
        return [g for g in self.gates if g.status == "fail" and g.blocking]

    @property
    def ok(self) -> bool:
        return not self.blockers

    def counts(self) -> dict[str, int]:
        found = Counter(n.verdict for n in self.nodes)
        return {v: found.get(v, 0) for v in VERDICTS}

    @property
    def disputed(self) -> list[NodeResult]:
        """Nodes whose DLA verdict rests on an op NVIDIA's sources disagree about."""
        return [n for n in self.nodes if n.dla_disputed]

    def dla_counts(self) -> dict[str, int] | None:
        if self.dla_core is None:
            return None
        found = Counter(n.dla for n in self.nodes if n.dla is not None)
        return {"dla": found.get("dla", 0), "gpu-fallback": found.get("gpu-fallback", 0)}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data: every node with its verdict and reasons, the gates, counts and shares."""
        data = asdict(self)
        data["ok"] = self.ok
        data["blockers"] = [g.id for g in self.blockers]
        data["counts"] = self.counts()
        data["dla_counts"] = self.dla_counts()
        data["dla_disputed"] = [n.name for n in self.disputed]
        data["shares"] = {**asdict(self.shares), "int8": self.shares.int8, "dla": self.shares.dla}
        return data
