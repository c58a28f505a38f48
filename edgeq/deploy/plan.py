"""What to deploy: calibrated artifacts, the INT8 path for the target, the engine id and the build options."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from edgeq import atomic
from edgeq.calibrate import CalibrationResult, calibrate
from edgeq.npz import npz_bytes
from edgeq.errors import GateError, InputError
from edgeq.recipe import Recipe
from edgeq.targets import Target

SMOKE_SAMPLES = 8

Quantization = Literal["implicit", "explicit"]


@dataclass
class DeployPlan:
    """Everything a device needs to build and judge one engine; the same for every device of a target."""

    recipe: Recipe
    target: Target
    calibration: CalibrationResult
    quantization: Quantization
    engine_id: str
    smoke_data: Path
    input_name: str
    input_shape: list[int]
    build_options: dict[str, object] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        """The calibration output folder; deploy reports go below it."""
        return self.calibration.folder

    def files(self) -> dict[str, Path]:
        """The local files to push, by role."""
        artifacts = self.calibration.artifacts
        roles = {"model": artifacts.fp32_model, "validation": artifacts.validation, "smoke": self.smoke_data}
        if self.quantization == "explicit":
            roles["qdq"] = artifacts.qdq_model
        elif artifacts.cache is not None:
            roles["cache"] = artifacts.cache
        return roles

    def build_args(self, remote: dict[Path, str]) -> list[str]:
        """The agent's `build` arguments, with the pushed files' device paths."""
        files = self.files()
        build = self.recipe.build
        args = ["--engine-id", self.engine_id, "--model", remote[files["model"]], "--quantization", self.quantization]
        args += ["--precision", build.precision]
        if "qdq" in files:
            args += ["--qdq", remote[files["qdq"]]]
        if "cache" in files:
            args += ["--cache", remote[files["cache"]]]
        if build.fp16_fallback:
            args.append("--fp16-fallback")
        if build.dla_core is not None and self.target.usable_dla_cores:  # where TensorRT has no DLA, the plan is GPU only
            args += ["--dla-core", str(build.dla_core)]
            if build.gpu_fallback:
                args.append("--gpu-fallback")
        args += ["--workspace-mb", str(build.workspace_mb)]
        args += ["--shapes", f"{self.input_name}:{'x'.join(map(str, self.input_shape))}"]
        for spec in self.recipe.inputs:
            if spec.profile is not None:
                args += ["--profile", ":".join([spec.name, *("x".join(map(str, dims)) for dims in spec.profile)])]
        return args


def choose_quantization(recipe: Recipe, target: Target) -> Quantization:
    """The INT8 path: the recipe's choice if the target can do it; `auto` is implicit below TensorRT 10 and for DLA on 10.x."""
    wanted = recipe.build.quantization
    version = target.trt_version
    if wanted == "implicit" and not target.implicit_int8:
        reason = "TensorRT 11 has no implicit INT8" if version else "the ONNX Runtime backend runs Q/DQ models only"
        raise InputError(f"{recipe.source}: build.quantization: 'implicit' is not possible on {target.name} ({reason})")
    dla = recipe.build.dla_core is not None and target.usable_dla_cores > 0
    if wanted == "explicit" and version is not None and version[0] <= 10 and dla:
        raise InputError(
            f"{recipe.source}: build.quantization: no NVIDIA source says TensorRT {target.tensorrt} DLA takes Q/DQ networks; "
            "use 'implicit' (the calibration cache) or drop build.dla_core"
        )
    if wanted != "auto":
        return wanted
    return "implicit" if version is not None and (version[0] < 10 or version[0] == 10 and dla) else "explicit"


def _engine_id(recipe: Recipe, key: str, quantization: str, shape: list[int]) -> str:
    settings = {"key": key, "quantization": quantization, "build": recipe.build.model_dump(mode="json"), "shape": shape}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in recipe.name)[:40]
    return f"{slug}-{digest}"


def _smoke_file(calibration: CalibrationResult) -> Path:
    """A few validation inputs (every input; constants whole) with the host's FP32 first output, for `smoke`,
    run the way the device runs them (written once, byte-stable)."""
    from edgeq.device.batches import batch_size, first, pick_inputs, run_all
    from edgeq.device.ort_backend import OrtSession

    session = OrtSession(str(calibration.artifacts.fp32_model), 0)
    with np.load(calibration.artifacts.validation) as data:
        constants = [str(c) for c in data["constants"]] if "constants" in data.files else []
        names = [spec.name if spec.name in data.files else "x" for spec in session.inputs]
        arrays = {name: data[name] if name in constants else data[name][:SMOKE_SAMPLES] for name in names}
    arrays["constants"] = np.array(constants, dtype=np.str_)
    expected = first(run_all(session, pick_inputs(arrays, session.inputs), batch_size(session.inputs, None))[0])
    path = calibration.folder / "smoke.npz"
    data = npz_bytes({**arrays, "expected": expected})
    if not path.is_file() or path.read_bytes() != data:
        atomic.write_bytes(path, data)
    return path


def make_plan(
    recipe: Recipe, target: Target, *, progress: bool = True, preflight: bool = True, out: Path | None = None
) -> DeployPlan:
    """Check the model for the target, calibrate (reused when unchanged), and fix what the devices will do."""
    if preflight and target.backend == "tensorrt":
        _preflight(recipe, target)
    quantization = choose_quantization(recipe, target)
    calibration = calibrate(recipe, target, progress=progress, out=out)
    shape = recipe.inputs[0].static_shape
    input_name = recipe.inputs[0].name
    return DeployPlan(
        recipe=recipe,
        target=target,
        calibration=calibration,
        quantization=quantization,
        engine_id=_engine_id(recipe, calibration.report.key, quantization, shape),
        smoke_data=_smoke_file(calibration),
        input_name=input_name,
        input_shape=shape,
    )


def _preflight(recipe: Recipe, target: Target) -> None:
    """`edgeq check` before any device is touched: blockers stop the deploy (exit 1)."""
    from edgeq import model as model_module
    from edgeq.check import check_model

    dla = recipe.build.dla_core is not None
    shapes = {spec.name: spec.built_shape(dla) for spec in recipe.inputs}
    model = model_module.with_input_shapes(model_module.load(recipe.model_path), shapes, recipe.model_path)
    report = check_model(model, target, dla_core=recipe.build.dla_core, int8=recipe.build.precision == "int8")
    if report.blockers:
        lines = "\n".join(f"  - {gate.title}: {gate.message}" for gate in report.blockers)
        raise GateError(f"{recipe.model_path}: `edgeq check` found blockers for {target.name}:\n{lines}")
