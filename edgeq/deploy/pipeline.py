"""One device's way to a new engine, the same for `deploy` and `rollout`: prepare the engine beside the one
the device runs and judge it there, switch to it, or go back to the previous one.

Nothing before :meth:`DevicePipeline.switch` changes what a device runs: the new engine is built (or
installed from another device of its class, or found there already), then evaluated, benchmarked and
smoke-tested by engine id, and judged by the gates. Every step goes through an :class:`Observer`, which
sees its start and its typed result or error: the journal for a rollout, the timer and live line for a
deploy. A device's failure is recorded as its outcome and ends only that device's work.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from edgeq.deploy.class_engines import (
    ClassEngine,
    ClassEngines,
    SignOfLife,
    always_alive,
    class_key,
    folder_name,
)
from edgeq.deploy.gates import check_gates
from edgeq.deploy.plan import DeployPlan
from edgeq.deploy.session import DeviceSession
from edgeq.deploy.steps import (
    Activated,
    Benched,
    Built,
    ClassRole,
    Collected,
    Evaluated,
    Fetched,
    Gated,
    Installed,
    Phase,
    Probed,
    Pushed,
    Reused,
    RolledBack,
    Smoked,
    Status,
    Step,
    StepResult,
)
from edgeq.device.workdir import BLOB_GRACE
from edgeq.errors import DeviceError, EdgeqError, GateError

DEFAULT_KEEP = 1  # engines kept after a switch besides the current and the previous one


@dataclass
class StepSlot:
    """Filled in while a step runs: its result, and what its remote commands cost."""

    result: StepResult | None = None
    remote_seconds: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0


class Observer(Protocol):
    """Sees every step and outcome of the devices it watches."""

    def step(self, device: str, step: Step) -> AbstractContextManager[StepSlot]:
        """Around one step: records its start, then its slot (result and costs) or the error it raised."""

    def device(self, device: str, phase: Phase, *, error: str | None = None) -> None:
        """A device's outcome."""

    def rollback(self, device: str, ok: bool, *, current: str | None = None, error: str | None = None) -> None:
        """How a device's return to its previous engine ended."""

    def progress(self, device: str, step: Step, done: int, total: int) -> None:
        """How far a running step got on the device (the agent's count of samples run or calls timed)."""


def describe_error(exc: BaseException) -> str:
    """The one-line message of an error, for journals and reports."""
    if isinstance(exc, EdgeqError):
        return exc.message
    return f"{exc.__class__.__name__}: {exc}"


@dataclass
class DeviceRun:
    """One device while the pipeline works on it."""

    name: str
    session: DeviceSession
    scores: Path  # where the scores pulled from the device go
    switched_before: bool = False  # an earlier run of this rollout started switching it (before a crash)
    explain: Callable[[BaseException], str] = describe_error  # a hung device says so, not "connection lost"
    alive: SignOfLife = always_alive  # when the device last answered (an SSH keepalive): its class-build lease


def deploy_meta(plan: DeployPlan) -> dict[str, str]:
    """Who deployed what, recorded on the device with the build and the activation."""
    return {
        "recipe": plan.recipe.name,
        "target": plan.target.name,
        "by": f"{getpass.getuser()}@{socket.gethostname()}",
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "calibration_key": plan.calibration.report.key,
    }


