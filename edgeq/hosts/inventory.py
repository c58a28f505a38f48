"""Inventories: which devices exist and how to reach them.

Two formats are read, both into :class:`edgeq.hosts.Host`:

- edgeq's own YAML: ``defaults`` (any Host field) and ``hosts``, a mapping of name to fields or a
  list of mappings with ``name``::

      defaults: {user: edgeq, key: keys/fleet_ed25519, known_hosts: known_hosts, target: orin-nano-jp6.2}
      hosts:
        cam-01: {address: 10.0.0.11, groups: [canary]}
        cam-02: {address: 10.0.0.12}

- Ansible inventories, INI or YAML: hosts, groups (``children``), group and host vars.
  ``ansible_host``, ``ansible_port``, ``ansible_user``, ``ansible_ssh_private_key_file`` and
  ``ansible_python_interpreter`` map to Host fields, as do ``edgeq_target``, ``edgeq_workdir`` and
  ``edgeq_known_hosts``; other variables are ignored. A host's groups are every group it is in,
  directly or through ``children`` (not ``all`` or ``ungrouped``).

Relative paths (key, known_hosts) resolve against the inventory file's folder. Errors name the
file, the host and the field.
"""

from __future__ import annotations

import fnmatch
import shlex
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgeq.errors import InputError
from edgeq.hosts.host import Host
from edgeq.textfiles import parse_yaml, read_text

ANSIBLE_VARS = {
    "ansible_host": "address",
    "ansible_ssh_host": "address",
    "ansible_port": "port",
    "ansible_ssh_port": "port",
    "ansible_user": "user",
    "ansible_ssh_user": "user",
    "ansible_ssh_private_key_file": "key",
    "ansible_private_key_file": "key",
    "ansible_python_interpreter": "python",
    "edgeq_target": "target",
    "edgeq_workdir": "workdir",
    "edgeq_known_hosts": "known_hosts",
}
_IMPLICIT_GROUPS = {"all", "ungrouped"}
_PATH_FIELDS = ("key", "known_hosts")


def load_inventory(path: Path | str) -> list[Host]:
    """Every host of an inventory file (edgeq YAML, Ansible YAML or Ansible INI), in file order."""
    path = Path(path)
    text = read_text(path, "inventory")
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        data = parse_yaml(text, path)
        if isinstance(data, dict) and "hosts" in data:
            raw = _native(data, path)
        else:
            raw = _ansible_hosts(_ansible_yaml_groups(data, path), path)
    else:
        raw = _ansible_hosts(_ansible_ini_groups(text, path), path)
    if not raw:
        raise InputError(f"{path}: the inventory lists no hosts")
    hosts = [_host(name, fields, path) for name, fields in raw.items()]
    _check_unique(hosts, path)
    return hosts


def select_hosts(hosts: list[Host], patterns: list[str]) -> list[Host]:
    """The hosts whose name, address, label or one of whose groups matches a pattern (globs allowed).

    No pattern selects every host; a pattern that matches nothing is an error listing what exists.
    """
    if not patterns:
        return list(hosts)
    chosen: list[Host] = []
    for pattern in patterns:
        matched = [h for h in hosts if any(fnmatch.fnmatchcase(key, pattern) for key in _keys(h))]
        if not matched:
            names = ", ".join(host_name(h) for h in hosts)
            groups = ", ".join(sorted({g for h in hosts for g in h.groups})) or "none"
            raise InputError(f"no host or group matches {pattern!r} (hosts: {names}; groups: {groups})")
        chosen.extend(h for h in matched if h not in chosen)
    return [h for h in hosts if h in chosen]


def host_name(host: Host) -> str:
    """How a host is called in tables and journals: its inventory name, else its label."""
    return host.name or host.label


def _keys(host: Host) -> list[str]:
    return [k for k in (host.name, host.address, host.label, *host.groups) if k]


