"""Which tensors stay out of INT8 (initial stub: API fixed, implementation follows)."""

from __future__ import annotations

import onnx


def excluded_tensors(model: onnx.ModelProto, amax: dict[str, float]) -> dict[str, str]:
    """Tensor name -> reason to keep it out of the cache and the Q/DQ model (work in progress)."""
    return {}
