"""`edgeq check`: per-layer INT8 preflight of an ONNX model for a target's GPU (or CPU) and DLA, from rule data."""

from edgeq.check.evaluate import check_model
from edgeq.check.report import CheckReport, Gate, NodeResult, Reason, Shares

__all__ = ["CheckReport", "Gate", "NodeResult", "Reason", "Shares", "check_model"]
