"""Every `noqa` names the rules it silences and says why.

ruff's RUF100 (run by tests/run.sh) already fails a `noqa` naming a rule the config does not enable or that is not
needed; it does not ask for the reason.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("edgeq", "tests", "bench", "recipes")
NOQA = re.compile(r"#\s*noqa\b(?P<rest>.*)$")
EXPLAINED = re.compile(r":\s*[A-Z]+[0-9]+(?:,\s*[A-Z]+[0-9]+)*\s+\S.*")  # ": B006, E731 (the reason)"


def _unexplained(text: str) -> list[int]:
    """Line numbers of the `noqa` comments in ``text`` that name no rule or give no reason after the rules."""
    return [number for number, line in enumerate(text.splitlines(), 1)
            if (match := NOQA.search(line)) and not EXPLAINED.fullmatch(match["rest"])]


def test_the_check_catches_a_bare_or_unexplained_noqa() -> None:
    marker = "#" + " noqa"
    text = "\n".join([f"x = 1  {marker}", f"y = 2  {marker}: E731", f"z = 3  {marker}: E731 (a named callback)",
                      f"w = 4  {marker}: B006, E731  typer needs a literal default"])
    assert _unexplained(text) == [1, 2]


def test_every_noqa_names_its_rules_and_a_reason() -> None:
    bad = [f"{path.relative_to(ROOT)}:{number}"
           for folder in FOLDERS for path in sorted((ROOT / folder).rglob("*.py"))
           for number in _unexplained(path.read_text(encoding="utf-8"))]
    assert not bad, "a noqa without its rule and reason: " + ", ".join(bad)
