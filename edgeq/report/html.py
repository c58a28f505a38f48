"""A self-contained HTML report: summary tables and PNG charts embedded as data URIs."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class HtmlSection:
    """A titled section: rows of (name, value) and/or a PNG chart."""

    title: str
    rows: Sequence[tuple[str, str]] = ()
    png: bytes | None = None
    note: str = ""


@dataclass
class HtmlReport:
    """A whole page."""

    title: str
    verdict: str
    passed: bool
    sections: list[HtmlSection] = field(default_factory=list)

    def render(self) -> str:
        """The page as one HTML string."""
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{html.escape(self.title)}</title>",
            "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:60em}"
            "table{border-collapse:collapse}td{border-bottom:1px solid #ddd;padding:.2em 1em .2em 0}"
            ".pass{color:#17803d}.fail{color:#b42318}img{max-width:100%}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
            f"<p class='{'pass' if self.passed else 'fail'}'><b>{html.escape(self.verdict)}</b></p>",
        ]
        for section in self.sections:
            parts.append(f"<h2>{html.escape(section.title)}</h2>")
            if section.note:
                parts.append(f"<p>{html.escape(section.note)}</p>")
            if section.rows:
                parts.append("<table>")
                parts += [f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in section.rows]
                parts.append("</table>")
            if section.png is not None:
                data = base64.b64encode(section.png).decode("ascii")
                parts.append(f"<img alt='{html.escape(section.title)}' src='data:image/png;base64,{data}'>")
        parts.append("</body></html>\n")
        return "\n".join(parts)
