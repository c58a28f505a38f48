"""Per-layer sensitivity, and fitting the accuracy budget by keeping the most sensitive layers in float.

Measuring a layer costs one Q/DQ model and one ONNX Runtime session, so the pipeline only ranks when
asked, or when the predicted drop fails the budget; it runs on a small validation subset. Given proxies
(:mod:`edgeq.calibrate.proxy`, free from the statistics), only the ``confirm`` layers they rank highest are
measured; the others follow in proxy order, marked unmeasured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import onnx

from edgeq.calibrate import activations, predict
from edgeq.calibrate.host import host_model
from edgeq.calibrate.qdq import QuantizedLayer, build_qdq
from edgeq.calibrate.report import LayerSensitivity, PredictedAccuracy
from edgeq.device.compare import cosine, top1_agreement


def rank_layers(
    model: onnx.ModelProto,
    layers: list[QuantizedLayer],
    amax: Mapping[str, float],
    x: np.ndarray | dict[str, np.ndarray],
    fp32: dict[str, np.ndarray],
    batch_size: int,
    arithmetic: str,
    advance: Callable[[], None] = lambda: None,
    *,
    proxies: Mapping[str, float] | None = None,
    confirm: int | None = None,
) -> list[LayerSensitivity]:
    """Each layer quantized alone, scored by 1 - cosine of the first output against FP32; most sensitive first.

    ``fp32``: the FP32 outputs, whose first ``len(x)`` rows belong to ``x``; ``arithmetic``: this CPU's
    INT8 arithmetic (:func:`edgeq.calibrate.host.host_model`). ``proxies`` and ``confirm``: measure only the
    ``confirm`` layers of highest proxy (see the module docstring).
    """
    first = next(iter(fp32))
    reference = fp32[first][: activations.rows(x)]
    proxies = proxies or {}
    if proxies and confirm is not None:
        by_proxy = sorted(layers, key=lambda layer: proxies.get(layer.name, 0.0), reverse=True)
        measured, rest = by_proxy[:confirm], by_proxy[confirm:]
    else:
        measured, rest = layers, []
    ranked = []
    for layer in measured:
        out = predict.outputs([host_model(build_qdq(model, [layer], amax), arithmetic)], predict.slices(x, batch_size))[0][first]
        ranked.append(
            LayerSensitivity(
                layer=layer.name,
                op_type=layer.op_type,
                tensors=list(layer.activations),
                score=max(0.0, 1.0 - cosine(reference, out)),
                top1_agreement=top1_agreement(reference, out),
                proxy=proxies.get(layer.name, 0.0),
            )
        )
        advance()
    unmeasured = [LayerSensitivity(layer.name, layer.op_type, list(layer.activations), 0.0, 1.0,
                                   proxies.get(layer.name, 0.0), measured=False) for layer in rest]
    return sorted(ranked, key=lambda s: s.score, reverse=True) + unmeasured


def fit_budget(
    layers: list[QuantizedLayer],
    ranking: list[LayerSensitivity],
    evaluate: Callable[[list[QuantizedLayer]], PredictedAccuracy],
    accuracy: PredictedAccuracy,
    advance: Callable[[], None] = lambda: None,
) -> tuple[list[str], PredictedAccuracy]:
    """The fewest most-sensitive layers to keep in float for the drop to fit the budget, and the accuracy then.

    ``accuracy``: that of all ``layers`` in INT8. Tries keeping the top 1, 2, ... layers of ``ranking``
    in float; stops at the first that passes.
    """
    kept: list[str] = []
    for entry in ranking:
        if accuracy.passed:
            break
        kept.append(entry.layer)
        accuracy = evaluate([layer for layer in layers if layer.name not in kept])
        advance()
    return kept, accuracy
