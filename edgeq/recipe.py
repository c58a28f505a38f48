"""The recipe: one YAML file that says which model goes to which devices, with which data and gates.

Every path in a recipe is resolved against the recipe's own folder. A wrong recipe raises one
:class:`~edgeq.errors.InputError` that lists each problem with its field path, what was expected
and what was found.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from edgeq.errors import InputError
from edgeq.hosts.host import Host
from edgeq.hosts.inventory import load_inventory
from edgeq.safe_yaml import excerpt
from edgeq.textfiles import parse_yaml, read_text

CalibrationMethod = Literal["auto", "entropy", "minmax", "percentile", "mse"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # an `inf` budget is no budget


class DimRange(_Strict):
    """A dynamic dim's optimization profile: TensorRT builds the engine for min..max, tuned for opt; edgeq
    calibrates and validates at opt."""

    min: int = Field(gt=0)
    opt: int = Field(gt=0)
    max: int = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> DimRange:
        if not self.min <= self.opt <= self.max:
            raise ValueError(f"expected min <= opt <= max, found {self.min}, {self.opt}, {self.max}")
        return self


Dim = int | str | DimRange


def _span(dim: Dim) -> str:
    """A dim as text: a range as ``min..max``."""
    return f"{dim.min}..{dim.max}" if isinstance(dim, DimRange) else str(dim)


class InputSpec(_Strict):
    """One network input: its name, its shape (batch first; -1 or a name for a dynamic dim, or {min, opt, max}
    for a dim TensorRT should take in a range), layout, dtype."""

    name: str
    shape: list[Dim] = Field(description="[] for a scalar input (not the first)")
    layout: Literal["NCHW", "NHWC", "NC", "other"] = "NCHW"
    dtype: Literal["float32", "float16", "uint8", "int8", "int32", "int64"] = "float32"
    state: str | None = Field(
        default=None, description="recurrent state: the output fed back into this input at the next sample of a sequence"
    )

    @field_validator("shape")
    @classmethod
    def _dims(cls, value: list[Dim]) -> list[Dim]:
        if any(isinstance(dim, int) and dim <= 0 and dim != -1 for dim in value):
            raise ValueError("every dimension must be > 0, -1 (dynamic) or a name")
        return value

    @property
    def static_shape(self) -> list[int]:
        """The shape edgeq runs and engines are tuned for: a range's opt; a symbolic dim (the batch, usually) 1."""
        return [dim.opt if isinstance(dim, DimRange) else dim if isinstance(dim, int) and dim > 0 else 1 for dim in self.shape]

    @property
    def profile(self) -> tuple[list[int], list[int], list[int]] | None:
        """(min, opt, max) shapes of the optimization profile, when a dim is given as a range."""
        if not any(isinstance(dim, DimRange) for dim in self.shape):
            return None
        static = self.static_shape
        return tuple(  # type: ignore[return-value]
            [getattr(dim, bound) if isinstance(dim, DimRange) else static[i] for i, dim in enumerate(self.shape)]
            for bound in ("min", "opt", "max")
        )

    def built_shape(self, dla: bool) -> list[int | str]:
        """The shape an engine is built for, as `check` should see it: static at opt, except that for the DLA
        (static shapes only) a range that is not a single size stays dynamic, named ``min..max``."""
        static = self.static_shape
        return [_span(self.shape[i]) if dla and i in self.varying else dim for i, dim in enumerate(static)]

    @property
    def varying(self) -> dict[int, DimRange]:
        """The dims whose range is not a single size (what keeps an engine off the DLA)."""
        return {i: dim for i, dim in enumerate(self.shape) if isinstance(dim, DimRange) and dim.min != dim.max}


