"""The transport protocol, over SSH to a loopback device and locally: values arrive verbatim, files round-trip."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from edgeq.errors import DeviceError, InputError
from edgeq.remote import LocalTransport, SSHTransport, Timeouts
from edgeq.remote.transport import resolve_workdir

FAST = Timeouts(connect=2.0, channel=2.0, command=10.0)
NASTY = "a b  'single' \"double\" $(touch {marker}) `touch {marker}` ; touch {marker} | * ~ \\ $HOME\nline2"


def test_every_argument_arrives_verbatim_and_nothing_executes(transport):
    marker = transport.path("pwned")
    value = NASTY.format(marker=marker)
    echoed = transport.run(["printf", "%s", value]).check()
    assert echoed.stdout == value
    as_list = transport.run([transport.python, "-c", "import json,sys; print(json.dumps(sys.argv[1:]))", value, "", "-x"])
    assert as_list.json() == [value, "", "-x"]
    assert not transport.run(["test", "-e", marker]).ok  # test -e exits 1: the file was never made


def test_exit_codes_and_output_come_back(transport):
    result = transport.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    with pytest.raises(DeviceError, match=r"exited with 3: err"):
        result.check()
    assert transport.run(["no-such-program-edgeq"]).exit_code == 127


def test_command_timeout_is_a_device_error_and_the_command_is_stopped(transport):
    marker = transport.path("late")
    with pytest.raises(DeviceError, match=r"running `sh -c 'sleep 2; touch .*` failed: the command did not finish within 0.3 s"):
        transport.run(["sh", "-c", f"sleep 2; touch {marker}"], timeout=0.3)
    assert transport.run(["true"]).ok  # the connection is still usable
    waited = transport.run(["sh", "-c", f"sleep 2.5; test -e {marker}"])  # outlives the timed-out command's 2 s
    assert waited.exit_code == 1


def test_put_get_round_trip_with_a_hostile_file_name(transport, tmp_path):
    name = "we ird 'q' \"d\" $(touch pwned) `b`.bin"
    local = tmp_path / name
    local.write_bytes(bytes(range(256)) * 4000)
    folder = transport.path("sub dir $(x)")
    transport.run(["mkdir", "-p", folder]).check()
    remote = f"{folder}/{name}"
    sent_before = transport.bytes_sent

    assert transport.put(local, remote) == local.stat().st_size
    assert transport.bytes_sent - sent_before == local.stat().st_size
    remote_hash = transport.run(["sha256sum", remote]).check().stdout.split()[0]
    assert remote_hash == hashlib.sha256(local.read_bytes()).hexdigest()

    back = tmp_path / "back" / name
    received_before = transport.bytes_received
    assert transport.get(remote, back) == local.stat().st_size
    assert back.read_bytes() == local.read_bytes()
    assert transport.bytes_received - received_before == local.stat().st_size
    assert sorted(p.name for p in back.parent.iterdir()) == [name]  # no temp file left


def test_failed_get_leaves_the_local_file_untouched(transport, tmp_path):
    local = tmp_path / "keep.json"
    local.write_text("old")
    with pytest.raises(DeviceError, match=r"absent\.json"):
        transport.get(transport.path("absent.json"), local)
    assert local.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".keep")] == []


def test_put_of_a_missing_local_file_is_an_input_error(transport, tmp_path):
    with pytest.raises(InputError, match="not found"):
        transport.put(tmp_path / "nope", transport.path("nope"))


@pytest.mark.parametrize(
    ("workdir", "expected"),
    [("~/.edgeq", "/home/u/.edgeq"), ("~", "/home/u"), ("rel/w", "/home/u/rel/w"), ("/opt/w/", "/opt/w"), ("~/a b", "/home/u/a b")],
)
def test_workdir_resolution(workdir, expected):
    assert resolve_workdir(workdir, "/home/u", "dev") == expected


def test_workdir_of_another_user_is_refused():
    with pytest.raises(InputError, match="~other/w"):
        resolve_workdir("~other/w", "/home/u", "dev")


@pytest.mark.ssh
def test_workdir_with_spaces_resolves_on_the_device(shared_fleet):
    device = shared_fleet[1]
    host = device.host.model_copy(update={"workdir": "~/my work/$(x)"})
    with SSHTransport.open(host, FAST) as transport:
        assert transport.workdir == f"{device.home}/my work/$(x)"
        transport.run(["mkdir", "-p", transport.workdir]).check()
        assert Path(transport.workdir).is_dir()  # the fleet's devices share this machine's disk


def test_local_target_syncs_and_runs_the_agent_like_a_device(tmp_path):
    from edgeq.remote import push_agent, push_blobs, run_agent

    model = tmp_path / "model.onnx"
    model.write_bytes(b"not really onnx")
    with LocalTransport(sys.executable, str(tmp_path / "work dir"), FAST) as local:
        first, second = push_blobs(local, [model]), push_blobs(local, [model])
        assert (first.bytes_sent, second.bytes_sent) == (model.stat().st_size, 0)
        assert Path(first.remote[model]).read_bytes() == model.read_bytes()
        agent = push_agent(local)
        assert "onnxruntime" in run_agent(local, agent, "probe", pass_workdir=False)["backends"]
