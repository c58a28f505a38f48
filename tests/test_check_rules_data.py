"""The rule files themselves: every one valid, every op a real ONNX op, every target covered, selection by data."""

from __future__ import annotations

import shutil

import onnx
import pytest

from edgeq import targets
from edgeq.check import op_support, rules
from edgeq.check.facts import FACTS
from edgeq.errors import InputError
from tests.check_graphs import target


def concrete() -> list[rules.RuleFile]:
    return [f for f in rules.all_rule_files() if not f.abstract]


def test_every_op_named_in_the_rules_is_an_onnx_op():
    for rule_file in concrete():
        named = set()
        for field in ("int8_ops", "passthrough_ops", "folded_ops", "dla_ops"):
            named |= rule_file.ops_of(field)
        named |= set(rule_file.fallback_reasons) | set(rule_file.dla_op_reasons)
        named |= {op for rule in rule_file.rules for op in rule.ops if op != "*"}
        parser_ops = op_support.table("trt8.5")  # also lists legacy ops (ScaledTanh...) that onnx.defs dropped
        unknown = sorted(op for op in named if not onnx.defs.has(op) and op not in parser_ops)
        assert not unknown, f"{rule_file.id}: not ONNX ops: {unknown}"


def test_every_rule_names_a_known_fact_and_has_a_source():
    for rule_file in concrete():
        for rule in rule_file.rules:
            assert rule.fact in FACTS, f"{rule_file.id}/{rule.id}: unknown fact {rule.fact}"
            assert rule.below_fact is None or rule.below_fact in FACTS
            assert rule.source.strip(), f"{rule_file.id}/{rule.id} has no source"


def test_every_parser_column_exists_in_the_shipped_csv():
    for rule_file in concrete():
        if rule_file.parser:
            assert op_support.table(rule_file.parser.op_support_column)["Conv"].supported


@pytest.mark.parametrize("profile", targets.all_targets(), ids=lambda t: t.name)
def test_every_shipped_target_has_exactly_one_rule_file_and_a_dla_file_exactly_when_its_tensorrt_drives_the_dla(profile):
    assert rules.select(profile, "main").family is not None
    if profile.usable_dla_cores:
        assert rules.select(profile, "dla").unit == "dla"
    elif profile.dla_cores:  # DLA hardware, but this TensorRT has none: the DLA files must agree with targets.dla_support
        with pytest.raises(InputError, match="no DLA rules cover"):
            rules.select(profile, "dla")


@pytest.mark.parametrize(("version", "has_dla"), [("8.2.1", True), ("8.6.2", True), ("10.3.0", True), ("10.7.0", True),
                                                  ("10.8.0", False), ("10.16.2", False), ("11.3.0", False), ("11.4.0", False),
                                                  ("11.4.1", True)])
def test_dla_files_cover_exactly_the_tensorrt_releases_that_drive_the_agx_orin_dla(version, has_dla):
    profile = target("jetson-orin", tensorrt=version)
    assert profile.dla_support.available is has_dla and bool(profile.usable_dla_cores) is has_dla
    if has_dla:
        assert rules.select(profile, "dla").versions.contains(profile.trt_version)
    else:
        with pytest.raises(InputError, match="no DLA rules cover"):
            rules.select(profile, "dla")


def test_tensorrt_11_drives_the_dla_on_agx_orin_only():
    nx = target("jetson-orin-nx", tensorrt="11.4.1")
    assert not nx.dla_support.available and "AGX Orin only" in nx.dla_support.reason and nx.usable_dla_cores == 0


@pytest.mark.parametrize(("version", "family"), [("8.2.1", "8.2"), ("8.5.2", "8.5"), ("8.6.2", "8.6"), ("10.3.0", "10"),
                                                 ("10.16.2", "10"), ("11.4.1", "11")])
def test_family_is_chosen_by_the_version_range_in_the_data(version, family):
    assert rules.select(target("jetson-orin", tensorrt=version), "main").family == family


def test_a_new_tensorrt_version_is_supported_by_adding_a_file(tmp_path):
    folder = tmp_path / "rules"
    shutil.copytree(rules.rules_dir(), folder)
    trt12 = target("jetson-orin", tensorrt="12.0.1")
    with pytest.raises(InputError, match=r"no check rules cover TensorRT 12\.0\.1"):
        rules.select(trt12, "main", folder)
    (folder / "gpu-trt12.yaml").write_text(
        "id: gpu-trt12\nextends: gpu-trt11\ntitle: TensorRT 12 GPU\nfamily: '12'\nversions: {min: '12.0', below: '13.0'}\n")
    assert rules.select(trt12, "main", folder).id == "gpu-trt12"
    assert rules.select(trt12, "main", folder).int8_modes == ("explicit",)  # inherited from gpu-trt11


def test_overlapping_files_are_refused(tmp_path):
    folder = tmp_path / "rules"
    shutil.copytree(rules.rules_dir(), folder)
    (folder / "gpu-dup.yaml").write_text(
        "id: gpu-dup\nextends: gpu-trt10\ntitle: dup\nfamily: '10'\nversions: {min: '10.2', below: '10.4'}\n")
    with pytest.raises(InputError, match="several check rule files"):
        rules.select(target("jetson-orin"), "main", folder)


def test_a_rule_needs_exactly_one_bound(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "id: bad\ntitle: bad\nunit: gpu\nbackend: tensorrt\nrules:\n"
        "  - {id: r, ops: [Conv], fact: kernel, verdict: fallback, reason: x, source: y, max: 3, min: 1}\n")
    with pytest.raises(InputError, match="exactly one bound"):
        rules.all_rule_files(tmp_path)
