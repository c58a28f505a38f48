"""docs/check-rules.md is generated from the rule files and must match them."""

from __future__ import annotations

from pathlib import Path

from edgeq.check import docs, rules

PAGE = Path(__file__).resolve().parent.parent / "docs" / "check-rules.md"


def test_page_is_up_to_date():
    assert PAGE.read_text(encoding="utf-8") == docs.render(), "regenerate: python -m edgeq.check.docs docs/check-rules.md"


def test_page_lists_every_rule_and_family_with_sources():
    page = docs.render()
    for rule_file in rules.all_rule_files():
        if not rule_file.abstract:
            assert f"`{rule_file.id}`" in page
        for rule in rule_file.rules:
            assert f"`{rule.id}`" in page and rule.source.split("[")[0].strip()[:40] in page
