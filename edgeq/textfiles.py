"""Reading the text files users write (recipes, inventories): one clear error naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from edgeq.errors import InputError


def read_text(path: Path, what: str) -> str:
    """The file's UTF-8 text; ``what`` ("recipe", "inventory") names it in errors."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: {what} file not found") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the {what} ({exc.__class__.__name__})") from None


def parse_yaml(text: str, path: Path) -> Any:
    """YAML text as Python data; a syntax error names the file, line and column."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InputError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
