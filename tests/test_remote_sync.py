"""Content-addressed sync and the agent push, against a loopback SSH device."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from edgeq.errors import DeviceError
from edgeq.remote import SSHTransport, Timeouts, push_agent, push_blobs, run_agent
from edgeq.remote.agent import DEVICE_PACKAGE, pack_agent
from edgeq.remote.sync import DEVICE_SCRIPT
from tests.devices.fleet import DEVICE_PYTHON

pytestmark = pytest.mark.ssh
FAST = Timeouts(connect=2.0, channel=2.0, command=30.0)


@pytest.fixture
def device(ssh_fleet):
    return ssh_fleet(1)[0]


@pytest.fixture
def files(tmp_path) -> list[Path]:
    made = []
    for index, size in enumerate([10, 200_000, 1_500_000]):
        path = tmp_path / f"file {index}.bin"
        path.write_bytes(hashlib.sha256(str(index).encode()).digest() * (size // 32))
        made.append(path)
    (tmp_path / "copy of 0.bin").write_bytes(made[0].read_bytes())  # same content, one blob
    return [*made, tmp_path / "copy of 0.bin"]


def test_second_sync_sends_nothing(device, files):
    with SSHTransport.open(device.host, FAST) as transport:
        first = push_blobs(transport, files)
        assert (first.files_sent, first.files_skipped) == (3, 0)
        assert first.bytes_sent == sum(f.stat().st_size for f in files[:3])
        for file in files:
            blob = Path(first.remote[file])
            assert blob.parent == Path(transport.path("blobs"))
            assert blob.read_bytes() == file.read_bytes()  # the device's disk is this machine's
        assert sorted(p.name for p in blob.parent.iterdir()) == sorted({Path(r).name for r in first.remote.values()})

        second = push_blobs(transport, files)
        assert (second.files_sent, second.files_skipped, second.bytes_sent) == (0, 3, 0)
        assert second.remote == first.remote


def test_an_unchanged_sync_is_one_round_trip(device, files):
    with SSHTransport.open(device.host, FAST) as transport:
        push_blobs(transport, files)
        assert transport.commands == 2  # which blobs are intact (and $HOME), then commit the uploads
    with SSHTransport.open(device.host, FAST) as transport:
        again = push_blobs(transport, files)
        assert transport.commands == 1 and again.files_sent == 0
        assert transport.workdir == str(device.home / ".edgeq")  # ~ resolved by that same command


def test_a_corrupted_blob_is_detected_and_sent_again(device, files):
    with SSHTransport.open(device.host, FAST) as transport:
        first = push_blobs(transport, files)
        damaged = Path(first.remote[files[1]])
        damaged.write_bytes(b"bit rot" + damaged.read_bytes()[7:])
        again = push_blobs(transport, files)
        assert (again.files_sent, again.bytes_sent) == (1, files[1].stat().st_size)
        assert damaged.read_bytes() == files[1].read_bytes()


@pytest.fixture
def tiny_agent(tmp_path) -> Path:
    """A stand-in agent package with the real one's contract: relative imports, one JSON object out."""
    package = tmp_path / "tiny"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "words.py").write_text("GREETING = 'hello from the device'\n")
    (package / "__main__.py").write_text(
        "import json, sys\n"
        "from .words import GREETING\n"
        "args = sys.argv[1:]\n"
        "if args[0] == 'greet':\n"
        "    print(json.dumps({'greeting': GREETING, 'python': sys.executable, 'args': args[1:]}))\n"
        "else:\n"
        "    print(json.dumps({'error': 'no sub-command ' + repr(args[0]), 'kind': 'usage'}))\n"
        "    sys.exit(2)\n"
    )
    return package


def test_agent_is_pushed_once_and_runs_with_the_device_python(device, tiny_agent):
    with SSHTransport.open(device.host, FAST) as transport:
        agent = push_agent(transport, tiny_agent, "tiny_agent")
        assert agent.python == str(DEVICE_PYTHON)
        assert Path(agent.pythonpath, "tiny_agent", "words.py").is_file()
        reply = run_agent(transport, agent, "greet", ["it's $(me)"])
        assert reply == {
            "greeting": "hello from the device",
            "python": str(DEVICE_PYTHON),
            "args": ["--workdir", transport.workdir, "it's $(me)"],
        }

        sent_before = transport.bytes_sent
        assert push_agent(transport, tiny_agent, "tiny_agent") == agent
        assert transport.bytes_sent - sent_before < len(DEVICE_SCRIPT) + 2000  # one command (the script), no upload

        with pytest.raises(DeviceError, match=r"agent `smile` failed \[usage\]: no sub-command 'smile'"):
            run_agent(transport, agent, "smile")


def test_changed_agent_source_is_a_new_version(tiny_agent):
    before = pack_agent(tiny_agent, "tiny_agent")
    assert pack_agent(tiny_agent, "tiny_agent") == before  # deterministic: same files, same bytes
    (tiny_agent / "words.py").write_text("GREETING = 'changed'\n")
    assert pack_agent(tiny_agent, "tiny_agent") != before


@pytest.mark.skipif(not (DEVICE_PACKAGE / "__main__.py").exists(), reason="the device agent has no entry point yet")
def test_real_agent_probe_runs_on_the_device(device):
    with SSHTransport.open(device.host, FAST) as transport:
        agent = push_agent(transport)
        probe = run_agent(transport, agent, "probe", pass_workdir=False)
    assert "onnxruntime" in probe["backends"]
