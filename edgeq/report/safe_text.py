"""Text from outside (devices, file names, user files) made safe for a terminal and for rich.

:func:`clean` drops ANSI escape sequences, shows other control characters and undecodable bytes
as ``\\xNN``; :func:`plain` wraps the result in a rich ``Text`` so that ``[b]``-style markup in it
is printed as written, never interpreted.
"""

from __future__ import annotations

import re

from rich.text import Text

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), DCS/SOS/PM/APC strings, and two-byte ESC sequences;
# then the 8-bit CSI/OSC forms.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b[ -/]*[0-~]"
    r"|\x9b[0-?]*[ -/]*[@-~]"
    r"|\x9d[^\x07\x9c]*[\x07\x9c]?"
)
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _shown(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (os.fsdecode's surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def clean(text: str) -> str:
    """``text`` without terminal escape sequences; other control characters and undecodable bytes escaped.

    Newlines and tabs are kept.
    """
    return _UNSAFE.sub(_shown, _ESCAPES.sub("", str(text)))


def plain(text: object) -> Text:
    """A rich Text of ``clean(text)``: printed literally (no markup, no escapes)."""
    return Text(clean(str(text)))


def path_line(text: str) -> Text:
    """A line that holds a path (``report: /a/b/report.json``): never wrapped or cut, however narrow the console
    (print it with ``crop=False``); the terminal wraps it, and a copy of it is the whole path."""
    return Text(clean(text), no_wrap=True, overflow="ignore")


def error_line(message: str) -> Text:
    """``error: MESSAGE`` for stderr, the message shown literally."""
    return Text.assemble(("error: ", "bold red"), clean(message))
