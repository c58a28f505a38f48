"""`edgeq calibrate`: GPU-free calibration on the host, a TensorRT calibration cache and a Q/DQ model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgeq import recipe as recipe_module
from edgeq import targets
from edgeq.cli.app import JsonOption, TargetOption, app, print_json, show
from edgeq.cli.options import CalibrationOptions, grouped
from edgeq.errors import GateError


@app.command("calibrate")
@grouped
def calibrate(
    recipe: Annotated[Path, typer.Argument(help="The recipe file.")],
    target: TargetOption,
    method: Annotated[
        str | None, typer.Option("--method", help="auto | entropy | minmax | percentile | mse (default: the recipe's; auto unless set).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default: <recipe folder>/edgeq-out/<recipe name>/<target>).")
    ] = None,
    sensitivity: Annotated[
        bool, typer.Option("--sensitivity", help="Rank the layers' sensitivity (only on request).")
    ] = False,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="ONNX Runtime threads to keep busy (default: one per core).")
    ] = None,
    json: JsonOption = False,
    *,
    calibrating: CalibrationOptions,
) -> None:
    """Calibrate INT8 on this machine: calibration cache, Q/DQ model, ranges and the predicted INT8 accuracy.

    Exit 1 when the predicted accuracy drop exceeds the recipe's budget (artifacts are still written).
    """
    from edgeq.calibrate import calibrate as run
    from edgeq.report.calibrate_view import calibration_view

    result = run(recipe_module.load(recipe), targets.resolve(target), method=method, out=out,
                 fit_budget=calibrating.fit_budget, sensitivity=sensitivity, threads=threads, progress=not json)
    if json:
        print_json(result.model_dump(mode="json"))
    else:
        show(calibration_view(result))
    acc = result.report.accuracy
    if not acc.passed:
        raise GateError(
            f"predicted INT8 {acc.metric} drops {acc.drop:.2f} points ({acc.fp32:.2f} -> {acc.int8:.2f}),"
            f" over the budget of {acc.budget:.2f} (budget.accuracy_drop); try --fit-budget (or calibration.fit_budget: true in"
            " the recipe, which deploy and rollout follow too) or another --method"
        )
