"""What to deploy: calibrated artifacts, the INT8 path for the target, the engine id and the build options."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeq import atomic
from edgeq.calibrate import CalibrationResult, calibrate
from edgeq.deploy.wire import BuildOptions, Quantization
from edgeq.errors import GateError, InputError
from edgeq.npz import npz_bytes
from edgeq.recipe import Recipe
from edgeq.targets import Target

SMOKE_SAMPLES = 8


@dataclass
class DeployPlan:
    """Everything a device needs to build and judge one engine; the same for every device of a target."""

    recipe: Recipe
    target: Target
    calibration: CalibrationResult
    engine_id: str
    smoke_data: Path
    build_options: BuildOptions  # naming the host's files; a device gets them with its own paths

    @property
    def quantization(self) -> Quantization:
        return self.build_options.quantization

    @property
    def folder(self) -> Path:
        """The calibration output folder; deploy reports go below it."""
        return self.calibration.folder

    def files(self) -> dict[str, Path]:
        """The local files to push, by role."""
        options = self.build_options
        roles = {"model": Path(options.model), "validation": self.calibration.artifacts.validation, "smoke": self.smoke_data}
        if options.qdq is not None:
            roles["qdq"] = Path(options.qdq)
        if options.cache is not None:
            roles["cache"] = Path(options.cache)
        return roles


def device_build_options(
    recipe: Recipe, target: Target, quantization: Quantization, calibration: CalibrationResult
) -> BuildOptions:
    """The recipe's build block as the device's build options: every field of it, with the INT8 path chosen
    for the target (:func:`check_build`), the calibrated files and every input's static shape. Where the
    target's TensorRT has no DLA, the build is GPU only."""
    build = recipe.build
    artifacts = calibration.artifacts
    explicit = quantization == "explicit"
    dla_core = build.dla_core if target.usable_dla_cores else None
    return BuildOptions(
        model=str(artifacts.fp32_model),
        quantization=quantization,
        precision=build.precision,
        qdq=str(artifacts.qdq_model) if explicit else None,
        cache=str(artifacts.cache) if not explicit and artifacts.cache is not None else None,
        fp16_fallback=build.fp16_fallback,
        dla_core=dla_core,
        gpu_fallback=build.gpu_fallback and dla_core is not None,
        workspace_mb=build.workspace_mb,
        builder_optimization_level=build.builder_optimization_level,
        shapes={spec.name: spec.static_shape for spec in recipe.inputs},
        profiles={spec.name: [list(dims) for dims in spec.profile] for spec in recipe.inputs if spec.profile is not None},
    )


def check_build(recipe: Recipe, target: Target) -> Quantization:
    """The INT8 path for the target, once the recipe's build block is known to be possible there."""
    version = target.trt_version
    if recipe.build.builder_optimization_level is not None and version is not None and version < (8, 6):
        # trtexec --builderOptimizationLevel and IBuilderConfig.builder_optimization_level arrived in 8.6:
        # NVIDIA/TensorRT release/8.6 samples/common/sampleOptions.cpp:1163, python/src/infer/pyCore.cpp:1227
        raise InputError(
            f"{recipe.source}: build.builder_optimization_level: TensorRT {target.tensorrt} has no builder "
            "optimization level (it arrived in 8.6): drop the field for this target"
        )
    return choose_quantization(recipe, target)


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
    return wanted if wanted != "auto" else auto_quantization(target, dla)


def auto_quantization(target: Target, dla: bool = False) -> Quantization:
    """What build.quantization ``auto`` means on ``target``: implicit (the calibration cache) below TensorRT 10, and on 10.x with DLA."""
    version = target.trt_version
    return "implicit" if version is not None and (version[0] < 10 or (version[0] == 10 and dla)) else "explicit"


def _engine_id(recipe: Recipe, key: str, options: BuildOptions) -> str:
    settings = {"key": key, "build": options.model_dump(mode="json", exclude={"model", "qdq", "cache"})}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    slug = "".join(c if c.isalnum() or c in "-_." else "-" for c in recipe.name)[:40]
    return f"{slug}-{digest}"


def write_smoke_data(recipe: Recipe, calibration: CalibrationResult) -> Path:
    """A few validation inputs (every model input; constants whole; the batch axes) with the host's FP32 first
    output, for the smoke gate and `edgeq smoke`, run the way the device runs them (written once, byte-stable)."""
    from edgeq.device import batches
    from edgeq.device.ort_backend import OrtSession

    session = OrtSession(str(calibration.artifacts.fp32_model), 0)
    names = [spec.name for spec in recipe.inputs]
    with np.load(calibration.artifacts.validation) as data:
        single = len(names) == 1 and names[0] not in data and "x" in data
        constants = [str(c) for c in data[batches.CONSTANTS]] if batches.CONSTANTS in data.files else []
        arrays = {name: data[name] if name in constants else data["x" if single else name][:SMOKE_SAMPLES] for name in names}
        arrays.update({key: data[key] for key in (batches.AXIS_NAMES, batches.AXIS_VALUES) if key in data.files})
    if constants:
        arrays[batches.CONSTANTS] = np.array(constants, dtype=np.str_)
    axes = batches.stored_axes(arrays)
    inputs = batches.pick_inputs(arrays, session.inputs)
    expected = batches.first(batches.run_all(session, inputs, batches.batch_size(session.inputs, None, axes), axes)[0])
    path = calibration.folder / "smoke.npz"
    data = npz_bytes({**arrays, "expected": expected})
    if not path.is_file() or path.read_bytes() != data:
        atomic.write_bytes(path, data)
    return path


def make_plan(
    recipe: Recipe, target: Target, *, progress: bool = True, preflight: bool = True, out: Path | None = None,
    fit_budget: bool | None = None,
) -> DeployPlan:
    """Check the model for the target, calibrate (reused when unchanged), and fix what the devices will do.

    ``fit_budget``: as calibrate's (None: the recipe's ``calibration.fit_budget``), so deploy builds what calibrate found.
    """
    if preflight and target.backend == "tensorrt":
        _preflight(recipe, target)
    quantization = check_build(recipe, target)  # a build the target cannot do fails before calibrating
    calibration = calibrate(recipe, target, progress=progress, out=out, fit_budget=fit_budget)
    options = device_build_options(recipe, target, quantization, calibration)
    return DeployPlan(
        recipe=recipe,
        target=target,
        calibration=calibration,
        engine_id=_engine_id(recipe, calibration.report.key, options),
        smoke_data=write_smoke_data(recipe, calibration),
        build_options=options,
    )


def _preflight(recipe: Recipe, target: Target) -> None:
    """`edgeq check` before any device is touched: blockers stop the deploy (exit 1)."""
    from edgeq import model as model_module
    from edgeq.check import check_model

    dla = recipe.build.dla_core is not None
    shapes = {spec.name: spec.built_shape(dla) for spec in recipe.inputs}
    model = model_module.with_input_shapes(model_module.load(recipe.model_path), shapes, recipe.model_path)
    report = check_model(model, target, dla_core=recipe.build.dla_core, int8=recipe.build.precision == "int8")
    if report.blocking_gates:
        lines = "\n".join(f"  - {gate.title}: {gate.message}" for gate in report.blocking_gates)
        raise GateError(f"{recipe.model_path}: `edgeq check` found blockers for {target.name}:\n{lines}")
