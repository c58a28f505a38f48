"""Option groups shared by commands (as Polygraphy's ArgGroups): each group is one typed object whose fields
declare their typer options. A command names a group as a parameter (``devices: DeviceOptions``); the
:func:`grouped` decorator spreads the group's options into the command line and hands the command the
built object, so every command that takes a group parses it the same way.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from edgeq.cli.app import JsonOption
from edgeq.errors import InputError
from edgeq.hosts import Host, HostFields, resolve_hosts
from edgeq.remote.timeouts import Timeouts

F = TypeVar("F", bound=Callable[..., Any])


class OptionGroup:
    """Base of the groups: a frozen dataclass whose field annotations are ``Annotated[type, typer.Option(...)]``."""


@dataclass(frozen=True)
class DeviceOptions(OptionGroup):
    """Which devices, and how to reach hosts given on the command line."""

    hosts: Annotated[list[str], typer.Option("--host", "-H", help="user@address[:port]; repeat for several devices.")] = (
        field(default_factory=list))
    inventory: Annotated[Path | None, typer.Option("--inventory", "-i", help="Inventory file (edgeq YAML or Ansible).")] = None
    limit: Annotated[list[str], typer.Option("--limit", "-l", help="Only these inventory hosts or groups (globs).")] = (
        field(default_factory=list))
    key: Annotated[Path | None, typer.Option("--key", help="SSH private key for --host.")] = None
    known_hosts: Annotated[
        Path | None, typer.Option("--known-hosts", help="known_hosts file for --host (default ~/.ssh/known_hosts).")
    ] = None
    python: Annotated[str | None, typer.Option("--python", help="The device's Python for --host (default python3).")] = None
    workdir: Annotated[str | None, typer.Option("--workdir", help="Device work folder for --host (default ~/.edgeq).")] = None

    @property
    def given(self) -> bool:
        """Whether devices were named on the command line (`--host` or `--inventory`)."""
        return bool(self.hosts) or self.inventory is not None

    def resolve(self, fallback: Callable[[], list[Host]] | None = None, *, nothing: str) -> list[Host]:
        """The hosts: `--host` specs, else `--inventory`, else ``fallback`` (a recipe's devices); `--limit` applied."""
        fields = HostFields(self.key, self.known_hosts, self.python, self.workdir)
        return resolve_hosts(self.hosts, self.inventory, self.limit, fields=fields, fallback=fallback, nothing=nothing)


@dataclass(frozen=True)
class TimeoutOptions(OptionGroup):
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Seconds a device may stay silent (connect, SSH keepalives) before it counts as failed."),
    ] = None

    def __post_init__(self) -> None:
        if self.timeout is not None and self.timeout <= 0:
            raise InputError(f"--timeout: expected a number of seconds > 0, found {self.timeout:g}")

    @property
    def timeouts(self) -> Timeouts:
        """The waits on a device: ``--timeout`` bounds connecting and silence, the rest keep their defaults."""
        return Timeouts(connect=self.timeout, channel=self.timeout) if self.timeout else Timeouts()


@dataclass(frozen=True)
class KeepOptions(OptionGroup):
    """keep-last-N: what a device keeps after a verified switch to a new engine."""

    keep: Annotated[
        int,
        typer.Option("--keep", min=0, help="After a verified switch, engines kept on the device besides the current and "
                                           "the previous one; older ones are removed (`edgeq gc`)."),
    ] = 1


@dataclass(frozen=True)
class CalibrationOptions(OptionGroup):
    """Choices of the calibration a command builds on that the recipe's calibration block also makes."""

    fit_budget: Annotated[
        bool | None,
        typer.Option("--fit-budget/--no-fit-budget", show_default=False,
                     help="When the predicted drop misses the budget: widen clipped ranges, then keep the most sensitive "
                          "layers in float (time-bounded). Default: the recipe's calibration.fit_budget."),
    ] = None


@dataclass(frozen=True)
class OutputOptions(OptionGroup):
    as_json: JsonOption = False


def _group_parameters(group: type[OptionGroup]) -> list[inspect.Parameter]:
    hints = typing.get_type_hints(group, include_extras=True)
    parameters = []
    for item in dataclasses.fields(group):  # type: ignore[arg-type]
        default = item.default_factory() if item.default_factory is not dataclasses.MISSING else item.default
        parameters.append(inspect.Parameter(item.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=hints[item.name]))
    return parameters


def grouped(command: F) -> F:
    """Let ``command`` take option groups: each parameter annotated with an OptionGroup becomes that group's
    options on the command line, and the command receives the group object built from them."""
    signature = inspect.signature(command, eval_str=True)
    groups: dict[str, type[OptionGroup]] = {}
    parameters: list[inspect.Parameter] = []
    for parameter in signature.parameters.values():
        kind = parameter.annotation
        if isinstance(kind, type) and issubclass(kind, OptionGroup):
            groups[parameter.name] = kind
            parameters += [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in _group_parameters(kind)]
        else:
            parameters.append(parameter)
    positional = [p for p in parameters if p.kind != inspect.Parameter.KEYWORD_ONLY]
    keyword = [p for p in parameters if p.kind == inspect.Parameter.KEYWORD_ONLY]
    names = [p.name for p in parameters]
    if len(names) != len(set(names)):
        raise TypeError(f"{command.__name__}: two option groups declare the same option")

    @functools.wraps(command)
    def run(*args: Any, **values: Any) -> Any:
        for name, group in groups.items():
            fields = [f.name for f in dataclasses.fields(group)]  # type: ignore[arg-type]
            values[name] = group(**{f: values.pop(f) for f in fields})
        return command(*args, **values)

    run.__signature__ = signature.replace(parameters=[*positional, *keyword])  # type: ignore[attr-defined]
    run.__annotations__ = {p.name: p.annotation for p in parameters}
    return run  # type: ignore[return-value]
