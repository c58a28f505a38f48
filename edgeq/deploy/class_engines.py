"""Build once per device class: the first device of a class builds, the others of that class wait for it
and install the same engine. A class is module, TensorRT version, compute capability and DLA setting."""

from __future__ import annotations

import re
import threading
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


class ClassEngines:
    """Who builds each class, and the engines already built; blocks waiters until their class is ready."""

    def __init__(self, ready: dict[str, ClassEngine] | None = None) -> None:
        self._ready = dict(ready or {})
        self._building: set[str] = set()
        self._changed = threading.Condition()

    def claim(self, key: str) -> ClassEngine | None:
        """The class's engine once it is built; None means the caller is now its builder and must
        :meth:`publish` or :meth:`abandon`."""
        with self._changed:
            while key not in self._ready and key in self._building:
                self._changed.wait()
            if key in self._ready:
                return self._ready[key]
            self._building.add(key)
            return None

    def publish(self, engine: ClassEngine) -> None:
        with self._changed:
            self._ready[engine.key] = engine
            self._building.discard(engine.key)
            self._changed.notify_all()

    def abandon(self, key: str) -> None:
        """The builder failed: the next device of the class to claim it builds instead."""
        with self._changed:
            self._building.discard(key)
            self._changed.notify_all()
