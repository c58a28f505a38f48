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


def parse_options(text: str) -> BuildOptions:
    """``--options``: the build options JSON object the host sends (report.BuildOptions)."""
    try:
        return BuildOptions.parse(json.loads(text))
    except ValueError as exc:  # json.JSONDecodeError is a ValueError too
        raise AgentError(AgentError.USAGE, f"--options: {exc}") from exc


def parse_meta(text: Optional[str]) -> Dict[str, Any]:
    if not text:
        return {}
    try:
        meta = json.loads(text)
    except ValueError as exc:
        raise AgentError(AgentError.INVALID_INPUT, f"--meta is not JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise AgentError(AgentError.INVALID_INPUT, "--meta must be a JSON object")
    return meta


def parse_axes(text: Optional[str]) -> Optional[Dict[str, int]]:
    """``--batch-axes``: a JSON object, input name -> the axis of its samples (-1: none), as batches.stored_axes."""
    if text is None:
        return None
    try:
        axes = json.loads(text)
    except ValueError as exc:
        raise AgentError(AgentError.USAGE, f"--batch-axes is not JSON: {exc}") from exc
    if not isinstance(axes, dict) or not all(isinstance(a, int) and not isinstance(a, bool) and a >= -1 for a in axes.values()):
        raise AgentError(AgentError.USAGE, f"--batch-axes must be a JSON object of input name -> axis (-1: none), found {text}")
    return axes


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
    p.add_argument("--options", required=True, help="JSON object: model, qdq, cache, precision, quantization, ...")
    p.add_argument("--backend", choices=["auto", "tensorrt", "onnxruntime"], default="auto")
    p.add_argument("--meta", help="JSON object recorded in build.json")

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
    p.add_argument("--batch-axes", help="JSON object: input name -> the axis of its samples (-1: none)")
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
    options = parse_options(args.options) if command == "build" else None
    used = [options.model, options.qdq, options.cache] if options else [getattr(args, n, None) for n in ("data", "archive")]
    workdir.note_used(used)
    if command in ("build", "evaluate", "bench", "smoke"):
        from . import agent  # numpy and the backend: only the commands that run models pay for them
    if options is not None:
        return agent.build(args.workdir, args.engine_id, options, args.backend, parse_meta(args.meta))
    if command == "evaluate":
        return agent.evaluate(args.workdir, args.engine_id, args.data, args.batch, args.threads)
    if command == "bench":
        return agent.bench(args.workdir, args.engine_id, args.batch, args.warmup, args.iterations, args.threads,
                           parse_axes(args.batch_axes))
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
    except Exception as exc:  # noqa: BLE001 (report, never a bare traceback on stdout)
        traceback.print_exc(file=sys.stderr)
        _emit(ErrorReport(f"{type(exc).__name__}: {exc}", "internal").to_dict())
        return 1
