"""Command line of the device agent: ``python3 -m <package> <sub-command> [options]``.

Every sub-command prints exactly one JSON object on stdout and exits 0, or prints
``{"error": ..., "kind": ...}`` and exits 1 (2 for usage errors). Logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from typing import Any, Dict, List, NoReturn, Optional

from . import transfer
from .errors import AgentError
from .probe import probe
from .report import BuildOptions, ErrorReport, Record
from .workdir import BLOB_GRACE, Workdir

DEFAULT_WORKDIR = os.path.join("~", ".edgeq")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise AgentError(AgentError.USAGE, message)


def parse_profiles(values: List[str]) -> Dict[str, List[List[int]]]:
    """``name:MIN:OPT:MAX`` (each dims like 1x3x224x224) as {name: [min, opt, max]}."""
    profiles = {}
    for item in values:
        name, _, rest = item.partition(":")
        try:
            bounds = [[int(d) for d in part.split("x")] for part in rest.split(":")]
        except ValueError:
            bounds = []
        if not name or len(bounds) != 3 or len({len(b) for b in bounds}) != 1:
            raise AgentError(AgentError.USAGE, "bad --profile item {!r}: expected name:MIN:OPT:MAX, e.g. x:1x3x320x320:1x3x640x640:1x3x960x960".format(item))
        profiles[name] = bounds
    return profiles


def parse_shapes(values: List[str]) -> Dict[str, List[int]]:
    """``name:1x3x227x227`` (repeatable, or comma-separated as trtexec takes them)."""
    shapes = {}
    for item in (part for value in values for part in value.split(",") if part):
        name, sep, dims = item.rpartition(":")
        try:
            shapes[name] = [int(d) for d in dims.split("x")]
        except ValueError:
            sep = ""
        if not sep or not name:
            raise AgentError(AgentError.USAGE, "bad --shapes item {!r}: expected name:1x3x224x224".format(item))
    return shapes


def parse_meta(text: Optional[str]) -> Dict[str, Any]:
    if not text:
        return {}
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise AgentError(AgentError.INVALID_INPUT, "--meta is not JSON: {}".format(exc))
    if not isinstance(meta, dict):
        raise AgentError(AgentError.INVALID_INPUT, "--meta must be a JSON object")
    return meta


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="edgeq-device", description=__doc__)
    subs = parser.add_subparsers(dest="command", parser_class=_Parser)
    subs.required = True

    def sub(name: str, help_text: str, workdir: bool = True) -> argparse.ArgumentParser:
        p = subs.add_parser(name, help=help_text)
        if workdir:
            p.add_argument("--workdir", default=DEFAULT_WORKDIR)
        return p

    def threads(p: argparse.ArgumentParser) -> None:
        p.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0: one per core)")

    p = sub("probe", "what this device is and can run", workdir=False)
    p.add_argument("--root", default="/", help="read /proc and /etc under this folder (tests)")

    p = sub("build", "build an engine and its FP32 reference into engines/ID")
    p.add_argument("--engine-id", required=True)
    p.add_argument("--model", required=True, help="FP32 ONNX model")
    p.add_argument("--qdq", help="Q/DQ ONNX model (explicit quantization)")
    p.add_argument("--cache", help="TensorRT calibration cache (implicit quantization)")
    p.add_argument("--quantization", choices=["implicit", "explicit"], required=True)
    p.add_argument("--precision", choices=["int8", "fp16", "fp32"], required=True)
    p.add_argument("--fp16-fallback", action="store_true")
    p.add_argument("--dla-core", type=int)
    p.add_argument("--gpu-fallback", action="store_true")
    p.add_argument("--workspace-mb", type=int)
    p.add_argument("--backend", choices=["auto", "tensorrt", "onnxruntime"], default="auto")
    p.add_argument("--shapes", action="append", default=[])
    p.add_argument("--profile", action="append", default=[], help="optimization profile NAME:MIN:OPT:MAX, e.g. x:1x3x320x320:1x3x640x640:1x3x1280x1280")
    p.add_argument("--meta", help="JSON object recorded in build.json")
    threads(p)

    p = sub("evaluate", "run engine and FP32 reference on a .npz, save their scores")
    p.add_argument("--engine-id", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--batch", type=int)
    threads(p)

    p = sub("bench", "latency of the engine and of the FP32 reference")
    p.add_argument("--engine-id", required=True)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--batch", type=int, default=1)
    threads(p)

    p = sub("smoke", "run the engine on inputs and compare with the host's expected outputs")
    p.add_argument("--engine-id", default="current")
    p.add_argument("--data", required=True)
    p.add_argument("--min-agreement", type=float, default=0.99)
    p.add_argument("--min-cosine", type=float, default=0.99)
    threads(p)

    p = sub("activate", "point 'current' at an engine")
    p.add_argument("--engine-id", required=True)
    p.add_argument("--meta", help="JSON object recorded in history.json")
    p = sub("rollback", "point 'current' back at the previously activated engine")
    p.add_argument("--meta", help="JSON object recorded in history.json")
    sub("status", "the active engine, its build.json, the history")
    p = sub("export", "pack a built engine for another device of the same class")
    p.add_argument("--engine-id", required=True)
    p.add_argument("--out", required=True)
    p = sub("import", "install an engine another device of the same class built")
    p.add_argument("--engine-id", required=True)
    p.add_argument("--archive", required=True)
    p = sub("gc", "drop old engines (never current or the previous one), unused blobs and leftovers of crashed runs")
    p.add_argument("--keep", type=int, required=True, help="newest engines kept besides current and the previous one")
    p.add_argument("--blob-grace", type=float, default=BLOB_GRACE,
                   help="seconds since a blob was last pushed or used during which it is kept")
    return parser


def run(args: argparse.Namespace) -> Record:
    command = args.command
    if command == "probe":
        return probe(args.root)
    workdir = Workdir.open(args.workdir)  # opening sweeps what crashed runs left
    workdir.note_used(getattr(args, name, None) for name in ("model", "qdq", "cache", "data", "archive"))
    if command in ("build", "evaluate", "bench", "smoke"):
        from . import agent  # numpy and the backend: only the commands that run models pay for them
    if command == "build":
        options = BuildOptions(
            model=args.model, quantization=args.quantization, precision=args.precision, qdq=args.qdq,
            cache=args.cache, fp16_fallback=args.fp16_fallback, dla_core=args.dla_core,
            gpu_fallback=args.gpu_fallback, workspace_mb=args.workspace_mb, shapes=parse_shapes(args.shapes),
            profiles=parse_profiles(args.profile),
            threads=args.threads,
        )
        return agent.build(args.workdir, args.engine_id, options, args.backend, parse_meta(args.meta))
    if command == "evaluate":
        return agent.evaluate(args.workdir, args.engine_id, args.data, args.batch, args.threads)
    if command == "bench":
        return agent.bench(args.workdir, args.engine_id, args.batch, args.warmup, args.iterations, args.threads)
    if command == "smoke":
        return agent.smoke(args.workdir, args.engine_id, args.data, args.min_agreement, args.min_cosine, args.threads)
    if command == "export":
        return transfer.export_engine(args.workdir, args.engine_id, args.out)
    if command == "import":
        return transfer.import_engine(args.workdir, args.engine_id, args.archive)
    if command == "activate":
        return workdir.activate(args.engine_id, parse_meta(args.meta))
    if command == "rollback":
        return workdir.rollback(parse_meta(args.meta))
    if command == "status":
        return workdir.status()
    return workdir.gc(args.keep, args.blob_grace)


def _emit(payload: Dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


def main(argv: Optional[List[str]] = None) -> int:
    try:
        _emit(run(_parser().parse_args(argv)).to_dict())
        return 0
    except AgentError as exc:
        _emit(ErrorReport(exc.message, exc.kind).to_dict())
        return 2 if exc.kind == AgentError.USAGE else 1
    except Exception as exc:  # report, never a bare traceback on stdout
        traceback.print_exc(file=sys.stderr)
        _emit(ErrorReport("{}: {}".format(type(exc).__name__, exc), "internal").to_dict())
        return 1
