"""Model preparation for calibration (initial stub: API fixed, implementation follows)."""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx


@dataclass
class PreparedModel:
    """A float model ready for calibration, what was changed, and what must stay in float."""

    model: onnx.ModelProto
    notes: list[str] = field(default_factory=list)
    unquantizable: dict[str, str] = field(default_factory=dict)


def prepare(model: onnx.ModelProto) -> PreparedModel:
    """Return ``model`` ready for calibration (work in progress: returns it unchanged)."""
    return PreparedModel(model=model, notes=[], unquantizable={})
