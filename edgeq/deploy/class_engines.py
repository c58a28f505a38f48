"""Build once per device class: the first device of a class builds, the others of that class wait for it
and install the same engine. A class is module, TensorRT version, compute capability and DLA setting."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def class_key(
    module: str | None, tensorrt: str | None, compute_capability: str | None, dla_core: int | None, backend: str
) -> str:
    """The key devices must share to run each other's engines (TensorRT engines are not portable beyond it)."""
    dla = f"dla{dla_core}" if dla_core is not None else "gpu"
    runtime = f"trt{tensorrt}" if tensorrt else backend
    parts = [module or "unknown-module", runtime, f"sm{compute_capability}" if compute_capability else "cpu", dla]
    return "/".join(parts)


def folder_name(key: str) -> str:
    """A class key as a file-system name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key)


@dataclass(frozen=True)
class ClassEngine:
    """An engine built on one device of a class, fetched to the host for the others."""

    key: str
    file: Path
    builder: str
    build_seconds: float


SignOfLife = Callable[[], float]  # time.monotonic() of the builder's device's last sign of life


def always_alive() -> float:
    """A builder that is never presumed hung (this machine as the device: nothing to watch)."""
    return time.monotonic()


@dataclass
class _Lease:
    """Who builds a class: held while the builder's device shows a sign of life within ``lease`` seconds."""

    holder: str
    alive: SignOfLife


class ClassEngines:
    """Who builds each class, and the engines already built; blocks waiters until their class is ready.

    The builder holds a lease: when its device gives no sign of life (an answered SSH keepalive) for
    ``lease`` seconds, the next waiter takes the build over, whatever the hung builder's thread is doing.
    """

    def __init__(self, ready: dict[str, ClassEngine] | None = None, lease: float = 60.0) -> None:
        self._ready = dict(ready or {})
        self._building: dict[str, _Lease] = {}
        self._lease = lease
        self._changed = threading.Condition()

    def _expires_in(self, key: str) -> float:
        return self._building[key].alive() + self._lease - time.monotonic()

    def claim(self, key: str, holder: str = "", alive: SignOfLife = always_alive) -> ClassEngine | None:
        """The class's engine once it is built; None means the caller (``holder``, whose device's last sign of
        life ``alive`` tells) is now its builder and must :meth:`publish` or :meth:`abandon`."""
        with self._changed:
            while key not in self._ready and key in self._building:
                left = self._expires_in(key)
                if left <= 0:
                    break  # the builder's lease expired: take the build over
                self._changed.wait(left)
            if key in self._ready:
                return self._ready[key]
            self._building[key] = _Lease(holder, alive)
            return None

    def holder(self, key: str) -> str | None:
        """Who builds ``key`` now (None: nobody)."""
        with self._changed:
            lease = self._building.get(key)
            return lease.holder if lease else None

    def publish(self, engine: ClassEngine) -> None:
        with self._changed:
            self._ready[engine.key] = engine
            self._building.pop(engine.key, None)
            self._changed.notify_all()

    def abandon(self, key: str, holder: str = "") -> None:
        """The builder failed: the next device of the class to claim it builds instead (a builder whose lease
        was taken over frees nothing)."""
        with self._changed:
            lease = self._building.get(key)
            if lease is not None and lease.holder == holder:
                del self._building[key]
            self._changed.notify_all()