class Preprocess(_Strict):
    """How an image file becomes the network's input tensor (applied in this order). .npz data is used as it is."""

    resize: tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]] | None = Field(
        default=None, description="(height, width) of the network input"
    )
    fit: Literal["stretch", "letterbox", "center_crop"] = Field(
        default="stretch",
        description="stretch to the size; letterbox: keep the aspect ratio and pad; center_crop: fill and crop the middle",
    )
    pad_value: float = Field(default=114.0, ge=0, le=255, description="letterbox padding, as a 0..255 pixel value")
    pad_position: Literal["center", "top_left"] = Field(
        default="center", description="letterbox: image centred, or at the top left (padding right and bottom)"
    )
    channel_order: Literal["RGB", "BGR", "GRAY"] = "RGB"
    scale: float = Field(default=1.0 / 255.0, gt=0, description="multiplies the 0..255 pixel values")
    mean: list[float] = Field(default_factory=lambda: [0.0, 0.0, 0.0])
    std: list[float] = Field(default_factory=lambda: [1.0, 1.0, 1.0])

    @field_validator("std")
    @classmethod
    def _std_positive(cls, value: list[float]) -> list[float]:
        if any(v <= 0 for v in value):
            raise ValueError("every std must be > 0")
        return value


class DataSpec(_Strict):
    """A data set: a folder with one sub-folder of images per class, or an .npz file."""

    path: Path
    samples: int | None = Field(default=None, gt=0, description="use at most this many (all if unset)")
    seed: int = 0
    sequence_length: int | None = Field(
        default=None, gt=0, description="samples come in sequences of this length, in order (state models); whole sequences are picked"
    )


class CalibrationSpec(DataSpec):
    """Calibration data and how ranges are computed from it."""

    samples: int | None = Field(default=256, gt=0)
    batch_size: int = Field(default=16, gt=0)
    method: CalibrationMethod = Field(
        default="auto", description="auto: entropy, or the method the metric prefers when entropy loses accuracy"
    )
    percentile: float = Field(default=99.99, gt=0, le=100)
    fit_budget: bool = Field(
        default=False,
        description="when the predicted drop misses budget.accuracy_drop: widen the fewest clipped ranges, then keep the "
        "most sensitive layers in float until it fits (time-bounded); calibrate, deploy and rollout all build what this "
        "finds (their --fit-budget / --no-fit-budget override it)",
    )


# Built-in metrics (edgeq.metrics); `auto` is top1 for class labels, fidelity otherwise.
METRIC_NAMES = ("auto", "top1", "top5", "detection", "map50", "map50_95", "box_f1", "miou", "cer", "fidelity")


class DetectionOptions(_Strict):
    """How detector outputs become boxes (detection metrics and the report's box overlay)."""

    format: Literal["auto", "yolo", "boxes_scores"] = Field(
        default="auto", description="yolo: one output [N, 4+C, A] (or [N, A, 4+C]); boxes_scores: [N, A, 4] and [N, A, C]"
    )
    output: str | None = Field(default=None, description="yolo: the output to decode (default: the first)")
    boxes: str | None = Field(default=None, description="boxes_scores: the boxes output")
    scores: str | None = Field(default=None, description="boxes_scores: the scores output")
    box_format: Literal["cxcywh", "xyxy", "xywh"] | None = Field(default=None, description="default: cxcywh for yolo, xyxy otherwise")
    score_threshold: float = Field(default=0.001, ge=0, description="boxes kept for mAP")
    nms_iou: float = Field(default=0.7, gt=0, le=1)
    max_detections: int = Field(default=300, gt=0, description="per image, after NMS")
    confidence: float = Field(default=0.25, ge=0, description="boxes counted by box_f1 and drawn in the report")


class TextOptions(_Strict):
    """CTC text outputs [N, T, C]: greedy decoding for the `cer` metric."""

    alphabet: Path | None = Field(default=None, description="one character per line for classes 1.. (needed for string labels)")
    blank: int = Field(default=0, ge=0)


class SegmentationOptions(_Strict):
    """Mask outputs [N, C, H, W] (arg-max over C) or [N, 1, H, W] (probability, cut at threshold)."""

    threshold: float = 0.5
    ignore_index: int = 255


