"""The command line's one error boundary: usage errors are one line and exit 2, known errors their documented
code, anything unexpected exit 4 with a saved traceback; never a bare traceback. Also from a fresh install."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.cli import run_edgeq

ROOT = Path(__file__).resolve().parent.parent
# Every command, as typed, with the help and usage-error checks below.
COMMANDS = [["check"], ["calibrate"], ["deploy"], ["smoke"], ["rollout"], ["rollback"], ["status"], ["gc"], ["targets"],
            ["targets", "show"], ["recipe", "validate"], ["recipe", "schema"]]


def _one_line_error(code: int, stderr: str, expected_code: int = 2) -> str:
    assert code == expected_code, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_usage_error_is_one_line_and_exit_2(command: list[str]) -> None:
    result = run_edgeq(*command, "--bogus")
    line = _one_line_error(result.code, result.stderr)
    assert "--bogus" in line and f"edgeq {' '.join(command)} --help" in line


def test_deploy_bogus() -> None:
    result = run_edgeq("deploy", "--bogus")
    assert _one_line_error(result.code, result.stderr).startswith("error: No such option: --bogus")


def test_an_unexpected_error_exits_4_with_one_line_and_a_saved_traceback(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from edgeq.cli import run\n"
        "from edgeq.cli.app import app\n"
        "@app.command('explode')\n"
        "def explode() -> None:\n"
        "    {}['missing key \\x1b[31m [/b]']\n"
        "sys.exit(run(['explode']))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "TMPDIR": str(tmp_path)})
    line = _one_line_error(done.returncode, done.stderr, expected_code=4)
    assert "internal error, please report: KeyError" in line and "[/b]" in line and "\x1b" not in line
    saved = Path(re.search(r"traceback saved to (\S+)\)", line).group(1))
    assert saved.parent == tmp_path and stat.S_IMODE(saved.stat().st_mode) == 0o600
    text = saved.read_text()
    assert "Traceback (most recent call last)" in text and "command: edgeq explode" in text and "KeyError" in text


def test_markup_and_escapes_in_an_error_are_printed_literally(tmp_path: Path) -> None:
    path = tmp_path / "a[/b]\x1b[31m.yaml"
    result = run_edgeq("recipe", "validate", path)
    line = _one_line_error(result.code, result.stderr)
    assert "a[/b]" in line and "\x1b" not in line and "recipe file not found" in line


@pytest.mark.slow
def test_the_wheel_in_an_empty_venv_answers_help_and_usage_errors(tmp_path: Path) -> None:
    """Only the wheel and what it declares: every import edgeq makes must come from its dependencies."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    (wheel,) = tmp_path.glob("edgeq-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True,
                               timeout=1200)
    assert installed.returncode == 0, installed.stderr[-2000:]
    edgeq = env_dir / "bin" / "edgeq"
    clean_env = {"PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "200", "NO_COLOR": "1"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(edgeq), *args], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=clean_env)

    assert run("--version").stdout.strip().startswith("edgeq ")
    for command in COMMANDS:
        helped = run(*command, "--help")
        assert helped.returncode == 0 and "Usage" in helped.stdout, (command, helped.stderr)
        wrong = run(*command, "--bogus")
        _one_line_error(wrong.returncode, wrong.stderr)
    targets = run("targets", "--json")
    assert targets.returncode == 0 and "jetson-orin" in targets.stdout  # the profiles travel in the wheel


def test_rollback_without_a_target_for_a_host_exits_2_before_any_work(tmp_path: Path) -> None:
    from tests.calibrate_nets import fire_net, write_recipe

    recipe = write_recipe(tmp_path / "r", fire_net())
    result = run_edgeq("rollback", recipe, "--host", "nvidia@127.0.0.9")
    line = _one_line_error(result.code, result.stderr)
    assert "no target profile" in line and "--target" in line
    assert not (recipe.parent / "edgeq-out").exists()  # nothing calibrated, nothing contacted
