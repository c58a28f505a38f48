"""Inventories: edgeq YAML, Ansible INI and Ansible YAML, selection, and errors that name file, host, field."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeq.errors import InputError
from edgeq.hosts import host_name, load_inventory, select_hosts


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_native_yaml_defaults_groups_and_relative_paths(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "fleet.yaml",
        """
defaults: {user: edgeq, key: keys/id_ed25519, known_hosts: known_hosts, target: orin-nano-jp6.2}
hosts:
  cam-01: {address: 10.0.0.11, groups: [canary, line-a]}
  cam-02: {address: 10.0.0.12, port: 2222, user: root, groups: line-b}
  10.0.0.13:
""",
    )
    hosts = load_inventory(path)
    assert [host_name(h) for h in hosts] == ["cam-01", "cam-02", "10.0.0.13"]
    first, second, third = hosts
    assert first.key == tmp_path / "keys" / "id_ed25519"
    assert first.known_hosts == tmp_path / "known_hosts"
    assert first.target == "orin-nano-jp6.2" and first.groups == ["canary", "line-a"]
    assert second.label == "root@10.0.0.12:2222" and second.groups == ["line-b"]
    assert third.address == "10.0.0.13" and third.user == "edgeq"


def test_native_yaml_list_form(tmp_path: Path) -> None:
    path = _write(tmp_path, "fleet.yml", "hosts:\n  - {name: a, address: 10.0.0.1}\n  - {address: 10.0.0.2}\n")
    assert [host_name(h) for h in load_inventory(path)] == ["a", "10.0.0.2"]


def test_ansible_ini_groups_children_vars_precedence(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "hosts",
        """
# a typical Ansible inventory
bench-01 ansible_host=192.168.1.50

[canary]
cam-01 ansible_host=10.0.0.11 ansible_port=2201

[line_a]
cam-01
cam-02 ansible_host=10.0.0.12 ansible_user=ops ansible_ssh_private_key_file=~/keys/ops

[line_a:vars]
ansible_user=jetson
edgeq_target=orin-nx-jp6.2

[plant:children]
line_a

[plant:vars]
ansible_python_interpreter=/usr/bin/python3.10
edgeq_target=agx-orin-jp6.2

[all:vars]
ansible_user=nvidia
ansible_ssh_private_key_file=keys/fleet
unrelated_var=kept-out
""",
    )
    hosts = {host_name(h): h for h in load_inventory(path)}
    assert list(hosts) == ["bench-01", "cam-01", "cam-02"]
    bench, cam1, cam2 = hosts["bench-01"], hosts["cam-01"], hosts["cam-02"]
    assert bench.address == "192.168.1.50" and bench.user == "nvidia" and bench.groups == []
    assert bench.key == tmp_path / "keys" / "fleet"
    assert cam1.port == 2201 and cam1.user == "jetson"
    assert set(cam1.groups) == {"canary", "line_a", "plant"}
    assert cam1.target == "orin-nx-jp6.2"  # the child group's vars win over the parent's
    assert cam1.python == "/usr/bin/python3.10"
    assert cam2.user == "ops" and cam2.key == Path("~/keys/ops").expanduser()


def test_ansible_yaml(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "inventory.yaml",
        """
all:
  vars: {ansible_user: nvidia}
  hosts:
    spare: {ansible_host: 10.0.1.9}
  children:
    canary:
      hosts:
        cam-01: {ansible_host: 10.0.0.11}
    line_a:
      vars: {edgeq_target: orin-nano-jp6.2}
      hosts:
        cam-01:
        cam-02: {ansible_host: 10.0.0.12, ansible_port: 2202}
""",
    )
    hosts = {host_name(h): h for h in load_inventory(path)}
    assert hosts["cam-01"].address == "10.0.0.11" and set(hosts["cam-01"].groups) == {"canary", "line_a"}
    assert hosts["cam-01"].target == "orin-nano-jp6.2"
    assert hosts["cam-02"].port == 2202 and hosts["cam-02"].user == "nvidia"
    assert hosts["spare"].groups == [] and hosts["spare"].target is None


def test_select_by_name_group_and_glob_keeps_inventory_order(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "fleet.yaml",
        "hosts:\n  a: {groups: [g1]}\n  b: {groups: [g2]}\n  c: {groups: [g1]}\n  d: {}\n",
    )
    hosts = load_inventory(path)
    assert [host_name(h) for h in select_hosts(hosts, ["g1"])] == ["a", "c"]
    assert [host_name(h) for h in select_hosts(hosts, ["d", "g1"])] == ["a", "c", "d"]
    assert [host_name(h) for h in select_hosts(hosts, ["[bd]"])] == ["b", "d"]
    assert len(select_hosts(hosts, [])) == 4
    with pytest.raises(InputError, match=r"no host or group matches 'g3'.*groups: g1, g2"):
        select_hosts(hosts, ["g3"])


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("fleet.yaml", "hosts:\n  cam-01: {address: x, port: seventy}\n", r"fleet.yaml: host 'cam-01': field 'port'.*seventy"),
        ("fleet.yaml", "hosts:\n  cam-01: {adress: x}\n", r"fleet.yaml: host 'cam-01': unknown field 'adress'"),
        ("fleet.yaml", "hosts:\n  a: {address: x}\n  b: {address: x}\n", r"hosts 'a' and 'b' are the same device \(x\)"),
        ("hosts", "[g]\ncam-01 ansible_port=abc\n", r"hosts: host 'cam-01': field 'port'.*abc"),
        ("hosts", "[g]\ncam-01 edgeq_targte=x\n", r"hosts: host 'cam-01': unknown variable 'edgeq_targte'"),
        ("hosts", "[g:nonsense]\n", r"hosts: line 1: unknown section kind 'nonsense'"),
        ("hosts", "# nothing\n", r"hosts: the inventory lists no hosts"),
        ("fleet.yaml", "hosts: [\n", r"fleet.yaml: not valid YAML at line"),
    ],
)
def test_errors_name_file_host_and_field(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_inventory(_write(tmp_path, name, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="inventory file not found"):
        load_inventory(tmp_path / "nope.yaml")
