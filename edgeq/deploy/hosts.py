"""Which devices a deploy or smoke goes to: `--host` specs, `--inventory`, or the recipe's devices."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import ValidationError

from edgeq.errors import InputError
from edgeq.fleet.inventory import load_inventory, recipe_hosts, select_hosts
from edgeq.recipe import Host, Recipe

_SPEC = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[^:@\s\[\]]+))(?::(?P<port>\d+))?$")


def parse_host(spec: str, **fields: object) -> Host:
    """``user@address[:port]`` (``[v6]:port`` for IPv6) with the other Host fields given by keyword."""
    match = _SPEC.match(spec.strip())
    if not match:
        raise InputError(f"--host {spec!r}: expected user@address[:port]")
    values = {k: v for k, v in fields.items() if v is not None}
    values["address"] = match["v6"] or match["name"]
    if match["user"]:
        values["user"] = match["user"]
    if match["port"]:
        values["port"] = int(match["port"])
    try:
        return Host(**values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InputError(f"--host {spec!r}: {problems}") from None


def resolve_hosts(
    recipe: Recipe,
    specs: list[str],
    inventory: Path | None,
    limit: list[str],
    **fields: object,
) -> list[Host]:
    """`--host` specs win, then `--inventory`, then the recipe's own devices; `--limit` picks by name or group."""
    if specs:
        hosts = [parse_host(spec, **fields) for spec in specs]
    elif inventory is not None:
        hosts = load_inventory(inventory)
    else:
        hosts = recipe_hosts(recipe)
    if not hosts:
        raise InputError(
            f"{recipe.source}: no device to deploy to: give --host user@address[:port], --inventory FILE, "
            "or devices in the recipe (or use --target local)"
        )
    return select_hosts(hosts, limit)
