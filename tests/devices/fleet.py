"""A fleet of real OpenSSH servers on loopback addresses (127.0.0.2, 127.0.0.3, ...), one per device.

Each device is its own ``sshd -D`` on port 22 of its own address, with its own host key, config,
PidFile and log, in a folder under one fleet folder. A non-root test user logs in with the fleet's
client key; every device gives that user its own ``$HOME`` (sshd ``SetEnv``), so the default
workdir ``~/.edgeq`` is per device. Needs root, openssh-server and ``tests/devices/provision.sh``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from edgeq.hosts import Host

SSHD = Path("/usr/sbin/sshd")
SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")
TEST_USER = os.environ.get("EDGEQ_TEST_USER", "edgeq-dev")
DEVICE_PYTHON = Path(os.environ.get("EDGEQ_DEVICE_PYTHON", "/opt/edgeq-device-python")) / "bin" / "python"
START_DEADLINE = 10.0
NFT_PREFIX = "edgeq_fleet_"  # + "<pid of the test process>_<address>": a drop rule's owner is in its name


def missing_prerequisites() -> str | None:
    """Why a fleet cannot start on this machine, or None when it can."""
    if os.geteuid() != 0:
        return "the SSH device fleet needs root (one sshd per loopback address on port 22)"
    if not SSHD.exists() or not SFTP_SERVER.exists():
        return "openssh-server is not installed: run tests/devices/provision.sh"
    try:
        pwd.getpwnam(TEST_USER)
    except KeyError:
        return f"test user {TEST_USER!r} is missing: run tests/devices/provision.sh"
    if not DEVICE_PYTHON.exists():
        return f"device Python {DEVICE_PYTHON} is missing: run tests/devices/provision.sh"
    return None


def _wait_until(condition, deadline: float, what: str) -> None:
    """Poll ``condition`` until it is true; raise if ``deadline`` (monotonic) passes first."""
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _accepts(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.2):
            return True
    except OSError:
        return False


def _port_free(address: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def _descendants(pid: int) -> list[int]:
    """PIDs of all processes below ``pid`` (sshd's per-connection processes and their commands)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, sig)


@contextmanager
def _held(apply: Callable[[], None], undo: Callable[[], None]) -> Iterator[None]:
    apply()
    try:
        yield
    finally:
        undo()


@dataclass
class Device:
    """One loopback SSH device. ``host`` is what edgeq is given to reach it."""

    name: str
    address: str
    folder: Path
    home: Path
    host: Host
    port: int = 22
    _process: subprocess.Popen | None = field(default=None, repr=False)
    _dropped: bool = False

    @property
    def host_key_line(self) -> str:
        """This device's known_hosts line."""
        key_type, key = (self.folder / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        return f"{self.address} {key_type} {key}\n"

    @property
    def pid_file(self) -> Path:
        return self.folder / "sshd.pid"

    @property
    def log(self) -> str:
        path = self.folder / "sshd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        """Start the daemon; return once its PidFile exists and it accepts TCP connections."""
        if self._process is not None and self._process.poll() is None:
            return
        self.pid_file.unlink(missing_ok=True)
        self._process = subprocess.Popen(
            [str(SSHD), "-D", "-f", str(self.folder / "sshd_config"), "-E", str(self.folder / "sshd.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_DEADLINE

        def ready() -> bool:
            if self._process.poll() is not None:
                raise RuntimeError(f"sshd for {self.address} exited with {self._process.returncode}: {self.log}")
            return self.pid_file.exists() and _accepts(self.address, self.port)

        try:
            _wait_until(ready, deadline, f"sshd on {self.address}:{self.port}")
        except BaseException:
            self.stop()  # a daemon that never became ready is not left running
            raise

    def listener_pid(self) -> int | None:
        """The daemon's PID, read from its PidFile (or the child's PID before it wrote one)."""
        try:
            return int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            alive = self._process is not None and self._process.poll() is None
            return self._process.pid if alive else None

    def stop(self) -> None:
        """Stop the daemon and its sessions by PID (from its PidFile); wait until it is gone."""
        self.resume()
        pid = self.listener_pid()
        if pid is not None:
            _signal_all([*_descendants(pid), pid], signal.SIGKILL)
        if self._process is not None:
            self._process.wait(timeout=START_DEADLINE)
            self._process = None
        self.pid_file.unlink(missing_ok=True)

    def session_pids(self) -> list[int]:
        """PIDs of the daemon's per-connection processes and the commands they run."""
        pid = self.listener_pid()
        return _descendants(pid) if pid is not None else []

    def session_commands(self) -> list[list[str]]:
        """The argv of every process below the daemon (processes that end meanwhile are left out)."""
        commands = []
        for pid in self.session_pids():
            try:
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            commands.append(raw.rstrip(b"\0").decode(errors="replace").split("\0"))
        return commands

    def kill_sessions(self) -> None:
        """Kill every open session (as a crash would); the daemon goes on accepting new ones."""
        _signal_all(self.session_pids(), signal.SIGKILL)

    def pause(self) -> None:
        """Freeze the device: SIGSTOP the daemon and every session process below it."""
        pid = self.listener_pid()
        if pid is not None:
            _signal_all([pid, *_descendants(pid)], signal.SIGSTOP)

    def resume(self) -> None:
        """Undo :meth:`pause`."""
        pid = self.listener_pid()
        if pid is not None:
            _signal_all([pid, *_descendants(pid)], signal.SIGCONT)

    def paused(self) -> AbstractContextManager[None]:
        """The device frozen (:meth:`pause`) for the block, resumed after it however it ends."""
        return _held(self.pause, self.resume)

    def dropped(self) -> AbstractContextManager[None]:
        """The device cut off the network (:meth:`drop`) for the block, back after it however it ends."""
        return _held(self.drop, self.undrop)

    @property
    def _nft_table(self) -> str:
        return f"{NFT_PREFIX}{os.getpid()}_{self.address.replace('.', '_')}"

    def drop(self) -> None:
        """Silently drop every packet to and from this address (an nft table on the output hook)."""
        if shutil.which("nft") is None:
            raise RuntimeError("nft is not installed: run tests/devices/provision.sh")
        add_drop_table(self._nft_table, self.address)
        self._dropped = True

    def undrop(self) -> None:
        """Undo :meth:`drop`."""
        if self._dropped:
            subprocess.run(["nft", "delete", "table", "ip", self._nft_table], check=True, capture_output=True)
            self._dropped = False


@dataclass
class Fleet:
    """Started devices plus the client key and the known_hosts file that lists all of them."""

    folder: Path
    client_key: Path
    known_hosts: Path
    devices: list[Device]

    def __getitem__(self, index: int) -> Device:
        return self.devices[index]

    def __len__(self) -> int:
        return len(self.devices)

    def __iter__(self) -> Iterator[Device]:
        return iter(self.devices)

    @property
    def hosts(self) -> list[Host]:
        return [device.host for device in self.devices]

    def close(self) -> None:
        """Stop every device, remove firewall rules and the fleet folder."""
        for device in self.devices:
            try:
                device.undrop()
            finally:
                device.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )


