"""The device work folder: content-addressed blobs, one folder per engine, the ``current`` symlink,
the activation history, timing caches.

Layout (the folder is 0700: private to the user edgeq logs in as)::

    W/blobs/<sha256>          files the host pushed
    W/engines/<id>/           engine, FP32 reference, build.json, evaluate/bench outputs
    W/current -> engines/<id> switched atomically (symlink under a temp name, then os.replace)
    W/history.json            activations and rollbacks, oldest first
    W/pending.json            the activation or rollback being made (exists only during one)
    W/timing-cache/           TensorRT timing caches, one per device + TensorRT version

An activation writes ``pending.json``, switches ``current``, appends to the history, then removes
``pending.json``. The switch is the commit point: whoever next takes the work folder's lock makes
the history agree with ``current`` (the pending entry is recorded if the switch happened and
dropped if not), so ``status`` and ``rollback`` are right after a crash at any instant. ``current``
is trusted only when its real path is an engine folder of this work folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Set

from .errors import AgentError
from .report import Activation, ActivationReport, BuildReport, GcReport, StatusReport

BUILD_JSON = "build.json"
_ENGINE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_BLOB_NAME = re.compile(r"^[0-9a-f]{64}$")
_STAGING_PREFIX = ".staging-"
_STAGING_LOCK = ".staging.lock"
# Temporary names that a crashed run leaves behind, per sub-folder ("" is W itself).
_LEFTOVERS = {"": (".tmp-", ".current-"), "blobs": (".upload-",), "engines": (".export-",), "agent": (".unpack-",)}
LEFTOVER_AGE = 60.0  # seconds without a change after which a temporary file nobody has open is abandoned
BLOB_GRACE = 3600.0  # seconds since a blob was last pushed or used during which gc keeps it anyway
CRASH_ENV = "EDGEQ_DEVICE_TEST_CRASH"  # tests only: the activation step after which the agent dies
CRASH_EXIT = 86


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def write_json_atomic(path: str, data: Any) -> None:
    """Write JSON to a temp file beside ``path`` and rename it into place."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=2)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _crash_point(name: str) -> None:
    """Die here, as a power cut would, when a test asked for it (EDGEQ_DEVICE_TEST_CRASH=name)."""
    if os.environ.get(CRASH_ENV) == name:
        os._exit(CRASH_EXIT)


def _private(path: str) -> None:
    """Make the folder ``path`` (created if missing) accessible to its owner only."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    if stat.S_IMODE(os.stat(path).st_mode) != 0o700:
        os.chmod(path, 0o700)


def _open_files() -> Optional[Set[str]]:
    """Real paths of the files this user's processes have open (Linux /proc); None where unknown."""
    if not os.path.isdir("/proc/self/fd"):
        return None
    found: Set[str] = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        fd_dir = os.path.join("/proc", pid, "fd")
        try:
            names = os.listdir(fd_dir)
        except OSError:  # another user's process, or one that just ended
            continue
        for fd in names:
            with contextlib.suppress(OSError):
                found.add(os.readlink(os.path.join(fd_dir, fd)))
    return found


def _size(path: str) -> int:
    if os.path.islink(path) or not os.path.isdir(path):
        return os.lstat(path).st_size
    return sum(os.lstat(os.path.join(top, n)).st_size for top, _, names in os.walk(path) for n in names)


def _remove(path: str) -> int:
    """Remove a file, link or folder; the bytes freed (0 if it was already gone)."""
    try:
        size = _size(path)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
    except FileNotFoundError:
        return 0
    return size


