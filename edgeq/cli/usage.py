"""How commands show themselves in `--help`: usage lines as people write them (`edgeq deploy [OPTIONS] RECIPE`,
an optional argument in brackets) and flags without a value type (typer's rich help would show `{RECIPE}` and
`<bool>`). Every command and group of the app is made with these classes (:class:`EdgeqTyper`)."""

from __future__ import annotations

from typing import Any

import typer
from typer._click import Context, Parameter
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


class _Flag(TyperOption):
    """A flag (`--json`, `--help`): it takes no value, so rich help shows no type for it."""

    def display_type_rich(self, ctx: Context) -> str | None:
        return None


def _shown(params: list[Parameter]) -> list[Parameter]:
    for param in params:
        if type(param) is TyperOption and param.is_flag:
            param.__class__ = _Flag  # same fields; only its help display differs
    return params


def argument_usage(param: TyperArgument) -> str:
    """An argument in a usage line: ``RECIPE`` when required, ``[RECIPE]`` when not, ``...`` when repeated."""
    name = (param.metavar or param.name or "").upper()
    return (name if param.required else f"[{name}]") + ("..." if param.nargs != 1 else "")


class EdgeqCommand(TyperCommand):
    def get_params(self, ctx: Context) -> list[Parameter]:
        return _shown(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            pieces += [argument_usage(param)] if isinstance(param, TyperArgument) else param.get_usage_pieces(ctx)
        return pieces


class EdgeqGroup(TyperGroup):
    def get_params(self, ctx: Context) -> list[Parameter]:
        return _shown(super().get_params(ctx))


class EdgeqTyper(typer.Typer):
    """A typer app whose groups and commands are :class:`EdgeqGroup` and :class:`EdgeqCommand`."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(cls=EdgeqGroup, **settings)

    def command(self, name: str | None = None, **settings: Any) -> Any:
        return super().command(name, cls=EdgeqCommand, **settings)
