"""docs/version-matrix.md, generated from targets/, the rule files and the build planners, so it cannot drift.

Per target: JetPack, L4T, TensorRT, CUDA, compute capability, DLA cores (hardware / usable by its TensorRT), the INT8
paths and edgeq's default, and the build path: the trtexec flags of the default build with the lines of that
release's ``sampleOptions.cpp`` that parse them, and the oldest TensorRT Python API with every member the API path
calls. Each cell's source is listed under the table. Regenerate with ``python -m edgeq.check.matrix
docs/version-matrix.md``; tests/test_version_matrix.py fails when the page is stale.
"""

from __future__ import annotations

import json
import sys
import tempfile
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from edgeq.atomic import write_text
from edgeq.check import rules
from edgeq.device.trt_api import plan_api_build, plan_api_run
from edgeq.device.trt_api_members import API_MEMBERS, minimum_version
from edgeq.device.trt_rules import TrtBuildSpec, plan_precision
from edgeq.device.trt_version import TrtVersion
from edgeq.device.trtexec_command import build_command
from edgeq.targets import Target, all_targets

HEADER = """# Version matrix: what each target runs and how edgeq builds for it

Generated from `targets/*.yaml`, `edgeq/check/rules/*.yaml` and the device's build planners by
`python -m edgeq.check.matrix docs/version-matrix.md`: do not edit by hand. The source of every cell is listed under
the table, per target. "DLA cores" is the module's hardware / the cores its TensorRT release drives. The build path is
the default INT8 build (FP16 where the GPU has no INT8) with the recipe defaults (FP16 fallback, a 1024 MiB workspace,
static input shapes, a timing cache and layer info): the trtexec flags with the lines of that release's
`samples/common/sampleOptions.cpp` (NVIDIA/TensorRT) that parse them, and the oldest TensorRT Python API that has every
member the API path calls (its build and its run), with the members that need it.
"""

BRANCHES = {(8, 2): "8.2", (8, 5): "8.5", (8, 6): "8.6", (10, 3): "10.3", (10, 13): "10.13", (10, 16): "10.16", (11, 4): "11.1"}


@cache
def trtexec_flags() -> dict[str, Any]:
    """Flags each release's trtexec parses, with their lines (edgeq/check/data/trtexec-flags.json)."""
    return json.loads((resources.files("edgeq.check") / "data" / "trtexec-flags.json").read_text(encoding="utf-8"))


def default_quantization(target: Target) -> str | None:
    """The INT8 path `build.quantization: auto` takes on ``target`` (DLA off), or None without INT8."""
    if not target.int8:
        return None
    version = target.trt_version
    return "implicit" if version is not None and version[0] < 10 else "explicit"


def default_spec(target: Target, cache_file: str) -> TrtBuildSpec:
    """The default build on ``target``; ``cache_file`` must exist (the device refuses a missing cache)."""
    quantization = default_quantization(target)
    version = target.trt_version
    precision = "int8" if quantization else "fp16"
    return TrtBuildSpec(onnx="model.onnx", engine="engine.plan", precision=precision, quantization=quantization or "explicit",
                        cache=cache_file if quantization == "implicit" else None,
                        fp16_fallback=precision == "int8" and version is not None and version[0] < 11, workspace_mb=1024,
                        shapes={"input": [1, 3, 224, 224]}, timing_cache="timing.cache", layer_info="layers.json")