def _native(data: dict[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    """edgeq's own format: ``defaults`` merged under each entry of ``hosts``."""
    unknown = set(data) - {"defaults", "hosts"}
    if unknown:
        raise InputError(f"{path}: unknown top-level field {sorted(unknown)[0]!r} (expected 'defaults' and 'hosts')")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise InputError(f"{path}: defaults: expected a mapping of host fields, found {type(defaults).__name__}")
    entries = data["hosts"]
    if isinstance(entries, dict):
        items = [(name, fields or {}) for name, fields in entries.items()]
    elif isinstance(entries, list):
        items = []
        for index, fields in enumerate(entries):
            if not isinstance(fields, dict):
                raise InputError(f"{path}: hosts[{index}]: expected a mapping of host fields, found {fields!r}")
            items.append((str(fields.get("name") or fields.get("address") or f"hosts[{index}]"), fields))
    else:
        raise InputError(f"{path}: hosts: expected a mapping of name to fields or a list, found {type(entries).__name__}")
    raw: dict[str, dict[str, Any]] = {}
    for name, fields in items:
        if not isinstance(fields, dict):
            raise InputError(f"{path}: host {name!r}: expected a mapping of host fields, found {fields!r}")
        if str(name) in raw:
            raise InputError(f"{path}: host {name!r} is listed twice")
        raw[str(name)] = {"name": str(name), "address": str(name), **defaults, **fields}
    return raw


class _Group:
    """One Ansible group while an inventory is read."""

    def __init__(self) -> None:
        self.hosts: dict[str, dict[str, Any]] = {}
        self.vars: dict[str, Any] = {}
        self.children: list[str] = []


def _ansible_yaml_groups(data: Any, path: Path) -> dict[str, _Group]:
    """Ansible's YAML inventory: nested groups with ``hosts``, ``vars`` and ``children``."""
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected an inventory mapping ('hosts:' or Ansible groups such as 'all:'), found {type(data).__name__}")
    groups: dict[str, _Group] = {}

    def visit(name: str, body: Any) -> None:
        group = groups.setdefault(name, _Group())
        if body is None:
            return
        if not isinstance(body, dict):
            raise InputError(f"{path}: group {name!r}: expected a mapping with hosts, vars or children, found {body!r}")
        for key in body:
            if key not in ("hosts", "vars", "children"):
                raise InputError(f"{path}: group {name!r}: unknown field {key!r} (expected hosts, vars or children)")
        for host, fields in (body.get("hosts") or {}).items():
            if fields is not None and not isinstance(fields, dict):
                raise InputError(f"{path}: host {host!r}: expected a mapping of variables, found {fields!r}")
            group.hosts.setdefault(str(host), {}).update(fields or {})
        group.vars.update(body.get("vars") or {})
        for child, child_body in (body.get("children") or {}).items():
            group.children.append(str(child))
            visit(str(child), child_body)

    for name, body in data.items():
        visit(str(name), body)
    return groups


def _ansible_ini_groups(text: str, path: Path) -> dict[str, _Group]:
    """Ansible's INI inventory: ``[group]``, ``[group:vars]`` and ``[group:children]`` sections."""
    groups: dict[str, _Group] = {"ungrouped": _Group()}
    section, kind = "ungrouped", "hosts"
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise InputError(f"{path}: line {number}: expected a section header like [group], found {line!r}")
            section, _, kind = line[1:-1].partition(":")
            kind = kind or "hosts"
            if kind not in ("hosts", "vars", "children"):
                raise InputError(f"{path}: line {number}: unknown section kind {kind!r} (expected :vars or :children)")
            groups.setdefault(section, _Group())
            continue
        group = groups[section]
        if kind == "children":
            group.children.append(line)
            groups.setdefault(line, _Group())
        elif kind == "vars":
            key, eq, value = line.partition("=")
            if not eq:
                raise InputError(f"{path}: line {number}: expected key=value in [{section}:vars], found {line!r}")
            group.vars[key.strip()] = _unquote(value.strip())
        else:
            try:
                name, *pairs = shlex.split(line, comments=True)
            except ValueError as exc:
                raise InputError(f"{path}: line {number}: {exc}") from None
            fields = group.hosts.setdefault(name, {})
            for pair in pairs:
                key, eq, value = pair.partition("=")
                if not eq:
                    raise InputError(f"{path}: line {number}: host {name!r}: expected key=value, found {pair!r}")
                fields[key] = value
    return groups


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _ansible_hosts(groups: dict[str, _Group], path: Path) -> dict[str, dict[str, Any]]:
    """Each host's Host fields: all vars, then its groups' vars (parents first), then its own vars."""
    parents: dict[str, set[str]] = {}
    for name, group in groups.items():
        for child in group.children:
            parents.setdefault(child, set()).add(name)

    def ancestors(name: str, seen: frozenset[str] = frozenset()) -> list[str]:
        if name in seen:
            raise InputError(f"{path}: group {name!r} is its own ancestor (a cycle in children)")
        found: list[str] = []
        for parent in sorted(parents.get(name, ())):
            found += [g for g in ancestors(parent, seen | {name}) if g not in found] + [parent]
        return list(dict.fromkeys(found))

    order: list[str] = []
    member: dict[str, list[str]] = {}
    own: dict[str, dict[str, Any]] = {}
    for name, group in groups.items():
        for host, variables in group.hosts.items():
            if host not in order:
                order.append(host)
            chain = member.setdefault(host, [])
            for g in [*ancestors(name), name]:
                if g not in chain:
                    chain.append(g)
            own.setdefault(host, {}).update(variables)
    raw: dict[str, dict[str, Any]] = {}
    for host in order:
        chain = [g for g in member[host] if g != "all"]
        merged: dict[str, Any] = dict(groups["all"].vars) if "all" in groups else {}
        for g in chain:
            merged.update(groups[g].vars)
        merged.update(own[host])
        fields: dict[str, Any] = {"name": host, "address": host}
        for key, value in merged.items():
            if key in ANSIBLE_VARS:
                fields[ANSIBLE_VARS[key]] = value
            elif key.startswith("edgeq_"):
                known = ", ".join(k for k in ANSIBLE_VARS if k.startswith("edgeq_"))
                raise InputError(f"{path}: host {host!r}: unknown variable {key!r} (edgeq reads {known})")
        fields["groups"] = [g for g in chain if g not in _IMPLICIT_GROUPS]
        raw[host] = fields
    return raw


def _host(name: str, fields: dict[str, Any], path: Path) -> Host:
    """Validate one host's fields; relative key and known_hosts paths resolve against the file."""
    fields = dict(fields)
    if isinstance(fields.get("groups"), str):
        fields["groups"] = [fields["groups"]]
    for key in _PATH_FIELDS:
        if isinstance(fields.get(key), str):
            value = Path(fields[key]).expanduser()
            fields[key] = value if value.is_absolute() else (path.resolve().parent / value)
    for key in ("address", "user", "python", "workdir", "target"):
        if isinstance(fields.get(key), (int, float)):
            fields[key] = str(fields[key])
    try:
        return Host.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            allowed = ", ".join(f for f in Host.model_fields)
            raise InputError(f"{path}: host {name!r}: unknown field {field!r} (expected one of {allowed})") from None
        found = first.get("input")
        raise InputError(
            f"{path}: host {name!r}: field {field!r}: {first['msg'].removeprefix('Value error, ')} (found {found!r})"
        ) from None


def _check_unique(hosts: list[Host], path: Path) -> None:
    seen: dict[str, str] = {}
    for host in hosts:
        name = host_name(host)
        if host.label in seen:
            raise InputError(f"{path}: hosts {seen[host.label]!r} and {name!r} are the same device ({host.label})")
        seen[host.label] = name
