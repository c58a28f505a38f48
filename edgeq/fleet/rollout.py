"""Run a rollout wave by wave, from a fresh plan or from the journal of one that was cut off.

Each wave has two phases. First every device of the wave prepares the new engine beside the one it
runs and judges it (gates, smoke); then, only if the wave passed (no gate failed, device failures
within the budget), each ready device switches and is smoke-tested again. A wave that fails stops
the rollout: devices it switched go back to their previous engine, later waves are not touched.
Every step is journaled before the next begins, so ``resume`` continues where the host stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from edgeq import atomic, targets
from edgeq import recipe as recipes
from edgeq.deploy.plan import DeployPlan, make_plan
from edgeq.deploy.session import DeviceSession
from edgeq.errors import InputError
from edgeq.fleet import journal
from edgeq.fleet import state as st
from edgeq.fleet.class_engines import ClassEngine, ClassEngines
from edgeq.fleet.device_steps import RolloutContext, prepare, roll_back, switch
from edgeq.hosts import host_name
from edgeq.fleet.journal import Entry, Journal, RolloutHeader
from edgeq.remote.liveness import Liveness
from edgeq.fleet.plan import RolloutPlan
from edgeq.fleet.recorder import Recorder, Watcher
from edgeq.fleet.state import RolloutState, WaveState
from edgeq.fleet.summary import RolloutReport, summarize
from edgeq.remote.transport import SSHTransport
from edgeq.fleet.verdict import COMPLETED, EXIT_CODES, judge
from edgeq.fleet.waves import Amount, failure_allowance
from edgeq.hosts import Host
from edgeq.remote.group import on_hosts
from edgeq.remote.timeouts import Timeouts
from edgeq.remote.transport import Transport

DEFAULT_PATIENCE = 15.0  # seconds without an answer to SSH keepalives before a device counts as hung

DeviceWork = Callable[[RolloutContext, str, DeviceSession], object]


def _plans(recipe: recipes.Recipe, names: set[str], progress: bool) -> dict[str, DeployPlan]:
    """One deploy plan (calibration, engine id) per target profile in use."""
    return {name: make_plan(recipe, targets.resolve(name), progress=progress) for name in sorted(names)}


class Rollout:
    """A started rollout: its journal, its state, and the deploy plans it needs."""

    def __init__(
        self, journal_: Journal, state: RolloutState, plans: dict[str, DeployPlan], timeout: float | None, *, resumed: bool = False
    ) -> None:
        self.journal = journal_
        self.resumed = resumed
        self.state = state
        self.plans = plans
        self.timeouts = Timeouts(connect=timeout, channel=timeout) if timeout else Timeouts()
        self.patience = timeout or DEFAULT_PATIENCE
        self.folder = journal_.path.with_suffix("")  # <rollouts>/<id>/: fetched engines, pulled scores

    @property
    def header(self) -> RolloutHeader:
        return self.state.header

    @property
    def report_path(self) -> Path:
        return self.journal.path.with_suffix(".json")

    def run(self, watcher: Watcher | None = None) -> RolloutReport:
        """Run (or finish) every wave; write and return the report. Devices' failures are in it, not raised."""
        recorder = Recorder(self.journal, self.state, watcher)
        ctx = RolloutContext(self.header, self.plans, recorder, ClassEngines(self._fetched()), self.folder / "engines")
        budget = Amount.parse(self.header.max_failures, "--max-failures")
        if self.resumed and not self.state.ended:
            self._close_interrupted(recorder)
        for wave in self.state.waves:
            if self.state.ended:
                break
            if wave.status == "passed":
                continue
            if wave.status != "failed":
                self._run_wave(ctx, wave, failure_allowance(budget, len(wave.devices)))
            if wave.status == "failed":
                self._roll_back(ctx, wave)
                recorder.end(wave.outcome or "stopped", int(EXIT_CODES.get(wave.outcome or "", 1)), reason=wave.reason)
        if not self.state.ended:
            recorder.end(COMPLETED, int(EXIT_CODES[COMPLETED]))
        report = summarize(self.state)
        atomic.write_json(self.report_path, report.model_dump(mode="json"))
        return report

    def _close_interrupted(self, recorder: Recorder) -> None:
        """Journal the resume, and end each step the host was in when it stopped: nothing is left open."""
        recorder.record(Entry(journal.RESUME, "start", data={"operator": journal.operator()}))
        for device in self.state.devices.values():
            for step in [s for s in device.steps if s.status == "running"]:
                recorder.record(Entry(journal.STEP, "interrupted", device=device.name, step=step.name, wave=device.wave))

    def _run_wave(self, ctx: RolloutContext, wave: WaveState, allowed: int) -> None:
        recorder = ctx.recorder
        if wave.status == "pending":
            recorder.wave(wave.index, "start", allowed=allowed)
        devices = self.state.wave_devices(wave)
        todo = [d.name for d in devices if d.phase not in (st.DONE, st.CURRENT, st.GATE_FAILED)]
        ready = [name for name, ok in self._each(ctx, todo, prepare).items() if ok]
        verdict = judge(devices, allowed)
        if verdict.passed:
            self._each(ctx, ready, switch)
            verdict = judge(devices, allowed)
        if verdict.passed:
            recorder.wave(wave.index, "passed", reason=verdict.reason)
            return
        for name in ready:
            if self.state.devices[name].phase == st.WORKING:
                recorder.device(name, st.HELD, error="not switched: the wave failed")
        recorder.wave(wave.index, "failed", reason=verdict.reason, outcome=verdict.outcome)

    def _roll_back(self, ctx: RolloutContext, wave: WaveState) -> None:
        names = [d.name for d in self.state.wave_devices(wave) if d.needs_rollback]
        self._each(ctx, names, roll_back, on_error=lambda name, error: ctx.recorder.rollback(name, "failed", error=error))

    def _each(
        self,
        ctx: RolloutContext,
        names: list[str],
        work: DeviceWork,
        on_error: Callable[[str, str], None] | None = None,
    ) -> dict[str, object]:
        """Run ``work`` on each named device, at most ``concurrency`` at once; an unreachable device
        gets ``on_error`` (default: it failed)."""
        hosts = {host_name(h): h for h in self.header.hosts}
        by_label = {hosts[name].label: name for name in names}
        results: dict[str, object] = {}

        def opener(host: Host, timeouts: Timeouts) -> Transport:
            with ctx.recorder.step(host_name(host), "connect"):
                return SSHTransport.open(host, timeouts)

        def task(transport: Transport) -> object:
            name = by_label[transport.label]
            with Liveness(transport, self.patience) as liveness:
                ctx.liveness[name] = liveness
                results[name] = work(ctx, name, DeviceSession(transport))
            return results[name]

        outcomes = on_hosts([hosts[n] for n in names], task, limit=self.header.concurrency, timeouts=self.timeouts, opener=opener)
        for outcome in outcomes:
            if outcome.error is not None:
                name = host_name(outcome.host)
                (on_error or (lambda n, e: ctx.recorder.device(n, st.FAILED, error=e)))(name, outcome.error.message)
        return results

    def _fetched(self) -> dict[str, ClassEngine]:
        """Engines fetched earlier in this rollout (before a crash) that are still on the host."""
        ready: dict[str, ClassEngine] = {}
        for device in self.state.devices.values():
            for step in device.steps:
                if step.name == "fetch" and step.status == "ok" and Path(step.data["file"]).exists():
                    key = step.data["class"]
                    ready[key] = ClassEngine(key, Path(step.data["file"]), device.name, step.data["build_seconds"])
        return ready


