"""docs/check-rules.md, generated from the rule files so the page cannot drift from what the check does.

Regenerate with ``python -m edgeq.check.docs docs/check-rules.md``; tests/test_check_docs.py fails when it is stale.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from edgeq.atomic import write_text
from edgeq.check.rules import Rule, RuleFile, all_rule_files

HEADER = """# `edgeq check`: the rules it knows

Generated from `edgeq/check/rules/*.yaml` by `python -m edgeq.check.docs docs/check-rules.md`: do not edit by hand.
Source keys in square brackets (`[OTRT-ops]`, `[NvInfer-10.3]`...) are those of the project brief
`trt-jetson-facts.md` §10; the parser's op support per version is `edgeq/check/data/onnx-tensorrt-op-support.csv`
(a copy of the brief's CSV, parsed from onnx-tensorrt `docs/operators.md`). `[U]` marks a fact not re-verified.

Verdicts: **int8** (runs in INT8), **int8-passthrough** (moves INT8 data, or is a constant / shape computation with
no activations), **fallback** (runs in FP16/FP32, with the reason), **unsupported** (the parser rejects it: a blocker);
with `--dla`: **dla** or **gpu-fallback** with the limit it breaks. MACs are counted for Conv, ConvTranspose, Gemm and
MatMul at batch 1. `edgeq check` exits 0 when the model will build (fallbacks allowed), 1 on a failed blocking gate,
2 on bad input. The `local` target (ONNX Runtime on the CPU) has its own file: verdicts there describe ONNX Runtime's
INT8 (QDQ) CPU kernels, and no standard ONNX op blocks.

Supporting a new TensorRT version means adding a rule file whose `versions` range covers it (a file may `extends`
another and replace or add rules by id); no code changes unless a rule needs a new fact.
"""


def _limit(rule: Rule) -> str:
    if rule.max is not None:
        return f"≤ {rule.max:g}"
    if rule.min is not None:
        return f"≥ {rule.min:g}"
    if rule.equals is not None:
        return f"= {str(rule.equals).lower() if isinstance(rule.equals, bool) else rule.equals}"
    if rule.one_of is not None:
        return "one of " + ", ".join(map(str, rule.one_of))
    if rule.multiple_of is not None:
        return f"multiple of {rule.multiple_of}"
    if rule.integer:
        return "integer"
    return f"< {rule.below_fact}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _versions(rule_file: RuleFile) -> str:
    return f"{rule_file.versions.min} ≤ v < {rule_file.versions.below}" if rule_file.versions else "any"


T = TypeVar("T")


def _grouped(files: Iterable[RuleFile], key: Callable[[RuleFile], T]) -> list[tuple[T, list[str]]]:
    """Distinct values of ``key`` over ``files``, each with the ids of the files that have it."""
    groups: dict[str, tuple[T, list[str]]] = {}
    for rule_file in files:
        value = key(rule_file)
        if value:
            groups.setdefault(repr(value), (value, []))[1].append(rule_file.id)
    return list(groups.values())


def _applies_table(files: list[RuleFile]) -> list[str]:
    lines = ["## Which rule file applies", "",
             "| file | unit | backend | TensorRT versions | parser ops (CSV column) | opsets | INT8 modes | DLA takes Q/DQ |",
             "|---|---|---|---|---|---|---|---|"]
    for f in files:
        parser = f.parser
        opsets = "-" if parser is None else f"{parser.opset.min or ''}..{parser.opset.max or ''}"
        qdq = ("yes" if f.accepts_qdq else "no") if f.unit == "dla" else "-"
        lines.append(f"| `{f.id}` | {f.unit} | {f.backend} | {_versions(f)} | {parser.op_support_column if parser else '-'} "
                     f"| {opsets} | {', '.join(f.int8_modes) or '-'} | {qdq} |")
    lines += ["", "Parser sources:", ""]
    lines += [f"- `{f.id}`: {_cell(f.parser.source)}" for f in files if f.parser]
    return lines + [""]


def _op_lists(files: list[RuleFile], field: str, title: str) -> list[str]:
    lines = []
    for value, ids in _grouped(files, lambda f: getattr(f, field)):
        lines += [f"**{title}** ({', '.join(f'`{i}`' for i in ids)}): {', '.join(value.ops)}.", f"Source: {value.source}", ""]
    return lines


def _reasons(files: list[RuleFile], field: str, title: str) -> list[str]:
    lines = []
    for value, ids in _grouped(files, lambda f: tuple(sorted(getattr(f, field).items()))):
        lines += [f"**{title}** ({', '.join(f'`{i}`' for i in ids)}):", ""]
        lines += [f"- {op}: {_cell(reason)}" for op, reason in value] + [""]
    return lines


def _rules_table(files: list[RuleFile]) -> list[str]:
    lines = ["| rule | ops | fact | limit | verdict when broken | reason shown | source | files |", "|---|---|---|---|---|---|---|---|"]
    for rule, ids in _rule_groups(files):
        lines.append(f"| `{rule.id}` | {', '.join(rule.ops)} | `{rule.fact}` | {_limit(rule)} | {rule.verdict} "
                     f"| {_cell(rule.reason)} | {_cell(rule.source)} | {', '.join(ids)} |")
    return lines + [""]


def _rule_groups(files: list[RuleFile]) -> list[tuple[Rule, list[str]]]:
    groups: dict[Rule, list[str]] = {}
    for rule_file in files:
        for rule in rule_file.rules:
            groups.setdefault(rule, []).append(rule_file.id)
    return list(groups.items())


def _gates(files: list[RuleFile]) -> list[str]:
    lines = ["| gate | checks | source | files |", "|---|---|---|---|"]
    groups: dict[tuple[str, str, str], list[str]] = {}
    for f in files:
        for gate_id, info in f.gates.items():
            groups.setdefault((gate_id, info.title, info.source), []).append(f.id)
    for (gate_id, title, source), ids in groups.items():
        lines.append(f"| `{gate_id}` | {_cell(title)} | {_cell(source)} | {', '.join(ids)} |")
    return lines + [""]


def _section(title: str, files: list[RuleFile]) -> list[str]:
    lines = [f"## {title}", ""]
    for field, label in (("int8_ops", "Runs in INT8"), ("int8_elementwise_ops", "Runs in INT8 fused with the layer before it"),
                         ("passthrough_ops", "INT8 pass-through"),
                         ("folded_ops", "Folded (no activations)"), ("dla_ops", "Has a DLA layer")):
        lines += _op_lists(files, field, label)
    lines += _reasons(files, "fallback_reasons", "Fallback reasons")
    lines += _reasons(files, "dla_op_reasons", "Why an op has no DLA layer")
    lines += _reasons(files, "dla_disputed", "DLA verdicts NVIDIA's sources disagree on (marked 'disputed' in `edgeq check`)")
    if any(f.rules for f in files):
        lines += ["### Limits", ""] + _rules_table(files)
    lines += ["### Whole-model gates", "", "Blocking when failed: `fast_int8`, `opset`, `parser`, `dla_static_shapes`, `dla_qdq`; "
              "`grouped_conv_int8`, `explicit_int8`, `implicit_parser_tensors` and `dla_available` only warn "
              "(a target whose TensorRT has no DLA is checked for the GPU only).", ""] + _gates(files)
    not_checked = _grouped(files, lambda f: f.not_checked)
    if not_checked:
        lines += ["### Not checked offline", ""]
        for value, ids in not_checked:
            lines += [f"- {_cell(item)} ({', '.join(ids)})" for item in value]
        lines.append("")
    return lines


def render() -> str:
    """The whole page."""
    files = [f for f in all_rule_files() if not f.abstract]
    gpu = [f for f in files if f.unit == "gpu"]
    dla = [f for f in files if f.unit == "dla"]
    cpu = [f for f in files if f.unit == "cpu"]
    lines = [HEADER, *_applies_table(files), *_section("TensorRT GPU", gpu), *_section("TensorRT DLA", dla),
             *_section("ONNX Runtime CPU (the `local` target)", cpu)]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m edgeq.check.docs docs/check-rules.md", file=sys.stderr)
        return 2
    write_text(Path(argv[0]), render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
