"""YAML for files people write (recipes, inventories), with bounds on what a hostile file can cost.

PyYAML's ``safe_load`` builds no arbitrary objects, but nothing bounds the work: a few hundred bytes
of nested aliases ("billion laughs") expand into a structure with billions of nodes for whoever
walks it (validation, error messages). Here a document is refused when it is larger than
:data:`MAX_BYTES`, uses more than :data:`MAX_ALIASES` aliases, nests deeper than :data:`MAX_DEPTH`,
or would expand to more than :data:`MAX_NODES` nodes; each refusal is one InputError naming the
file and the limit.
"""

from __future__ import annotations

import os
import reprlib
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, SequenceNode

from edgeq.errors import InputError

MAX_BYTES = 4 * 1024 * 1024  # an inventory of some 20 000 devices
MAX_ALIASES = 100
MAX_DEPTH = 64
MAX_NODES = 200_000
EXCERPT = 60  # characters of a value an error message may show


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict, _REPR.maxstring, _REPR.maxother = 3, 6, 6, 4, 40, 40


def excerpt(value: Any, limit: int = EXCERPT) -> str:
    """A short glimpse of ``value`` for an error message: bounded work however big or shared the value is."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Limited(Exception):
    """A limit was crossed while composing (turned into an InputError with the file name)."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts aliases and depth while composing the node graph."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Limited(f"more than {MAX_ALIASES} aliases (*name)")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Limited(f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _expanded_size(root: Node) -> int:
    """Nodes the document would have with every alias written out (iterative: aliases may nest deep)."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in _children(node))
            if sizes[key] > MAX_NODES:
                raise _Limited(f"it expands to more than {MAX_NODES} values (aliases written out)")
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise _Limited("an alias refers to a node that contains it (a recursive structure)")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in sizes)
    return sizes[id(root)]


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of the regular file ``path``, at most MAX_BYTES; ``what`` ("recipe") names it in errors."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open
    except FileNotFoundError:
        raise InputError(f"{path}: {what} file not found") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what} ({exc.strerror or exc.__class__.__name__})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise InputError(f"{path}: cannot read the {what}: {'a folder' if stat.S_ISDIR(mode) else 'not a regular file'}")
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(MAX_BYTES + 1)
        except OSError as exc:
            raise InputError(f"{path}: cannot read the {what} ({exc.strerror or exc.__class__.__name__})") from None
    if len(data) > MAX_BYTES:
        raise InputError(f"{path}: the {what} is larger than {MAX_BYTES // (1024 * 1024)} MiB; edgeq reads no bigger {what} files")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: the {what} is not UTF-8 text (byte {exc.start})") from None


def parse(text: str, path: Path) -> Any:
    """YAML text as Python data within the limits above; a syntax error names the file, line and column."""
    if len(text) > MAX_BYTES:
        raise InputError(f"{path}: larger than {MAX_BYTES // (1024 * 1024)} MiB; edgeq reads no bigger YAML files")
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return loader.construct_document(node)
    except _Limited as exc:
        raise InputError(f"{path}: refused: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = (str(getattr(exc, "problem", None) or exc).splitlines() or [""])[0]
        raise InputError(f"{path}: not valid YAML{where}: {problem[:120]}") from None
    finally:
        loader.dispose()
