"""Recipes and inventories from hostile or broken files: alias bombs, huge files, deep nesting, FIFOs.

The bombs run the real command line in a child process whose time and peak memory are measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest
import yaml

from edgeq import recipe as recipes
from edgeq import safe_yaml
from edgeq.errors import InputError
from edgeq.hosts import load_inventory

BOMB_LEVELS = 9  # 9 aliases per level, 9 levels: 9**9 (387 million) strings once written out


def _levels(indent: str) -> list[str]:
    names = "abcdefghi"[:BOMB_LEVELS]
    lines = [f"{indent}a: &a [" + ",".join(["lol"] * 9) + "]"]
    return lines + [f"{indent}{n}: &{n} [" + ",".join([f"*{p}"] * 9) + "]" for p, n in pairwise(names)]


def _bomb(kind: str) -> str:
    """A recipe whose name, or an Ansible inventory whose user, is 9**9 strings once its aliases are written out."""
    if kind == "recipe":
        return "\n".join([*_levels(""), "name: *i"]) + "\n"
    return "\n".join(["all:", " vars:", *_levels("  "), "  ansible_user: *i", " hosts:", "  cam: {ansible_host: 10.0.0.1}"]) + "\n"


def _measure(*args: str | Path) -> tuple[int, str, float, float, float]:
    """Run `python -m edgeq ARGS` from a fresh parent; exit code, stderr, wall s, CPU s and peak RSS (MB) of the child."""
    probe = (
        "import json, resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "done = subprocess.run([sys.executable, '-m', 'edgeq', *sys.argv[1:]], capture_output=True, text=True, timeout=60)\n"
        "wall = time.perf_counter() - start\n"
        "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(json.dumps([done.returncode, done.stderr, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe, *map(str, args)], capture_output=True, text=True, timeout=120)
    code, stderr, wall, cpu, rss = json.loads(out.stdout)
    return code, stderr, wall, cpu, rss


@pytest.mark.parametrize("kind", ["recipe", "inventory"])
def test_an_alias_bomb_exits_2_at_once_in_little_memory(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"{kind}.yaml"
    path.write_text(_bomb(kind))
    assert path.stat().st_size < 420
    broken = tmp_path / f"broken-{kind}.yaml"
    broken.write_text("name: [unclosed\n")  # the baseline: the same command refusing a small malformed file
    command = ("recipe", "validate") if kind == "recipe" else ("status", "--inventory")
    base_code, _, _, base_cpu, _ = _measure(*command, broken)
    code, stderr, wall, cpu, rss = _measure(*command, path)
    assert base_code == 2 and code == 2 and stderr.count("\n") == 1, stderr
    assert "refused" in stderr and str(path) in stderr
    # CPU time beyond the baseline's (the interpreter's start and imports, which vary by machine): writing out any
    # level of the bomb would cost seconds; wall: a loose guard, the machine may be shared
    assert cpu < base_cpu + 0.25 and wall < 5.0, (cpu, base_cpu, wall)
    assert rss < 200, rss


def test_limits_each_refused_with_its_reason(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    many = "base: &b 1\n" + "".join(f"k{i}: *b\n" for i in range(safe_yaml.MAX_ALIASES + 1))
    deep = "x: " + "[" * (safe_yaml.MAX_DEPTH + 1) + "]" * (safe_yaml.MAX_DEPTH + 1) + "\n"
    cases = {many: "more than 100 aliases", deep: "nested deeper than", "a: &a [*a]\n": "recursive structure",
             _bomb("recipe"): "expands to more than"}
    for text, reason in cases.items():
        with pytest.raises(InputError, match=reason):
            safe_yaml.parse(text, path)
    fine = "defaults: &d {user: edgeq, target: local}\nhosts:\n  a: {<<: *d, address: 10.0.0.1}\n  b: {<<: *d, address: 10.0.0.2}\n"
    assert safe_yaml.parse(fine, path)["hosts"]["b"] == {"user": "edgeq", "target": "local", "address": "10.0.0.2"}


def test_files_beyond_the_size_cap_and_non_files_are_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with big.open("w") as out:
        out.write("name: x\npad: '")
        out.write("x" * safe_yaml.MAX_BYTES)
        out.write("'\n")
    with pytest.raises(InputError, match="larger than 4 MiB"):
        recipes.load(big)
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(InputError, match="not a regular file"):
        recipes.load(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        load_inventory(fifo)
    assert time.monotonic() - started < 1.0
    with pytest.raises(InputError, match="a folder"):
        recipes.load(tmp_path)
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(InputError, match="not UTF-8"):
        recipes.load(tmp_path / "latin1.yaml")


def test_recipe_errors_show_a_short_excerpt_of_a_huge_value(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"name": ["x" * 10_000] * 50, "model": "m.onnx"}))
    with pytest.raises(InputError) as caught:
        recipes.load(path)
    assert "name:" in caught.value.message and len(caught.value.message) < 2000
    assert max(len(line) for line in caught.value.message.splitlines()) < 200
