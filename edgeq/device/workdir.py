"""The device work folder: content-addressed blobs, one folder per engine, the ``current`` symlink,
the activation history, timing caches.

Layout::

    W/blobs/<sha256>          files the host pushed
    W/engines/<id>/           engine, FP32 reference, build.json, evaluate/bench outputs
    W/current -> engines/<id> switched atomically (symlink under a temp name, then os.replace)
    W/history.json            activations and rollbacks, oldest first
    W/timing-cache/           TensorRT timing caches, one per device + TensorRT version
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional

from .errors import AgentError
from .report import Activation, ActivationReport, BuildReport, GcReport, StatusReport

BUILD_JSON = "build.json"
_ENGINE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_STAGING_PREFIX = ".staging-"


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_json_atomic(path: str, data: Any) -> None:
    """Write JSON to a temp file beside ``path`` and rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2)
    os.replace(tmp, path)


@dataclass
class Workdir:
    root: str

    @classmethod
    def open(cls, path: str) -> "Workdir":
        root = os.path.abspath(os.path.expanduser(path))
        for sub in ("blobs", "engines", "timing-cache"):
            os.makedirs(os.path.join(root, sub), exist_ok=True)
        return cls(root)

    @property
    def engines(self) -> str:
        return os.path.join(self.root, "engines")

    @property
    def timing_cache(self) -> str:
        return os.path.join(self.root, "timing-cache")

    @property
    def current_link(self) -> str:
        return os.path.join(self.root, "current")

    @property
    def history_path(self) -> str:
        return os.path.join(self.root, "history.json")

    # ---- engines -------------------------------------------------------------------------------

    def engine_dir(self, engine_id: str) -> str:
        if not _ENGINE_ID.match(engine_id) or engine_id == "current":
            raise AgentError(AgentError.INVALID_INPUT, "invalid engine id: {!r}".format(engine_id))
        return os.path.join(self.engines, engine_id)

    def resolve(self, engine_id: str) -> str:
        """An engine id, or ``current`` for the active one."""
        if engine_id == "current":
            current = self.current()
            if current is None:
                raise AgentError(AgentError.NOT_FOUND, "no engine is active (no 'current' link)")
            return current
        return engine_id

    def engine_ids(self) -> List[str]:
        """Built engines, oldest build first."""
        names = [n for n in os.listdir(self.engines) if os.path.isfile(os.path.join(self.engines, n, BUILD_JSON))]
        return sorted(names, key=lambda n: os.path.getmtime(os.path.join(self.engines, n, BUILD_JSON)))

    def load_build(self, engine_id: str) -> BuildReport:
        path = os.path.join(self.engine_dir(engine_id), BUILD_JSON)
        if not os.path.isfile(path):
            raise AgentError(AgentError.NOT_FOUND, "no built engine {!r} in {}".format(engine_id, self.engines))
        with open(path) as f:
            return BuildReport.from_dict(json.load(f))

    @contextlib.contextmanager
    def staging(self, engine_id: str) -> Iterator[str]:
        """A temp folder that becomes engines/<id> when the block succeeds, and vanishes if it fails."""
        final = self.engine_dir(engine_id)
        if os.path.exists(final):
            raise AgentError(AgentError.CONFLICT, "engine {!r} already exists".format(engine_id))
        tmp = tempfile.mkdtemp(dir=self.engines, prefix=_STAGING_PREFIX + engine_id + "-")
        try:
            yield tmp
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    # ---- activation ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(os.path.join(self.root, ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def current(self) -> Optional[str]:
        if not os.path.islink(self.current_link):
            return None
        return os.path.basename(os.readlink(self.current_link).rstrip("/"))

    def history(self) -> List[Activation]:
        if not os.path.exists(self.history_path):
            return []
        with open(self.history_path) as f:
            return [Activation.from_dict(e) for e in json.load(f)]

    def _stack(self) -> List[str]:
        """Replay the history: activations push, rollbacks pop; the last item is ``current``."""
        stack: List[str] = []
        for entry in self.history():
            if entry.action == "rollback":
                stack.pop()
            else:
                stack.append(entry.engine_id)
        return stack

    def previous(self) -> Optional[str]:
        stack = self._stack()
        return stack[-2] if len(stack) > 1 else None

    def _switch(self, engine_id: str) -> None:
        tmp = os.path.join(self.root, ".current-{}".format(os.getpid()))
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(os.path.join("engines", engine_id), tmp)
        os.replace(tmp, self.current_link)

    def _record(self, entry: Activation) -> None:
        write_json_atomic(self.history_path, [e.to_dict() for e in self.history()] + [entry.to_dict()])

    def activate(self, engine_id: str, meta: Dict[str, Any]) -> ActivationReport:
        self.load_build(engine_id)
        with self._locked():
            current = self.current()
            if current == engine_id:
                return ActivationReport(current=engine_id, previous=self.previous(), changed=False)
            entry = Activation("activate", engine_id, current, utc_now(), meta)
            self._switch(engine_id)
            self._record(entry)
            return ActivationReport(current=engine_id, previous=current, changed=True, entry=entry)

    def rollback(self, meta: Dict[str, Any]) -> ActivationReport:
        with self._locked():
            stack = self._stack()
            if len(stack) < 2:
                raise AgentError(AgentError.NOT_FOUND, "nothing to roll back to: fewer than two activations")
            target, current = stack[-2], stack[-1]
            self.load_build(target)
            entry = Activation("rollback", target, current, utc_now(), meta)
            self._switch(target)
            self._record(entry)
            return ActivationReport(current=target, previous=current, changed=True, entry=entry)

    def status(self) -> StatusReport:
        current = self.current()
        return StatusReport(
            workdir=self.root,
            current=current,
            previous=self.previous(),
            build=self.load_build(current) if current else None,
            engines=self.engine_ids(),
            history=self.history(),
        )

    def gc(self, keep: int) -> GcReport:
        """Drop all but the ``keep`` newest engine folders, never ``current`` or the previous one,
        and staging folders older than a day (left by crashed builds)."""
        if keep < 0:
            raise AgentError(AgentError.INVALID_INPUT, "--keep must be >= 0")
        with self._locked():
            protected = {self.current(), self.previous()}
            ids = self.engine_ids()
            newest = set(ids[len(ids) - keep:]) if keep else set()
            removed = [i for i in ids if i not in protected and i not in newest]
            for engine_id in removed:
                shutil.rmtree(self.engine_dir(engine_id))
            for name in os.listdir(self.engines):
                path = os.path.join(self.engines, name)
                if name.startswith(_STAGING_PREFIX) and time.time() - os.path.getmtime(path) > 86400:
                    shutil.rmtree(path, ignore_errors=True)
            return GcReport(removed=removed, kept=[i for i in ids if i not in removed])