@dataclass
class Workdir:
    root: str
    notes: List[str] = field(default_factory=list)  # what this run repaired, for the status report
    swept: List[str] = field(default_factory=list)  # leftovers of crashed runs this run removed (W-relative)
    swept_bytes: int = 0

    @classmethod
    def open(cls, path: str) -> Workdir:
        """The work folder at ``path`` (created private if missing); leftovers of crashed runs are swept."""
        root = os.path.abspath(os.path.expanduser(path))
        _private(root)
        for sub in ("blobs", "engines", "timing-cache"):
            _private(os.path.join(root, sub))
        workdir = cls(root)
        workdir.sweep()
        return workdir

    @property
    def engines(self) -> str:
        return os.path.join(self.root, "engines")

    @property
    def blobs(self) -> str:
        return os.path.join(self.root, "blobs")

    @property
    def timing_cache(self) -> str:
        return os.path.join(self.root, "timing-cache")

    @property
    def current_link(self) -> str:
        return os.path.join(self.root, "current")

    @property
    def history_path(self) -> str:
        return os.path.join(self.root, "history.json")

    @property
    def pending_path(self) -> str:
        return os.path.join(self.root, "pending.json")

    # ---- engines -------------------------------------------------------------------------------

    def engine_dir(self, engine_id: str) -> str:
        if not _ENGINE_ID.match(engine_id) or engine_id == "current":
            raise AgentError(AgentError.INVALID_INPUT, f"invalid engine id: {engine_id!r}")
        return os.path.join(self.engines, engine_id)

    def resolve(self, engine_id: str) -> str:
        """An engine id, or ``current`` for the active one."""
        if engine_id == "current":
            with self._locked():
                current = self.current()
            if current is None:
                raise AgentError(AgentError.NOT_FOUND, "no engine is active (no 'current' link)")
            return current
        return engine_id

    def engine_ids(self) -> List[str]:
        """Built engines, oldest build first."""
        names = [n for n in os.listdir(self.engines) if self._is_engine(n)]
        return sorted(names, key=lambda n: os.path.getmtime(os.path.join(self.engines, n, BUILD_JSON)))

    def _is_engine(self, name: str) -> bool:
        return bool(_ENGINE_ID.match(name)) and os.path.isfile(os.path.join(self.engines, name, BUILD_JSON))

    def load_build(self, engine_id: str) -> BuildReport:
        path = os.path.join(self.engine_dir(engine_id), BUILD_JSON)
        if not os.path.isfile(path):
            raise AgentError(AgentError.NOT_FOUND, f"no built engine {engine_id!r} in {self.engines}")
        with open(path) as f:
            return BuildReport.from_dict(json.load(f))

    @contextlib.contextmanager
    def staging(self, engine_id: str) -> Iterator[str]:
        """A temp folder that becomes engines/<id> when the block succeeds, and vanishes if it fails.

        While the block runs the folder holds a locked file, so a sweep never takes a live build's folder.
        """
        final = self.engine_dir(engine_id)
        if os.path.exists(final):
            raise AgentError(AgentError.CONFLICT, f"engine {engine_id!r} already exists")
        tmp = tempfile.mkdtemp(dir=self.engines, prefix=_STAGING_PREFIX + engine_id + "-")
        lock_path = os.path.join(tmp, _STAGING_LOCK)
        try:
            with open(lock_path, "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                yield tmp
                os.remove(lock_path)
                os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    # ---- leftovers -----------------------------------------------------------------------------

    @staticmethod
    def _staging_abandoned(path: str) -> bool:
        """A staging folder whose build process is gone (its lock is free), or an old one without a lock."""
        try:
            with open(os.path.join(path, _STAGING_LOCK)) as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    return False
                return True
        except FileNotFoundError:  # being created or renamed right now, or left by an older agent
            return time.time() - os.lstat(path).st_mtime > LEFTOVER_AGE
        except OSError:
            return False

    def sweep(self) -> None:
        """Remove what crashed runs left (partial uploads, staging folders, temp files); noted in ``swept``."""
        now = time.time()
        swept: List[str] = []
        freed = 0
        stale: List[str] = []
        for sub, prefixes in _LEFTOVERS.items():
            folder = os.path.join(self.root, sub)
            names = os.listdir(folder) if os.path.isdir(folder) else []
            for name in names:
                path = os.path.join(folder, name)
                if sub == "engines" and name.startswith(_STAGING_PREFIX):
                    if self._staging_abandoned(path):
                        freed += _remove(path)
                        swept.append(os.path.relpath(path, self.root))
                elif name.startswith(prefixes):
                    with contextlib.suppress(FileNotFoundError):
                        if now - os.lstat(path).st_mtime > LEFTOVER_AGE:
                            stale.append(path)
        busy = (_open_files() or set()) if stale else set()
        for path in stale:
            if os.path.realpath(path) not in busy:
                freed += _remove(path)
                swept.append(os.path.relpath(path, self.root))
        self.swept += swept
        self.swept_bytes += freed

    def note_used(self, paths: Iterable[Optional[str]]) -> None:
        """Mark the blobs among ``paths`` as just used, so gc's grace period keeps them."""
        for path in paths:
            if path and os.path.dirname(os.path.realpath(path)) == os.path.realpath(self.blobs):
                with contextlib.suppress(OSError):
                    os.utime(path)

    # ---- activation ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the work folder's lock, with the history made to agree with ``current`` first."""
        with open(os.path.join(self.root, ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._recover()
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _linked(self) -> Optional[str]:
        """The engine id ``current`` points at, checked by real path; None when there is no link.

        Raises AgentError when ``current`` is not a symlink to a built engine folder of this work folder.
        """
        link = self.current_link
        if not os.path.lexists(link):
            return None
        if not os.path.islink(link):
            raise AgentError(AgentError.CONFLICT, f"{link} is not a symlink: move it away, then deploy or roll back")
        real = os.path.realpath(link)
        name = os.path.basename(real)
        if os.path.dirname(real) != os.path.realpath(self.engines) or not self._is_engine(name):
            raise AgentError(
                AgentError.CONFLICT,
                f"{link} points at {os.readlink(link)}, which is not a built engine in {self.engines}",
            )
        return name

    def current(self) -> Optional[str]:
        """The active engine (checked by real path); AgentError when ``current`` points elsewhere."""
        return self._linked()

    def history(self) -> List[Activation]:
        if not os.path.exists(self.history_path):
            return []
        with open(self.history_path) as f:
            return [Activation.from_dict(e) for e in json.load(f)]

    @staticmethod
    def _stack_of(history: List[Activation]) -> List[str]:
        """Replay a history: activations push, rollbacks pop; the last item is ``current``."""
        stack: List[str] = []
        for entry in history:
            if entry.action == "rollback":
                if stack:
                    stack.pop()
            else:
                stack.append(entry.engine_id)
        return stack

    def _stack(self) -> List[str]:
        return self._stack_of(self.history())

    def previous(self) -> Optional[str]:
        stack = self._stack()
        return stack[-2] if len(stack) > 1 else None

    def _switch(self, engine_id: str) -> None:
        tmp = os.path.join(self.root, f".current-{os.getpid()}")
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(os.path.join("engines", engine_id), tmp)
        os.replace(tmp, self.current_link)

    def _record(self, entry: Activation) -> None:
        write_json_atomic(self.history_path, [e.to_dict() for e in self.history()] + [entry.to_dict()])

    def _recover(self) -> None:
        """Make the history agree with ``current`` after a crash (lock held); repairs go to ``notes``."""
        history = self.history()
        try:
            linked = self._linked()
        except AgentError as exc:  # not repaired here, current() refuses it with the reason
            linked = None
            stack = self._stack_of(history)
            if os.path.islink(self.current_link) and stack and self._is_engine(stack[-1]):
                self._switch(stack[-1])  # current was damaged or moved: point it back at the recorded engine
                linked = stack[-1]
                self.notes.append(f"{exc.message}; re-pointed at engines/{linked} (the history's active engine)")
        if os.path.exists(self.pending_path):
            with open(self.pending_path) as f:
                pending = Activation.from_dict(json.load(f))
            if linked == pending.engine_id and (not history or history[-1] != pending):
                self._record(pending)  # the switch happened: record it with the entry it was made with
                history.append(pending)
            os.remove(self.pending_path)
        stack = self._stack_of(history)
        top = stack[-1] if stack else None
        if linked is not None and linked != top:  # switched by something that left no record
            note = f"current pointed at {linked} without a history entry; recorded"
            rolled_back = len(stack) > 1 and stack[-2] == linked
            self._record(Activation("rollback" if rolled_back else "activate", linked, top, utc_now(),
                                    {"by": "edgeq-agent", "recovered": note}))
            self.notes.append(note)

    def _commit(self, entry: Activation) -> None:
        """Switch ``current`` to ``entry.engine_id`` and record ``entry``, as one step (see the module doc)."""
        write_json_atomic(self.pending_path, entry.to_dict())
        _crash_point("pending-written")
        self._switch(entry.engine_id)
        _crash_point("switched")
        self._record(entry)
        _crash_point("recorded")
        os.remove(self.pending_path)

    def activate(self, engine_id: str, meta: Dict[str, Any]) -> ActivationReport:
        self.load_build(engine_id)
        with self._locked():
            try:
                current = self._linked()
            except AgentError:
                if not os.path.islink(self.current_link):
                    raise
                current = None  # a damaged link that no history could repair: this activation replaces it
            if current == engine_id:
                return ActivationReport(current=engine_id, previous=self.previous(), changed=False)
            entry = Activation("activate", engine_id, current, utc_now(), meta)
            self._commit(entry)
            return ActivationReport(current=engine_id, previous=current, changed=True, entry=entry)

    def rollback(self, meta: Dict[str, Any]) -> ActivationReport:
        with self._locked():
            stack = self._stack()
            if len(stack) < 2:
                raise AgentError(AgentError.NOT_FOUND, "nothing to roll back to: fewer than two activations")
            target, current = stack[-2], stack[-1]
            self.load_build(target)
            entry = Activation("rollback", target, current, utc_now(), meta)
            self._commit(entry)
            return ActivationReport(current=target, previous=current, changed=True, entry=entry)

    def status(self) -> StatusReport:
        with self._locked():
            current = self.current()
            return StatusReport(
                workdir=self.root,
                current=current,
                previous=self.previous(),
                build=self.load_build(current) if current else None,
                engines=self.engine_ids(),
                history=self.history(),
                notes=list(self.notes),
            )

    # ---- garbage collection --------------------------------------------------------------------

    def _referenced_blobs(self, engine_ids: Iterable[str]) -> Set[str]:
        """Blobs the kept engines were built from, and those of unpacked agent versions."""
        names: Set[str] = set()
        for engine_id in engine_ids:
            options = self.load_build(engine_id).options
            for path in (options.model, options.qdq, options.cache):
                if path:
                    names.add(os.path.basename(path))
        with contextlib.suppress(FileNotFoundError):
            names.update(os.listdir(os.path.join(self.root, "agent")))
        return names

    def gc(self, keep: int, blob_grace: float = BLOB_GRACE) -> GcReport:
        """Drop all but the ``keep`` newest engine folders, never ``current`` or the previous one; then
        the blobs no kept engine was built from that were not pushed or used for ``blob_grace`` seconds,
        and what crashed runs left. Remaining blobs are made private (0600)."""
        if keep < 0 or blob_grace < 0:
            raise AgentError(AgentError.INVALID_INPUT, "--keep and --blob-grace must be >= 0")
        with self._locked():
            protected = {self.current(), self.previous()}
            ids = self.engine_ids()
            newest = set(ids[len(ids) - keep:]) if keep else set()
            removed = [i for i in ids if i not in protected and i not in newest]
            freed = sum(_remove(self.engine_dir(engine_id)) for engine_id in removed)
            kept = [i for i in ids if i not in removed]
            referenced = self._referenced_blobs(kept)
            now = time.time()
            blobs_removed = []
            for name in sorted(os.listdir(self.blobs)):
                path = os.path.join(self.blobs, name)
                if not _BLOB_NAME.match(name) or not os.path.isfile(path):
                    continue
                if name not in referenced and now - os.stat(path).st_mtime > blob_grace:
                    freed += _remove(path)
                    blobs_removed.append(name)
                elif stat.S_IMODE(os.stat(path).st_mode) != 0o600:
                    os.chmod(path, 0o600)
            self.sweep()
            return GcReport(removed=removed, kept=kept, blobs_removed=blobs_removed, swept=sorted(self.swept),
                            bytes_freed=freed + self.swept_bytes)