def _sshd_config(device: Device, authorized_keys: Path, user: str) -> str:
    return "\n".join(
        [
            f"ListenAddress {device.address}",
            f"Port {device.port}",
            f"HostKey {device.folder / 'ssh_host_ed25519_key'}",
            f"PidFile {device.pid_file}",
            f"AuthorizedKeysFile {authorized_keys} .ssh/authorized_keys",
            f"AllowUsers {user}",
            f"SetEnv HOME={device.home}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "UseDNS no",
            "PrintMotd no",
            "LogLevel ERROR",
            f"Subsystem sftp {SFTP_SERVER}",
            "",
        ]
    )


def add_drop_table(table: str, address: str) -> None:
    """An nft table ``table`` that drops every packet to and from ``address`` on the output hook."""
    rules = (
        f"table ip {table} {{\n"
        f"  chain out {{\n    type filter hook output priority 0; policy accept;\n"
        f"    ip daddr {address} drop\n    ip saddr {address} drop\n  }}\n}}\n"
    )
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True, capture_output=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphaned_drops() -> list[str]:
    """Delete the drop tables of test processes that are gone (killed before their cleanup ran).

    A rule left behind silently cuts off whichever later fleet gets that address. Returns the tables removed.
    """
    if shutil.which("nft") is None:
        return []
    listing = subprocess.run(["nft", "list", "tables", "ip"], check=True, capture_output=True, text=True).stdout
    removed = []
    for line in listing.splitlines():
        name = line.split()[-1] if line.startswith("table ip ") else ""
        owner = name.removeprefix(NFT_PREFIX).split("_", 1)[0]
        if name.startswith(NFT_PREFIX) and owner.isdigit() and not _alive(int(owner)):
            subprocess.run(["nft", "delete", "table", "ip", name], check=True, capture_output=True)
            removed.append(name)
    return removed


def _next_free_address(taken: set[str]) -> str:
    for third in range(256):
        for fourth in range(2, 255):
            address = f"127.0.{third}.{fourth}"
            if address not in taken and _port_free(address, 22):
                return address
    raise RuntimeError("no free loopback address with port 22 left in 127.0.0.0/16")


def start_fleet(count: int, user: str = TEST_USER) -> Fleet:
    """Start ``count`` devices on the first free loopback addresses; the caller must ``close()`` it."""
    account = pwd.getpwnam(user)
    remove_orphaned_drops()
    folder = Path(tempfile.mkdtemp(prefix="edgeq-fleet-"))
    folder.chmod(0o755)  # the test user reaches its per-device $HOME below it
    fleet = Fleet(folder, folder / "client_ed25519", folder / "known_hosts", [])
    try:
        _keygen(fleet.client_key, "edgeq-fleet-client")
        authorized_keys = folder / "authorized_keys"
        shutil.copy(fleet.client_key.with_suffix(".pub"), authorized_keys)
        authorized_keys.chmod(0o644)
        taken: set[str] = set()
        while len(fleet.devices) < count:
            address = _next_free_address(taken)
            taken.add(address)
            device_folder = folder / f"device-{len(fleet.devices) + 1}"
            home = device_folder / "home"
            home.mkdir(parents=True)
            device_folder.chmod(0o755)
            os.chown(home, account.pw_uid, account.pw_gid)
            host = Host(
                address=address,
                user=user,
                key=fleet.client_key,
                known_hosts=fleet.known_hosts,
                python=str(DEVICE_PYTHON),
                workdir="~/.edgeq",
            )
            device = Device(device_folder.name, address, device_folder, home, host)
            _keygen(device_folder / "ssh_host_ed25519_key", device.name)
            (device_folder / "sshd_config").write_text(_sshd_config(device, authorized_keys, user))
            try:
                device.start()
            except RuntimeError:
                if _port_free(address, 22):
                    raise
                shutil.rmtree(device_folder)  # another process took the address meanwhile: next one
                continue
            fleet.devices.append(device)
        fleet.known_hosts.write_text("".join(device.host_key_line for device in fleet.devices))
    except BaseException:
        fleet.close()
        raise
    return fleet


@contextmanager
def running_fleet(count: int) -> Iterator[Fleet]:
    """A started fleet, closed on exit even when the body fails."""
    fleet = start_fleet(count)
    try:
        yield fleet
    finally:
        fleet.close()
