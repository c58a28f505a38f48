"""Strict host-key checking: keys come from a known_hosts file; unknown or changed keys are refused.

edgeq never adds a key by itself. The refusal says how to trust a key after comparing its
fingerprint, which is the only safe moment to do so.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from paramiko import MissingHostKeyPolicy, PKey, SSHClient, SSHException

DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")

_KEYSCAN_TYPES = {"ssh-ed25519": "ed25519", "ssh-rsa": "rsa", "ssh-dss": "dsa"}


def known_hosts_path(configured: Path | None) -> Path:
    """The known_hosts file a Host uses: its own, else ~/.ssh/known_hosts."""
    return (configured or DEFAULT_KNOWN_HOSTS).expanduser()


def key_type_word(key: PKey) -> str:
    """The short key type ssh-keyscan and ssh-keygen use: ed25519, rsa, ecdsa."""
    name = key.get_name()
    return "ecdsa" if name.startswith("ecdsa-") else _KEYSCAN_TYPES.get(name, name)


class UnknownHostKey(SSHException):
    """The server's key is in no known_hosts entry for its name."""

    def __init__(self, name: str, key: PKey) -> None:
        super().__init__(f"unknown host key for {name}")
        self.name = name
        self.key = key


class RefuseUnknownHosts(MissingHostKeyPolicy):
    """Paramiko policy: refuse every key not already known (raise :class:`UnknownHostKey`)."""

    def missing_host_key(self, client: SSHClient, hostname: str, key: PKey) -> None:
        raise UnknownHostKey(hostname, key)


def apply_strict_policy(client: SSHClient, known_hosts: Path) -> None:
    """Make ``client`` trust exactly the keys in ``known_hosts`` (a missing file trusts none)."""
    client.set_missing_host_key_policy(RefuseUnknownHosts())
    if known_hosts.exists():
        client.load_system_host_keys(str(known_hosts))  # "system" keys are never written back


def unknown_key_message(exc: UnknownHostKey, address: str, port: int, known_hosts: Path) -> str:
    """What the user sees for an unknown key: its fingerprint and the command that trusts it."""
    kind = key_type_word(exc.key)
    port_flag = f"-p {port} " if port != 22 else ""
    keyscan = f"ssh-keyscan {port_flag}-t {kind} {shlex.quote(address)} >> {shlex.quote(str(known_hosts))}"
    return (
        f"unknown host key: {known_hosts} has no entry for {exc.name}; the server offers "
        f"{exc.key.get_name()} key {exc.key.fingerprint}. Compare this fingerprint with the device's own "
        f"(on the device: ssh-keygen -lf /etc/ssh/ssh_host_{kind}_key.pub) and only if they match, "
        f"trust it with: {keyscan}"
    )


def changed_key_message(address: str, port: int, found: PKey, expected: PKey, known_hosts: Path) -> str:
    """What the user sees for a changed key: loud, with both fingerprints and no automatic way out."""
    name = address if port == 22 else f"[{address}]:{port}"
    return (
        f"HOST KEY CHANGED: {known_hosts} records {expected.get_name()} key {expected.fingerprint} "
        f"for {name}, but the server now presents {found.get_name()} key {found.fingerprint}. "
        "Someone may be intercepting the connection (man-in-the-middle), or the device was re-installed. "
        "edgeq refuses to connect. Only if you know why the key changed: "
        f"ssh-keygen -R {shlex.quote(name)} -f {shlex.quote(str(known_hosts))}, then compare and add the new key."
    )