def build_path(target: Target) -> tuple[str, str, list[str]]:
    """(trtexec cell, Python API cell, sources) for the default build on ``target``."""
    version = target.trt_version
    assert version is not None
    trt = TrtVersion(*version)
    with tempfile.NamedTemporaryFile(suffix=".cache") as cache_file:
        spec = default_spec(target, cache_file.name)
        plan = plan_precision(spec, trt, target.compute_capability, target.module)
    branch = trtexec_flags()[BRANCHES[version[:2]]]
    argv = build_command("trtexec", spec, plan, trt)[1:]
    flags = [arg.split("=", 1)[0] for arg in argv]
    shown = " ".join(f"`{flag}` ({branch['flags'][flag]})" for flag in flags if flag not in ("--onnx", "--saveEngine"))
    calls = plan_api_build(spec, plan, trt).calls + plan_api_run(trt).calls
    needed = minimum_version(calls)
    newest = sorted({c for c in calls if API_MEMBERS[c].since == needed})
    api = f"TensorRT {needed[0]}.{needed[1]}+: " + ", ".join(f"`{c}`" for c in newest)
    sources = [f"trtexec flags: NVIDIA/TensorRT {branch['branch']} (commit {branch['commit'][:10]}) samples/common/sampleOptions.cpp, "
               "the line of each flag in brackets" + ("" if branch["branch"].endswith(f"{version[0]}.{version[1]}") else
                                                      f" (closest release branch to TensorRT {target.tensorrt})"),
               "Python API: " + "; ".join(f"{c}: {API_MEMBERS[c].source}" for c in newest)]
    return shown, api, sources


def int8_cell(target: Target) -> tuple[str, str]:
    main = rules.select(target, "main")
    if not target.int8:
        return "none (FP16)", target.sources.get("int8", "")
    modes = {"implicit": "implicit (cache)", "explicit": "explicit (Q/DQ)"}
    default = default_quantization(target)
    cell = ", ".join(modes[m] for m in main.int8_modes) + f"; default {default}"
    if target.usable_dla_cores:
        cell += "; implicit with DLA" if target.trt_version and target.trt_version[0] <= 10 else ""
    source = f"rule file `{main.id}`: {main.gates['explicit_int8'].source}" if "explicit_int8" in main.gates else main.id
    if target.usable_dla_cores and target.trt_version and target.trt_version[0] <= 10:
        source += f"; DLA: {rules.select(target, 'dla').gates['dla_qdq'].source}"
    return cell, source


def _cell(text: str | None) -> str:
    return "-" if text in (None, "") else str(text).replace("|", "\\|")


def render() -> str:
    lines = [HEADER, "| target | JetPack | L4T | TensorRT | CUDA | CC | DLA cores | INT8 path | trtexec build flags | Python API |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    notes: list[str] = []
    for target in all_targets():
        if target.backend != "tensorrt":
            lines.append(f"| `{target.name}` | - | - | - | - | - | - | explicit (Q/DQ, ONNX Runtime) | - | - |")
            notes += [f"### `{target.name}`", "", f"- backend: {target.sources.get('backend', '')}", ""]
            continue
        int8, int8_source = int8_cell(target)
        flags, api, build_sources = build_path(target)
        dla = f"{target.dla_cores} / {target.usable_dla_cores}"
        l4t = target.l4t or "not verified"
        lines.append(f"| `{target.name}` | {_cell(target.jetpack)} | {l4t} | {_cell(target.tensorrt)} | {_cell(target.cuda)} "
                     f"| {_cell(target.compute_capability)} | {dla} | {int8} | {flags} | {api} |")
        support = target.dla_support
        dla_source = target.sources.get("dla_cores", "")
        if support is not None:
            dla_source += f"; usable: {support.reason} ({target.sources.get('dla_usable_cores') or support.source})"
        notes += [f"### `{target.name}`", ""]
        notes += [f"- {field}: {_cell(target.sources.get(field, ''))}" for field in ("jetpack", "l4t", "tensorrt", "cuda", "compute_capability")]
        notes += [f"- DLA cores: {_cell(dla_source)}", f"- INT8 path: {_cell(int8_source)}"]
        notes += [f"- {_cell(s)}" for s in build_sources] + [""]
    return "\n".join(lines + ["", "## Sources", ""] + notes).rstrip() + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m edgeq.check.matrix docs/version-matrix.md", file=sys.stderr)
        return 2
    write_text(Path(argv[0]), render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
