"""The rollout journal: one JSON line per event, flushed and fsync'd before the step it records goes on.

The first line is the rollout's header (everything needed to resume it: hosts, waves, options,
engine ids); the rest are :class:`Entry` lines. A torn last line (the host died mid-write) is
ignored when the journal is read back.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgeq.deploy.steps import Step
from edgeq.errors import InputError
from edgeq.hosts import Host
from edgeq.recipe import Recipe
from edgeq.strenum import StrEnum


class Event(StrEnum):
    """What a journal line records."""

    HEADER = "rollout"  # the first line
    WAVE = "wave"  # status: a WaveStatus (start | passed | failed)
    STEP = "step"  # a device step; status: a StepStatus (start | ok | failed | interrupted)
    DEVICE = "device"  # a device's outcome; status: a Phase
    ROLLBACK = "rollback"  # status: ok | failed
    RESUME = "resume"  # the host picked the rollout up again from this journal
    END = "end"  # status: the rollout's Outcome
    PROGRESS = "progress"  # how far a running step got (data: done, total); for watchers, never journaled


class Switching(StrEnum):
    """When the devices of a wave switch to the new engine."""

    WAVE = "wave"  # rollout: together, once the whole wave passed its gates and failure budget
    DEVICE = "device"  # deploy: each device as soon as its own gates passed


class RolloutHeader(BaseModel):
    """What a rollout was asked to do; written once, first, and read back by ``--resume``."""

    id: str
    started_at: float
    operator: str
    recipe: Path
    recipe_name: str
    inventory: Path | None
    hosts: list[Host]
    targets: dict[str, str]  # device name -> target profile
    engine_ids: dict[str, str]  # target profile -> engine id
    waves: list[list[str]]  # device names, wave by wave
    concurrency: int
    max_failures: str
    build_each: bool
    switching: Switching = Switching.WAVE
    keep: int | None = 1  # engines gc keeps after a verified switch besides current and previous (None: no gc)
    fit_budget: bool | None = None  # --fit-budget / --no-fit-budget as given (None: the recipe's); resume calibrates alike


class Entry(BaseModel):
    """One journal line after the header; ``status`` is read by ``event`` (see :class:`Event`)."""

    model_config = ConfigDict(frozen=True)

    event: Event
    status: str
    device: str | None = None
    step: Step | None = None
    wave: int | None = None
    data: dict[str, Any] = {}
    at: float = Field(default_factory=time.time)


class StepData(BaseModel):
    """The data of a step's closing entry: its typed result (as JSON), its costs, its error."""

    result: dict[str, Any] | None = None
    remote_seconds: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0
    error: str | None = None


def new_id() -> str:
    """A rollout id that sorts by start time: ``20260128-061500-3fa2``."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


def operator() -> str:
    """Who runs the rollout: user@machine."""
    return f"{getpass.getuser()}@{socket.gethostname()}"


def rollouts_dir(recipe: Recipe) -> Path:
    """Where a recipe's rollout journals and reports live."""
    return recipe.folder / "edgeq-out" / "rollouts"


class Journal:
    """An append-only, fsync'd JSON-lines file; safe to append from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    @classmethod
    def create(cls, folder: Path, header: RolloutHeader) -> Journal:
        """Start the journal of a new rollout with its header."""
        folder.mkdir(parents=True, exist_ok=True)
        journal = cls(folder / f"{header.id}.jsonl")
        if journal.path.exists():
            raise InputError(f"{journal.path}: a rollout with id {header.id} already exists")
        journal._write({"event": Event.HEADER, **header.model_dump(mode="json")})
        return journal

    @classmethod
    def reopen(cls, path: Path) -> Journal:
        """Continue an existing journal; a torn last line (the host died mid-write) is cut off first, so the
        next entry starts on a line of its own."""
        with open(path, "r+b") as handle:
            data = handle.read()
            if data and not data.endswith(b"\n"):
                handle.truncate(data.rfind(b"\n") + 1)
                handle.flush()
                os.fsync(handle.fileno())
        return cls(path)

    def append(self, entry: Entry) -> None:
        """Write ``entry`` durably: it is on disk when this returns."""
        self._write(entry.model_dump(mode="json"))

    def _write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, default=str) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())


def find(folder: Path, rollout_id: str) -> Path:
    """The journal of rollout ``rollout_id`` in ``folder``; an error lists the ids that exist."""
    path = folder / f"{rollout_id}.jsonl"
    if not path.exists():
        known = sorted(p.stem for p in folder.glob("*.jsonl")) if folder.is_dir() else []
        shown = ", ".join(known[-5:]) or "none"
        raise InputError(f"{path}: no rollout journal with id {rollout_id!r} (rollouts there: {shown})")
    return path


def read(path: Path) -> tuple[RolloutHeader, list[Entry]]:
    """The header and entries of a journal; a torn last line is dropped, other damage is an error."""
    lines = path.read_text(encoding="utf-8").splitlines()
    records: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break
            raise InputError(f"{path}: line {number} is not valid JSON; the journal is damaged") from None
    if not records or records[0].get("event") != Event.HEADER:
        raise InputError(f"{path}: not a rollout journal (the first line must be the rollout header)")
    try:
        header = RolloutHeader.model_validate({k: v for k, v in records[0].items() if k != "event"})
        return header, [Entry.model_validate(r) for r in records[1:]]
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputError(f"{path}: the journal is damaged: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
