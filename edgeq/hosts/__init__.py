"""Devices and how to reach them: the Host model, inventory files (edgeq YAML, Ansible INI/YAML), and which
hosts a command goes to (``--host``, ``--inventory``, a recipe's devices). Below both deploy and fleet."""

from edgeq.hosts.host import Host
from edgeq.hosts.inventory import host_name, load_inventory, select_hosts
from edgeq.hosts.resolve import HostFields, parse_host, resolve_hosts

__all__ = ["Host", "HostFields", "host_name", "load_inventory", "parse_host", "resolve_hosts", "select_hosts"]