class ValidationSpec(DataSpec):
    """Validation data and the metric: a built-in name, or `file.py:function` receiving (outputs, labels)."""

    metric: str = "auto"
    labels: Path | None = Field(default=None, description=".npz (arrays indexed by sample) or COCO .json; default: the data's own")
    output: str | None = Field(default=None, description="the output the classification/segmentation/text metric reads")
    detection: DetectionOptions = Field(default_factory=DetectionOptions)
    text: TextOptions = Field(default_factory=TextOptions)
    segmentation: SegmentationOptions = Field(default_factory=SegmentationOptions)

    @field_validator("metric")
    @classmethod
    def _metric_form(cls, value: str) -> str:
        if value not in METRIC_NAMES and (":" not in value or not value.split(":", 1)[0].endswith(".py")):
            raise ValueError(f"expected one of {', '.join(METRIC_NAMES)} or 'file.py:function'")
        return value

    @property
    def custom_metric(self) -> Path | None:
        """The metric's Python file, when the metric is not built in."""
        return None if self.metric in METRIC_NAMES else Path(self.metric.rsplit(":", 1)[0])


class Budget(_Strict):
    """Pass/fail gates."""

    accuracy_drop: float = Field(default=1.0, ge=0, description="max drop of the metric vs FP32, in points")
    latency_p99_ms: float | None = Field(default=None, gt=0, description="max p99 latency on the device")


class BuildOptions(_Strict):
    """How the engine is built on the device."""

    precision: Literal["int8", "fp16", "fp32"] = "int8"
    fp16_fallback: bool = True
    quantization: Literal["auto", "implicit", "explicit"] = Field(
        default="auto", description="implicit = calibration cache; explicit = Q/DQ model; auto picks per TensorRT version"
    )
    dla_core: int | None = Field(default=None, ge=0)
    gpu_fallback: bool = True
    workspace_mb: int = Field(default=1024, gt=0)
    builder_optimization_level: int | None = Field(default=None, ge=0, le=5)


class Devices(_Strict):
    """Where to deploy: hosts inline, or an inventory file (not both)."""

    hosts: list[Host] = Field(default_factory=list)
    inventory: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Devices:
        if self.hosts and self.inventory is not None:
            raise ValueError("give either hosts or inventory, not both")
        return self


