"""How far a long agent command got, told to the host as it runs: lines ``edgeq-progress DONE TOTAL`` on stderr
(at most one per :data:`INTERVAL` seconds, and the last), which the host reads off the stream and draws as a bar.

A command says how much work it expects (:func:`expect`); loops that do the work call :func:`advance`. Nothing
is printed until work was done, so a step whose loop does not report (trtexec's own benchmark) stays a plain
"running" on the host rather than a bar stuck at 0.
"""

from __future__ import annotations

import sys
import time
from typing import Optional

PREFIX = "edgeq-progress "
INTERVAL = 0.5  # seconds between two lines

_state = {"done": 0, "total": 0, "said": 0.0}


def expect(total: int) -> None:
    """This command's work from now on: ``total`` units (samples run, timed calls)."""
    _state.update(done=0, total=max(int(total), 0), said=0.0)


def advance(units: int = 1, now: Optional[float] = None) -> None:
    """``units`` more done; a line for the host when the last one is due (or all work is done)."""
    if not _state["total"]:
        return
    done = min(int(_state["done"]) + units, int(_state["total"]))
    _state["done"] = done
    now = time.monotonic() if now is None else now
    if done == _state["total"] or now - float(_state["said"]) >= INTERVAL:
        _state["said"] = now
        sys.stderr.write(f"{PREFIX}{done} {int(_state['total'])}\n")
        sys.stderr.flush()