def begin(plan: RolloutPlan, *, progress: bool = True) -> Rollout:
    """Calibrate (cached), fix the engine ids, and write the journal's header."""
    plans = _plans(plan.recipe, set(plan.targets.values()), progress)
    header = RolloutHeader(
        id=journal.new_id(),
        started_at=time.time(),
        operator=journal.operator(),
        recipe=plan.recipe.source or plan.recipe.folder / "recipe.yaml",
        recipe_name=plan.recipe.name,
        inventory=plan.inventory,
        hosts=plan.hosts,
        targets=plan.targets,
        engine_ids={name: p.engine_id for name, p in plans.items()},
        waves=plan.waves,
        concurrency=plan.options.concurrency,
        max_failures=plan.options.max_failures,
        build_each=plan.options.build_each,
    )
    folder = journal.rollouts_dir(plan.recipe)
    return Rollout(Journal.create(folder, header), st.initial(header), plans, plan.options.timeout)


def resume(path: Path, *, timeout: float | None = None, progress: bool = True) -> Rollout:
    """Pick up the rollout whose journal is ``path``; the recipe must still give the same engines."""
    header, entries = journal.read(path)
    state = st.replay(header, entries)
    recipe = recipes.load(header.recipe)
    plans = _plans(recipe, set(header.targets.values()), progress)
    for name, plan in plans.items():
        if plan.engine_id != header.engine_ids[name]:
            raise InputError(
                f"{header.recipe}: the recipe or its data changed since rollout {header.id} started "
                f"(engine for {name} was {header.engine_ids[name]}, now {plan.engine_id}): start a new rollout"
            )
    return Rollout(Journal(path), state, plans, timeout, resumed=True)