class Recipe(_Strict):
    """A whole recipe. Its file and folder (against which paths are resolved) are set by :func:`parse`: they are
    not recipe fields (not in the schema, refused in the YAML)."""

    name: str
    model: Path
    inputs: list[InputSpec] = Field(min_length=1)
    classes: list[str] | None = Field(
        default=None, min_length=1, description="class folder names in label order (default: natural order, 2 before 10)"
    )
    preprocess: Preprocess = Field(default_factory=Preprocess)
    calibration: CalibrationSpec
    validation: ValidationSpec
    budget: Budget = Field(default_factory=Budget)
    build: BuildOptions = Field(default_factory=BuildOptions)
    devices: Devices = Field(default_factory=Devices)
    _folder: Path = PrivateAttr(default=Path("."))
    _source: Path | None = PrivateAttr(default=None)

    @property
    def folder(self) -> Path:
        """The recipe file's folder: every relative path in the recipe starts here."""
        return self._folder

    @property
    def source(self) -> Path | None:
        """The recipe file (None for a recipe not read from a file)."""
        return self._source

    @field_validator("inputs")
    @classmethod
    def _first_input_batched(cls, value: list[InputSpec]) -> list[InputSpec]:
        if not value[0].shape:
            raise ValueError("the first input needs at least its batch dim")
        return value

    def resolve(self, path: Path | str) -> Path:
        """A path from the recipe, made absolute against the recipe's folder."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else (self.folder / path).resolve()

    @property
    def model_path(self) -> Path:
        return self.resolve(self.model)

    @property
    def out_folder(self) -> Path:
        """Where this recipe's outputs go: ``<recipe folder>/edgeq-out/<name>`` (the name as a safe folder name),
        so recipes that share a folder keep their outputs apart."""
        slug = re.sub(r"[^A-Za-z0-9._-]", "-", self.name).lstrip(".")
        return self.folder / "edgeq-out" / (slug or "recipe")

    def device_hosts(self) -> list[Host]:
        """The hosts the recipe names: inline ``devices.hosts`` or its ``devices.inventory``."""
        if self.devices.inventory is not None:
            return load_inventory(self.resolve(self.devices.inventory))
        return list(self.devices.hosts)


def _field_names() -> set[str]:
    """Every field name used anywhere in the recipe schema, for spelling suggestions."""
    names: set[str] = set()
    for cls in (InputSpec, DimRange, Preprocess, CalibrationSpec, ValidationSpec, DetectionOptions, TextOptions, SegmentationOptions,
                Budget, BuildOptions, Host, Devices, Recipe):
        names.update(cls.model_fields)
    return names


def _describe(error: ErrorDetails) -> str:
    loc = ".".join(str(part) for part in error["loc"]) or "(top level)"
    found = error.get("input")
    kind = error["type"]
    if kind == "extra_forbidden":
        name = str(error["loc"][-1])
        close = difflib.get_close_matches(name, _field_names(), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"{loc}: unknown field {name!r}{hint}"
    if kind == "missing":
        return f"{loc}: required field is missing"
    return f"{loc}: {error['msg'].removeprefix('Value error, ')} (found {excerpt(found)})"


def parse(data: Any, source: Path) -> Recipe:
    """Validate already-loaded recipe data; ``source`` names the file in messages and anchors paths."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a mapping of recipe fields, found {type(data).__name__}")
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        problems = "\n".join(f"  - {_describe(e)}" for e in exc.errors())
        count = len(exc.errors())
        raise InputError(f"{source}: {count} problem{'s' if count > 1 else ''} in the recipe:\n{problems}") from None
    recipe._folder, recipe._source = source.resolve().parent, source.resolve()
    return recipe


def load(path: Path | str) -> Recipe:
    """Read and validate a recipe file."""
    path = Path(path)
    data = parse_yaml(read_text(path, "recipe"), path)
    return parse(data, path)


def json_schema() -> dict[str, Any]:
    """The recipe's JSON Schema, for editors (yaml-language-server and the like)."""
    schema = Recipe.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "edgeq recipe"
    return schema


def metric_file(recipe: Recipe) -> Path | None:
    """The Python file of a ``file.py:function`` metric (None for a built-in): its code runs inside edgeq, so it
    must lie in the recipe's folder (symlinks followed). Data paths may point anywhere; code may not."""
    written = recipe.validation.custom_metric
    if written is None:
        return None
    path = recipe.resolve(written).resolve()
    if not path.is_relative_to(recipe.folder.resolve()):
        raise InputError(
            f"{recipe.source}: validation.metric: {written} is outside the recipe folder {recipe.folder}; "
            "metric code is only run from inside it (copy the file there)"
        )
    return path


def check_paths(recipe: Recipe) -> None:
    """Every file or folder the recipe names must exist; one error lists each one that does not."""
    named = {"model": recipe.model, "calibration.path": recipe.calibration.path, "validation.path": recipe.validation.path}
    metric = metric_file(recipe)
    if metric is not None:
        named["validation.metric"] = metric
    if recipe.validation.labels is not None:
        named["validation.labels"] = recipe.validation.labels
    if recipe.validation.text.alphabet is not None:
        named["validation.text.alphabet"] = recipe.validation.text.alphabet
    if recipe.devices.inventory is not None:
        named["devices.inventory"] = recipe.devices.inventory
    missing = [f"  - {field}: {recipe.resolve(path)} does not exist" for field, path in named.items() if not recipe.resolve(path).exists()]
    if missing:
        raise InputError(f"{recipe.source}: {len(missing)} missing file{'s' if len(missing) > 1 else ''}:\n" + "\n".join(missing))
