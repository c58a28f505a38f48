"""Which devices a command goes to: `--host` specs, `--inventory`, or the devices a recipe names."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from edgeq.errors import InputError
from edgeq.hosts.host import Host
from edgeq.hosts.inventory import load_inventory, select_hosts

_SPEC = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[^:@\s\[\]]+))(?::(?P<port>\d+))?$")


@dataclass(frozen=True)
class HostFields:
    """Host fields given on the command line for every `--host` (unset ones keep the Host defaults)."""

    key: Path | None = None
    known_hosts: Path | None = None
    python: str | None = None
    workdir: str | None = None

    def values(self) -> dict[str, object]:
        return {k: v for k, v in vars(self).items() if v is not None}


def parse_host(spec: str, fields: HostFields | None = None) -> Host:
    """``user@address[:port]`` (``[v6]:port`` for IPv6) with the other Host fields from ``fields``."""
    match = _SPEC.match(spec.strip())
    if not match:
        raise InputError(f"--host {spec!r}: expected user@address[:port]")
    values = (fields or HostFields()).values()
    values["address"] = match["v6"] or match["name"]
    if match["user"]:
        values["user"] = match["user"]
    if match["port"]:
        values["port"] = int(match["port"])
    try:
        return Host.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InputError(f"--host {spec!r}: {problems}") from None


def resolve_hosts(
    specs: list[str],
    inventory: Path | None,
    limit: list[str],
    *,
    fields: HostFields | None = None,
    fallback: Callable[[], list[Host]] | None = None,
    nothing: str = "no device given: use --host user@address[:port] or --inventory FILE",
) -> list[Host]:
    """`--host` specs win, then `--inventory`, then ``fallback`` (a recipe's devices); `--limit` picks by
    name or group. ``nothing`` is the error when no source gives a host."""
    if specs:
        hosts = [parse_host(spec, fields) for spec in specs]
    elif inventory is not None:
        hosts = load_inventory(inventory)
    else:
        hosts = fallback() if fallback is not None else []
    if not hosts:
        raise InputError(nothing)
    return select_hosts(hosts, limit)
