"""Reading the text files users write (recipes, inventories): one clear error naming the file.

Both go through :mod:`edgeq.safe_yaml`: regular files only, a size cap, bounded YAML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeq import safe_yaml


def read_text(path: Path, what: str) -> str:
    """The file's UTF-8 text; ``what`` ("recipe", "inventory") names it in errors."""
    return safe_yaml.read_text(Path(path), what)


def parse_yaml(text: str, path: Path) -> Any:
    """YAML text as Python data; a syntax error names the file, line and column; hostile documents are refused."""
    return safe_yaml.parse(text, path)