@dataclass
class DevicePipeline:
    """The steps of one plan on any device. ``measure_current``: a device already on the engine is measured
    and judged again (deploy) rather than only verified (rollout). ``engines``: build once per device
    class and install elsewhere (None: build on each device)."""

    plan: DeployPlan
    observer: Observer
    meta: dict[str, Any] = field(default_factory=dict)
    measure_current: bool = False
    engines: ClassEngines | None = None
    engines_dir: Path | None = None  # where engines fetched for the others of a class are kept
    keep: int | None = DEFAULT_KEEP  # after a verified switch, gc keeps this many more engines (None: no gc)

    @contextmanager
    def _step(self, run: DeviceRun, step: Step) -> Iterator[StepSlot]:
        transport = run.session.transport
        seconds, sent, received = transport.remote_seconds, transport.bytes_sent, transport.bytes_received
        with self.observer.step(run.name, step) as slot:
            transport.progress = lambda done, total: self.observer.progress(run.name, step, done, total)
            try:
                yield slot
            finally:
                transport.progress = None
                slot.remote_seconds = round(transport.remote_seconds - seconds, 4)
                slot.bytes_sent = transport.bytes_sent - sent
                slot.bytes_received = transport.bytes_received - received

    def _outcome(self, run: DeviceRun, exc: BaseException) -> None:
        if isinstance(exc, GateError):
            self.observer.device(run.name, Phase.GATE_FAILED, error=exc.message)
        else:
            self.observer.device(run.name, Phase.FAILED, error=run.explain(exc))

    def prepare(self, run: DeviceRun) -> bool:
        """Bring the new engine to the device and judge it there; True when it may switch to it.

        Records the device's outcome unless it is ready to switch (that is :meth:`switch`'s to record).
        """
        plan, session = self.plan, run.session
        try:
            with self._step(run, Step.PUSH) as out:
                sync = session.push(plan)
                out.result = Pushed(files_sent=sync.files_sent, files_skipped=sync.files_skipped, bytes_sent=sync.bytes_sent)
            with self._step(run, Step.STATUS) as out:
                status = session.status()
                out.result = Status(current=status.current, previous=status.previous, engines=status.engines)
            if status.current == plan.engine_id and not self.measure_current:
                self._verify(run)  # already switched: by this rollout before a crash, or earlier
                self.observer.device(run.name, Phase.DONE if run.switched_before else Phase.CURRENT)
                return False
            with self._step(run, Step.PROBE) as out:
                probe = session.probe()
                key = class_key(probe.module, probe.tensorrt_version, probe.compute_capability,
                                plan.recipe.build.dla_core, plan.target.backend)
                out.result = Probed(probe=probe, device_class=key)
            if plan.engine_id in status.engines:  # built before a crash, or by an earlier deploy or rollout
                with self._step(run, Step.REUSE) as out:
                    existing = session.existing_build(plan.engine_id)
                    if existing is None:
                        raise DeviceError(run.name, f"engine {plan.engine_id} is listed but its build.json is gone")
                    out.result = Reused(build=existing)
            else:
                self._bring_engine(run, key)
            with self._step(run, Step.EVALUATE) as out:
                evaluated, evaluation = session.evaluate(plan, run.scores)
                out.result = Evaluated(report=evaluated, evaluation=evaluation)
            with self._step(run, Step.BENCH) as out:
                bench = session.bench(plan)
                out.result = Benched(bench=bench)
            with self._step(run, Step.SMOKE) as out:
                smoke = session.smoke(plan, plan.engine_id)
                out.result = Smoked(smoke=smoke)
            with self._step(run, Step.GATES) as out:
                results = check_gates(plan.recipe, evaluation, bench, smoke)
                out.result = Gated(results=results)
                failed = [r.describe() for r in results if not r.passed]
                if failed:
                    raise GateError("; ".join(failed))
        except Exception as exc:  # noqa: BLE001 (one device's failure, whatever it is, must not end the others)
            self._outcome(run, exc)
            return False
        return True

    def _bring_engine(self, run: DeviceRun, key: str) -> None:
        """Build the engine here, or install the one another device of this class built."""
        plan, session = self.plan, run.session
        built: ClassEngine | None = None
        if self.engines is not None:
            with self._step(run, Step.CLASS) as out:  # waits while another device of the class builds
                built = self.engines.claim(key, run.name, run.alive)
                out.result = ClassRole(device_class=key, role="install" if built else "build")
        if built is not None:
            with self._step(run, Step.INSTALL) as out:
                out.result = Installed(builder=built.builder, report=session.install_engine(plan, built.file))
            return
        try:
            with self._step(run, Step.BUILD) as out:
                report, _ = session.build(plan, self.meta)
                out.result = Built(build=report)
            if self.engines is not None and self.engines_dir is not None:
                with self._step(run, Step.FETCH) as out:
                    folder = self.engines_dir / folder_name(key)
                    folder.mkdir(parents=True, exist_ok=True)
                    file = session.fetch_engine(plan, folder)
                    out.result = Fetched(device_class=key, file=file, build_seconds=report.seconds)
                self.engines.publish(ClassEngine(key, file, run.name, report.seconds))
        except BaseException:
            if self.engines is not None:
                self.engines.abandon(key, run.name)
            raise

    def _verify(self, run: DeviceRun) -> None:
        """Smoke-test the active engine; a failure is a gate failure."""
        with self._step(run, Step.VERIFY) as out:
            smoke = run.session.smoke(self.plan, "current")
            out.result = Smoked(smoke=smoke)
            if not smoke.passed:
                raise GateError(f"smoke test of the active engine failed (agreement {smoke.comparison.top1_agreement:.3f}, "
                                f"cosine {smoke.comparison.cosine:.4f})")

    def switch(self, run: DeviceRun) -> None:
        """Make the new engine the active one, smoke-test it as the active engine, then free old engines."""
        try:
            try:
                with self._step(run, Step.ACTIVATE) as out:
                    activation = run.session.activate(self.plan, self.meta)
                    out.result = Activated(activation=activation)
                    if activation.current != self.plan.engine_id:
                        raise DeviceError(run.name, f"after activation the device runs {activation.current}, "
                                                    f"expected {self.plan.engine_id}")
            except Exception:
                self._ask_current(run)  # the switch may have happened before the failure: say what runs
                raise
            self._verify(run)
        except Exception as exc:  # noqa: BLE001 (whatever failed is this device's outcome; the others go on)
            self._outcome(run, exc)
            return
        self._collect(run)
        self.observer.device(run.name, Phase.DONE)

    def _ask_current(self, run: DeviceRun) -> None:
        """A status step after a failed activation: what the device runs now, if it still answers."""
        try:
            with self._step(run, Step.STATUS) as out:
                status = run.session.status()
                out.result = Status(current=status.current, previous=status.previous, engines=status.engines)
        except Exception:  # noqa: BLE001 (unreachable: the step records why; the activation's error is the one told)
            pass

    def _collect(self, run: DeviceRun) -> None:
        """keep-last-N: remove engines beyond the current, the previous and the ``keep`` newest others.
        A failure is recorded on the step and changes nothing else: the device runs the verified engine."""
        if self.keep is None:
            return
        try:
            with self._step(run, Step.GC) as out:
                out.result = Collected(gc=run.session.gc(self.keep, BLOB_GRACE))
        except Exception:  # noqa: BLE001 (recorded on the step)
            pass

    def roll_back(self, run: DeviceRun) -> None:
        """Return a device this run switched to the engine it ran before, and smoke-test that one."""
        try:
            with self._step(run, Step.ROLLBACK) as out:
                status = run.session.status()
                current = status.current
                if current == self.plan.engine_id:
                    current = run.session.rollback(self.meta).current
                out.result = RolledBack(current=current)
            if current is not None:
                self._verify(run)
        except Exception as exc:  # noqa: BLE001 (a failed rollback is reported for this device, never raised)
            self._ask_current(run)
            self.observer.rollback(run.name, False, error=run.explain(exc))
            return
        self.observer.rollback(run.name, True, current=current)

