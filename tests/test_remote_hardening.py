"""Faults on real loopback SSH devices: big and endless output, a device that vanishes, a crash between the
switch and the history, leaked files and gc, hostile text from a device."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edgeq.device.workdir import CRASH_ENV, CRASH_EXIT, LEFTOVER_AGE
from edgeq.errors import DeviceError
from edgeq.remote import SSHTransport, Timeouts, push_agent, push_blobs, run_agent
from edgeq.remote.agent import AgentInvocation
from tests.cli import run_edgeq
from tests.devices.fleet import Device, Fleet
from tests.test_device_ort import squeezenet_like

pytestmark = pytest.mark.ssh

FAST = Timeouts(connect=5.0, channel=5.0, command=60.0)


@pytest.fixture
def device(ssh_fleet) -> Device:
    fleet: Fleet = ssh_fleet(1)
    return fleet[0]


@pytest.fixture
def transport(device: Device) -> Iterator[SSHTransport]:
    with SSHTransport.open(device.host, FAST) as opened:
        yield opened


def _inventory(device: Device, folder: Path, python: str | None = None) -> Path:
    host = device.host
    path = folder / "fleet.yaml"
    fields = {"address": host.address, "user": host.user, "key": str(host.key), "known_hosts": str(host.known_hosts),
              "python": python or host.python}
    path.write_text(yaml.safe_dump({"hosts": {"dev1": fields}}))
    return path


def _engines(transport: SSHTransport, folder: Path, ids: tuple[str, ...] = ("a", "b", "c")) -> AgentInvocation:
    """Build FP32 engines on the device from a pushed model; activate the first two."""
    model = squeezenet_like(folder / "m.onnx", size=16, batch=1)
    remote = push_blobs(transport, [model]).remote[model]
    agent = push_agent(transport)
    for engine_id in ids:
        options = {"model": remote, "quantization": "explicit", "precision": "fp32", "threads": 1}
        run_agent(transport, agent, "build", ["--engine-id", engine_id, "--options", json.dumps(options),
                                             "--backend", "onnxruntime"])
    for engine_id in ids[:2]:
        run_agent(transport, agent, "activate", ["--engine-id", engine_id])
    return agent


def test_a_20_mb_agent_answer_is_read_in_under_2_s(transport: SSHTransport) -> None:
    source = "import json, sys; sys.stdout.write(json.dumps({'scores': 'x' * 20000000}) + '\\n')"
    started = time.perf_counter()
    result = transport.run([transport.python, "-c", source])
    answer = result.json()
    seconds = time.perf_counter() - started
    assert len(answer["scores"]) == 20_000_000
    assert seconds < 2.0, f"a 20 MB answer took {seconds:.2f} s"


def test_output_beyond_the_cap_is_refused_and_stderr_keeps_its_tail(transport: SSHTransport) -> None:
    transport.output_limit = 1024 * 1024
    started = time.perf_counter()
    with pytest.raises(DeviceError, match=r"printed more than 1 MiB; edgeq stopped reading"):
        transport.run(["sh", "-c", "yes edgeq"], timeout=30)  # endless output
    assert time.perf_counter() - started < 10
    noisy = "import sys; sys.stderr.write('noise\\n' * 1000000); sys.stderr.write('the real reason\\n'); sys.exit(3)"
    with pytest.raises(DeviceError, match=r"exited with 3: .*the real reason"):
        transport.run([transport.python, "-c", noisy]).check()
    assert transport.run(["true"]).ok  # the connection is still usable


def test_a_device_that_drops_off_the_network_fails_the_command_within_its_keepalive_bound(device: Device) -> None:
    timeouts = Timeouts(connect=3.0, channel=3.0, command=120.0, keepalive=0.5, dead_peer=2.0)
    with SSHTransport.open(device.host, timeouts) as transport:
        transport.run(["true"]).check()

        def drop_when_running() -> None:
            deadline = time.monotonic() + 30
            while not any("sleep" in argv and "77" in argv for argv in device.session_commands()):
                if time.monotonic() > deadline:
                    return
                time.sleep(0.05)
            device.drop()

        dropper = threading.Thread(target=drop_when_running)
        dropper.start()
        started = time.monotonic()
        try:
            with pytest.raises(DeviceError, match="connection was lost"):
                transport.run(["sleep", "77"])
        finally:
            dropper.join()
            device.undrop()
        assert time.monotonic() - started < 15  # keepalive 0.5 s + dead peer 2 s, not the command's 120 s


def test_a_crash_between_switch_and_history_on_a_device_leaves_status_and_rollback_right(
    device: Device, transport: SSHTransport, tmp_path: Path
) -> None:
    agent = _engines(transport, tmp_path)
    argv = ["env", f"{CRASH_ENV}=switched", *agent.argv("activate", ["--workdir", transport.workdir, "--engine-id", "c"])]
    assert transport.run(argv).exit_code == CRASH_EXIT
    shown = run_edgeq("status", "--inventory", _inventory(device, tmp_path), "--json")
    assert shown.code == 0, shown.stderr
    (row,) = yaml.safe_load(shown.stdout)
    assert (row["engine"], row["previous"]) == ("c", "b")
    assert run_agent(transport, agent, "rollback")["current"] == "b"
    assert run_agent(transport, agent, "status")["previous"] == "a"


def test_gc_frees_what_crashed_runs_leaked_and_old_engines(device: Device, transport: SSHTransport, tmp_path: Path) -> None:
    agent = _engines(transport, tmp_path, ("a", "b", "c", "d"))
    run_agent(transport, agent, "activate", ["--engine-id", "d"])  # current d, previous b (a, c removable)
    old = str(int(time.time() - 2 * LEFTOVER_AGE))
    leaked = [transport.path("blobs", ".upload-" + "0" * 64 + "-dead"), transport.path("engines", ".staging-x-1"),
              transport.path("engines", ".export-y.tar")]
    script = (
        "import os, sys\n"
        "for path in sys.argv[2:]:\n"
        "    if 'staging' in path:\n"
        "        os.makedirs(path); open(os.path.join(path, 'engine.bin'), 'wb').write(bytes(3000000))\n"
        "    else:\n"
        "        open(path, 'wb').write(bytes(3000000))\n"
        "    os.utime(path, (int(sys.argv[1]), int(sys.argv[1])))\n"
    )
    transport.run([transport.python, "-c", script, old, *leaked]).check()
    host = device.host
    result = run_edgeq("gc", "--host", f"{host.user}@{host.address}", "--key", host.key, "--known-hosts",
                       host.known_hosts, "--python", host.python, "--keep", "0", "--json")
    assert result.code == 0, result.stderr
    (report,) = yaml.safe_load(result.stdout)
    assert sorted(report["removed"]) == ["a", "c"] and sorted(report["kept"]) == ["b", "d"]
    assert sorted(report["swept"]) == sorted(os.path.relpath(p, transport.workdir) for p in leaked)
    assert report["bytes_freed"] >= 3 * 3_000_000
    left = transport.run(["ls", "-A", transport.path("engines"), transport.path("blobs")]).check().stdout
    assert ".staging" not in left and ".upload" not in left and ".export" not in left
    assert sorted(os.listdir(device.home / ".edgeq" / "engines")) == ["b", "d"]


def test_the_work_folder_and_pushed_blobs_are_private(device: Device, transport: SSHTransport, tmp_path: Path) -> None:
    _engines(transport, tmp_path, ("a",))
    work = device.home / ".edgeq"
    assert stat.S_IMODE(work.stat().st_mode) == 0o700
    blobs = list((work / "blobs").iterdir())
    assert blobs and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in blobs)


def test_escapes_and_markup_from_a_device_are_shown_literally(device: Device, transport: SSHTransport, tmp_path: Path) -> None:
    evil = transport.path("evil-python")
    transport.run(["mkdir", "-p", transport.workdir]).check()
    transport.run(["sh", "-c", f"printf '#!/bin/sh\\nprintf \"\\\\033[2J\\\\033]0;pwned\\\\007[/b] [red]boom\\\\n\" >&2\\nexit 1\\n' > {evil}"
                   f" && chmod +x {evil}"]).check()
    shown = run_edgeq("status", "--inventory", _inventory(device, tmp_path, python=evil))
    assert shown.code == 3
    assert "\x1b" not in shown.stdout + shown.stderr and "\x07" not in shown.stdout
    assert "[/b]" in shown.stdout and "[red]boom" in shown.stdout and "Traceback" not in shown.stderr
    host = device.host
    cleaned = run_edgeq("gc", "--host", f"{host.user}@{host.address}", "--key", host.key, "--known-hosts",
                        host.known_hosts, "--python", evil)
    assert cleaned.code == 3 and "[red]boom" in cleaned.stdout and "\x1b" not in cleaned.stdout + cleaned.stderr
