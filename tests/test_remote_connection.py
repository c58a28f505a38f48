"""Connections to real loopback sshd devices: strict host keys, authentication, and every way a device can fail."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from edgeq.errors import DeviceError
from edgeq.remote import SSHTransport, Timeouts
from tests.devices import fleet as fleet_module

pytestmark = pytest.mark.ssh
FAST = Timeouts(connect=2.0, channel=1.5, command=10.0)
SLACK = 1.5  # seconds allowed beyond a timeout for scheduling on a loaded 2-core machine


def fingerprint(public_key: Path) -> str:
    out = subprocess.run(["ssh-keygen", "-lf", str(public_key)], capture_output=True, text=True, check=True).stdout
    return out.split()[1]


def test_connects_as_the_test_user_and_runs_a_command(shared_fleet):
    device = shared_fleet[0]
    with SSHTransport.open(device.host, FAST) as transport:
        result = transport.run(["id", "-un"])
        assert result.ok and result.stdout.strip() == device.host.user
        assert transport.workdir == f"{device.home}/.edgeq"  # ~ is this device's $HOME


def test_unknown_host_key_is_refused_with_instructions_that_work(shared_fleet, tmp_path):
    device, other = shared_fleet[0], shared_fleet[1]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(other.host_key_line)
    host = device.host.model_copy(update={"known_hosts": known_hosts})

    with pytest.raises(DeviceError) as refused:
        SSHTransport.open(host, FAST)

    message = refused.value.message
    assert message.startswith(f"{host.label}: connecting failed: unknown host key")
    assert fingerprint(device.folder / "ssh_host_ed25519_key.pub") in message
    assert known_hosts.read_text() == other.host_key_line  # nothing was added
    trust = message.split("trust it with: ", 1)[1]
    assert trust == f"ssh-keyscan -t ed25519 {device.address} >> {known_hosts}"
    subprocess.run(trust, shell=True, check=True, capture_output=True)
    with SSHTransport.open(host, FAST) as transport:
        assert transport.run(["true"]).ok


def test_missing_known_hosts_file_trusts_nothing(shared_fleet, tmp_path):
    host = shared_fleet[0].host.model_copy(update={"known_hosts": tmp_path / "absent"})
    with pytest.raises(DeviceError, match="unknown host key"):
        SSHTransport.open(host, FAST)
    assert not (tmp_path / "absent").exists()


def test_changed_host_key_is_refused_loudly(shared_fleet, tmp_path):
    device, other = shared_fleet[0], shared_fleet[1]
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(other.host_key_line.replace(other.address, device.address, 1))
    host = device.host.model_copy(update={"known_hosts": known_hosts})

    with pytest.raises(DeviceError) as refused:
        SSHTransport.open(host, FAST)

    message = refused.value.message
    assert "HOST KEY CHANGED" in message and "man-in-the-middle" in message
    assert fingerprint(other.folder / "ssh_host_ed25519_key.pub") in message  # what was recorded
    assert fingerprint(device.folder / "ssh_host_ed25519_key.pub") in message  # what is presented


def test_a_key_the_device_does_not_accept_fails_authentication(shared_fleet, tmp_path):
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    host = shared_fleet[0].host.model_copy(update={"key": stranger})
    with pytest.raises(DeviceError, match=f"authentication as {host.user} failed with key {stranger}") as failed:
        SSHTransport.open(host, FAST)
    assert stranger.read_text().splitlines()[1] not in failed.value.message  # no key material shown


def test_ssh_config_alias_and_default_known_hosts_are_honoured(shared_fleet, tmp_path, monkeypatch):
    device = shared_fleet[0]
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text(
        f"Host jetson-a\n  HostName {device.address}\n  User {device.host.user}\n  IdentityFile {device.host.key}\n"
    )
    (tmp_path / ".ssh" / "known_hosts").write_text(device.host_key_line)
    monkeypatch.setenv("HOME", str(tmp_path))
    from edgeq.hosts import Host

    with SSHTransport.open(Host(address="jetson-a"), FAST) as transport:
        assert transport.run(["printenv", "HOME"]).stdout.strip() == str(device.home)


def test_stopped_sshd_is_a_device_error_at_once(ssh_fleet):
    device = ssh_fleet(1)[0]
    device.stop()
    started = time.monotonic()
    with pytest.raises(DeviceError, match=f"^{re.escape(device.host.label)}: connecting failed: connection refused"):
        SSHTransport.open(device.host, FAST)
    assert time.monotonic() - started < FAST.connect


def test_frozen_sshd_fails_a_new_connection_within_the_connect_timeout(ssh_fleet):
    device = ssh_fleet(1)[0]
    device.pause()
    started = time.monotonic()
    with pytest.raises(DeviceError, match=r"SSH server is hung|no SSH banner"):
        SSHTransport.open(device.host, FAST)
    assert time.monotonic() - started < FAST.connect * 2 + SLACK


def test_device_frozen_mid_session_fails_commands_and_transfers_within_the_channel_timeout(ssh_fleet, tmp_path):
    device = ssh_fleet(1)[0]
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"x" * 1024)
    with SSHTransport.open(device.host, FAST) as transport:
        transport.run(["mkdir", "-p", transport.workdir]).check()
        transport.put(payload, transport.path("before.bin"))  # SFTP session open before the freeze
        device.pause()
        for attempt in (
            lambda: transport.run(["true"]),
            lambda: transport.put(payload, transport.path("after.bin")),
        ):
            started = time.monotonic()
            with pytest.raises(DeviceError, match=f"^{re.escape(device.host.label)}: .*stopped answering"):
                attempt()
            assert time.monotonic() - started < FAST.channel + SLACK


def test_device_gone_while_connected_fails_the_next_command_at_once(ssh_fleet):
    device = ssh_fleet(1)[0]
    with SSHTransport.open(device.host, FAST) as transport:
        transport.run(["true"]).check()
        device.stop()  # the daemon and its session processes
        started = time.monotonic()
        # Lost (if the client saw the EOF already) or refused (fabric reconnects a closed connection).
        with pytest.raises(DeviceError, match=r"running `true` failed: (the SSH connection was lost|connection refused)"):
            transport.run(["true"])
        assert time.monotonic() - started < FAST.connect


def test_session_killed_mid_command_is_a_lost_connection(ssh_fleet):
    device = ssh_fleet(1)[0]

    def kill_when_sleep_runs() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if ["sleep", "30"] in device.session_commands():
                device.kill_sessions()
                return
            time.sleep(0.01)

    with SSHTransport.open(device.host, FAST) as transport:
        killer = threading.Thread(target=kill_when_sleep_runs)
        killer.start()
        started = time.monotonic()
        with pytest.raises(DeviceError, match=r"running `sleep 30` failed: the SSH connection was lost"):
            transport.run(["sleep", "30"])
        killer.join()
        assert time.monotonic() - started < 10


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft is not installed (tests/devices/provision.sh installs it)")
def test_dropped_network_is_a_connect_timeout(ssh_fleet):
    device = ssh_fleet(1)[0]
    device.drop()
    started = time.monotonic()
    with pytest.raises(DeviceError, match=f"no answer from {re.escape(device.address)}:22 within 2 s"):
        SSHTransport.open(device.host, FAST)
    assert FAST.connect - 0.2 < time.monotonic() - started < FAST.connect + SLACK
    device.undrop()
    with SSHTransport.open(device.host, FAST) as transport:
        assert transport.run(["true"]).ok


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft is not installed (tests/devices/provision.sh installs it)")
def test_a_drop_rule_left_by_a_killed_test_run_does_not_cut_off_the_next_fleet(ssh_fleet):
    gone = subprocess.Popen(["true"])
    gone.wait()  # its PID now names no process: the rule's owner was killed before its cleanup
    address = fleet_module._next_free_address(set())
    table = f"{fleet_module.NFT_PREFIX}{gone.pid}_{address.replace('.', '_')}"
    fleet_module.add_drop_table(table, address)
    try:
        device = ssh_fleet(1)[0]
        assert device.address == address
        with SSHTransport.open(device.host, FAST) as transport:
            assert transport.run(["true"]).ok
    finally:
        subprocess.run(["nft", "delete", "table", "ip", table], capture_output=True)
    assert table not in subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout


def _fleet_daemons() -> set[int]:
    """PIDs of every loopback device daemon on this machine."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()  # sshd retitles itself: "sshd: /usr/sbin/sshd -D -f ..."
            except OSError:
                continue
            if b"sshd" in command and b"edgeq-fleet-" in command:
                found.add(int(entry.name))
    return found


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft is not installed (tests/devices/provision.sh installs it)")
def test_a_device_that_never_answers_at_start_leaves_no_daemon_behind() -> None:
    address = fleet_module._next_free_address(set())
    table = f"{fleet_module.NFT_PREFIX}{os.getpid()}_{address.replace('.', '_')}"  # owned by this live process
    fleet_module.add_drop_table(table, address)
    before = _fleet_daemons()
    try:
        with pytest.raises(TimeoutError, match=f"sshd on {re.escape(address)}:22"):
            fleet_module.start_fleet(1)
    finally:
        subprocess.run(["nft", "delete", "table", "ip", table], capture_output=True)
    assert _fleet_daemons() <= before  # the daemon that never became reachable was stopped
