"""Run devices through the device pipeline wave by wave: a fleet rollout from a plan or from the journal of
one that was cut off, and `deploy`, which is a rollout of one wave over the given devices.

In a rollout each wave has two phases. First every device of the wave prepares the new engine beside the
one it runs and judges it (gates, smoke); then, only if the wave passed (no gate failed, device failures
within the budget), each ready device switches and is smoke-tested again. A wave that fails stops the
rollout: devices it switched go back to their previous engine, later waves are not touched; a device that
cannot be reached for that is ``rollback_pending``. Every step is journaled before the next begins, so
``resume`` continues where the host stopped, and of an ended rollout retries the pending rollbacks and the
devices that failed in waves that passed. `edgeq rollback` is a run of rollbacks alone.

A deploy's one wave switches device by device instead: each device that passes its own gates switches
(and goes back if the switched engine then fails its smoke test), whatever the others do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from edgeq import atomic, targets
from edgeq import recipe as recipes
from edgeq.deploy.class_engines import ClassEngine, ClassEngines, folder_name
from edgeq.deploy.pipeline import DevicePipeline, DeviceRun, deploy_meta, describe_error
from edgeq.deploy.plan import DeployPlan, make_plan
from edgeq.deploy.report import deploy_folder
from edgeq.deploy.session import DeviceSession, local_transport
from edgeq.deploy.steps import FINISHED, Fetched, Phase, Step, StepStatus
from edgeq.errors import ExitCode, InputError
from edgeq.fleet import journal
from edgeq.fleet import state as st
from edgeq.fleet.journal import Entry, Event, Journal, RolloutHeader, Switching
from edgeq.fleet.plan import RolloutPlan
from edgeq.fleet.recorder import Recorder, Watcher
from edgeq.fleet.state import RolloutState, WaveState, WaveStatus
from edgeq.fleet.summary import RolloutReport, summarize
from edgeq.fleet.verdict import Outcome, judge
from edgeq.fleet.waves import Amount, failure_allowance
from edgeq.hosts import Host, host_name
from edgeq.remote.group import Opener, on_hosts
from edgeq.remote.liveness import Liveness
from edgeq.remote.timeouts import Timeouts
from edgeq.remote.transport import SSHTransport, Transport

DEFAULT_PATIENCE = 15.0  # seconds without an answer to SSH keepalives before a device counts as hung
LOCAL = "local"  # the device name and address of this machine as the device (`deploy --target local`)

DeviceWork = Callable[[DevicePipeline, DeviceRun], object]


def _plans(recipe: recipes.Recipe, names: set[str], progress: bool, fit_budget: bool | None) -> dict[str, DeployPlan]:
    """One deploy plan (calibration, engine id) per target profile in use; the targets share one statistics run."""
    return {name: make_plan(recipe, targets.resolve(name), progress=progress, fit_budget=fit_budget) for name in sorted(names)}


def open_local(host: Host, timeouts: Timeouts) -> Transport:
    """This machine as the device, working in ``host.workdir`` (a stand-in Host named `local`)."""
    return local_transport(host.workdir, timeouts)


class Rollout:
    """A started rollout (or deploy): its journal, its state, and the deploy plans it needs.

    ``folder`` keeps engines fetched for a device class; ``scores`` names where a device's pulled scores
    go. A deploy has no journal, measures a device already on the engine again, and opens ``opener``'s
    transports (SSH, or this machine)."""

    def __init__(
        self,
        journal_: Journal | None,
        state: RolloutState,
        plans: dict[str, DeployPlan],
        timeout: float | None,
        *,
        folder: Path,
        scores: Callable[[str], Path] | None = None,
        opener: Opener = SSHTransport.open,
        resumed: bool = False,
    ) -> None:
        self.journal = journal_
        self.resumed = resumed
        self.state = state
        self.plans = plans
        self.timeouts = Timeouts(connect=timeout, channel=timeout) if timeout else Timeouts()
        self.patience = timeout or DEFAULT_PATIENCE
        self.folder = folder
        self.scores = scores or (lambda name: self.folder / "devices" / folder_name(name))
        self.opener = opener

    @property
    def header(self) -> RolloutHeader:
        return self.state.header

    @property
    def report_path(self) -> Path:
        assert self.journal is not None, "a deploy writes per-device reports"
        return self.journal.path.with_suffix(".json")

    def run(self, watcher: Watcher | None = None) -> RolloutReport:
        """Run (or finish) every wave; write and return the report. Devices' failures are in it, not raised."""
        recorder = Recorder(self.journal, self.state, watcher)
        engines = None if self.header.build_each else ClassEngines(self._fetched(), lease=self.patience)
        pipelines = {target: self._pipeline(plan, recorder, engines) for target, plan in self.plans.items()}
        budget = Amount.parse(self.header.max_failures, "--max-failures")
        if self.resumed and self.state.ended:
            self._retry(recorder, pipelines)
        elif self.resumed:
            self._close_interrupted(recorder)
        for wave in self.state.waves:
            if self.state.ended:
                break
            if wave.status == WaveStatus.PASSED:
                continue
            if wave.status != WaveStatus.FAILED:
                self._run_wave(recorder, pipelines, wave, failure_allowance(budget, len(wave.devices)))
            if wave.status == WaveStatus.FAILED:
                self._roll_back(recorder, pipelines, [d.name for d in self.state.wave_devices(wave) if d.needs_rollback])
                self._end(recorder, wave.outcome or Outcome.DEVICES_FAILED, reason=wave.reason)
        if not self.state.ended:
            self._end(recorder, Outcome.COMPLETED)
        return self._report()

    def _report(self) -> RolloutReport:
        report = summarize(self.state)
        if self.journal is not None:
            atomic.write_json(self.report_path, report.model_dump(mode="json"))
        return report

    def _end(self, recorder: Recorder, outcome: Outcome, **data: object) -> None:
        """End the run; a device whose rollback could not run makes it a device failure (exit 3) whatever else happened."""
        pending = [d.name for d in self.state.devices.values() if d.phase == Phase.ROLLBACK_PENDING]
        code = max(outcome.exit_code, ExitCode.DEVICE) if pending else outcome.exit_code
        recorder.end(outcome, int(code), **data, **({"rollback_pending": pending} if pending else {}))

    def _retry(self, recorder: Recorder, pipelines: dict[str, DevicePipeline]) -> None:
        """``--resume`` of an ended rollout: roll back the devices whose rollback could not run, and take the
        devices that failed in a wave that passed through the pipeline again. Nothing to do: nothing journaled."""
        waves = {w.index: w.status for w in self.state.waves}
        pending = [d.name for d in self.state.devices.values() if d.phase == Phase.ROLLBACK_PENDING]
        failed = [d.name for d in self.state.devices.values() if d.phase == Phase.FAILED and waves[d.wave] == WaveStatus.PASSED]
        if not pending and not failed:
            return
        ended = self.state.outcome or Outcome.COMPLETED
        reason = next((e.data.get("reason") for e in reversed(self.state.entries) if e.event == Event.END), None)
        recorder.record(Entry(event=Event.RESUME, status=StepStatus.START, data={"operator": journal.operator()}))
        self._roll_back(recorder, pipelines, pending)
        self._each(recorder, pipelines, failed, self._one_device)
        self._end(recorder, ended, **({"reason": reason} if reason else {}))

    def roll_back_all(self, watcher: Watcher | None = None) -> RolloutReport:
        """`edgeq rollback`: every device on the plan's engine goes back to its previous one; each device's
        active engine (the one gone back to, or the one it already ran) is smoke-tested."""
        recorder = Recorder(self.journal, self.state, watcher)
        pipelines = {target: self._pipeline(plan, recorder, None) for target, plan in self.plans.items()}
        self._roll_back(recorder, pipelines, list(self.state.devices))
        pending = any(d.phase != Phase.ROLLED_BACK for d in self.state.devices.values())
        self._end(recorder, Outcome.DEVICES_FAILED if pending else Outcome.COMPLETED)
        return summarize(self.state)

    def _pipeline(self, plan: DeployPlan, recorder: Recorder, engines: ClassEngines | None) -> DevicePipeline:
        deploying = self.header.switching == Switching.DEVICE
        meta = deploy_meta(plan) if deploying else {**deploy_meta(plan), "rollout": self.header.id}
        return DevicePipeline(plan, recorder, meta=meta, measure_current=deploying, engines=engines,
                              engines_dir=self.folder / "engines", keep=self.header.keep)

    def _close_interrupted(self, recorder: Recorder) -> None:
        """Journal the resume, and end each step the host was in when it stopped: nothing is left open."""
        recorder.record(Entry(event=Event.RESUME, status=StepStatus.START, data={"operator": journal.operator()}))
        for device in self.state.devices.values():
            for record in [r for r in device.steps if r.status == StepStatus.RUNNING]:
                recorder.record(Entry(event=Event.STEP, status=StepStatus.INTERRUPTED, device=device.name,
                                      step=record.step, wave=device.wave))

    def _run_wave(self, recorder: Recorder, pipelines: dict[str, DevicePipeline], wave: WaveState, allowed: int) -> None:
        if wave.status == WaveStatus.PENDING:
            recorder.wave(wave.index, WaveStatus.START, allowed=allowed)
        devices = self.state.wave_devices(wave)
        todo = [d.name for d in devices if d.phase not in (*FINISHED, Phase.GATE_FAILED)]
        if self.header.switching == Switching.DEVICE:
            self._each(recorder, pipelines, todo, self._one_device)
            recorder.wave(wave.index, WaveStatus.PASSED, reason="each device switched on its own gates")
            return
        ready = [name for name, ok in self._each(recorder, pipelines, todo, DevicePipeline.prepare).items() if ok]
        verdict = judge(devices, allowed)
        if verdict.passed:
            self._each(recorder, pipelines, ready, DevicePipeline.switch)
            verdict = judge(devices, allowed)
        if verdict.passed:
            recorder.wave(wave.index, WaveStatus.PASSED, reason=verdict.reason)
            return
        for name in ready:
            if self.state.devices[name].phase == Phase.WORKING:
                recorder.device(name, Phase.HELD, error="not switched: the wave failed")
        recorder.wave(wave.index, WaveStatus.FAILED, reason=verdict.reason, outcome=verdict.outcome)

    def _one_device(self, pipeline: DevicePipeline, run: DeviceRun) -> None:
        """Prepare, switch when the device's own gates passed, go back when the switched engine failed."""
        if pipeline.prepare(run):
            pipeline.switch(run)
        if self.state.devices[run.name].phase in (Phase.FAILED, Phase.GATE_FAILED) and self.state.devices[run.name].switched:
            pipeline.roll_back(run)

    def _roll_back(self, recorder: Recorder, pipelines: dict[str, DevicePipeline], names: list[str]) -> None:
        self._each(recorder, pipelines, names, DevicePipeline.roll_back,
                   on_error=lambda name, error: recorder.rollback(name, False, error=error))

    def _each(
        self,
        recorder: Recorder,
        pipelines: dict[str, DevicePipeline],
        names: list[str],
        work: DeviceWork,
        on_error: Callable[[str, str], None] | None = None,
    ) -> dict[str, object]:
        """Run ``work`` on each named device, at most ``concurrency`` at once; a device that cannot be reached
        gets ``on_error`` (default: it failed)."""
        hosts = {host_name(h): h for h in self.header.hosts}
        by_label = {hosts[name].label: name for name in names}
        results: dict[str, object] = {}
        watchdogs: dict[str, Liveness] = {}

        def explain(name: str) -> Callable[[BaseException], str]:
            def say(exc: BaseException) -> str:
                watchdog = watchdogs.get(name)
                if watchdog is not None and watchdog.fired:
                    return f"{name}: {watchdog.describe()}"
                return describe_error(exc)
            return say

        def opener(host: Host, timeouts: Timeouts) -> Transport:
            with recorder.step(host_name(host), Step.CONNECT):
                return self.opener(host, timeouts)

        def task(transport: Transport) -> object:
            name = by_label[transport.label]
            pipeline = pipelines[self.header.targets[name]]
            scores = self.scores(name)
            scores.mkdir(parents=True, exist_ok=True)
            with Liveness(transport, self.patience) as liveness:
                watchdogs[name] = liveness
                run = DeviceRun(name, DeviceSession(transport), scores, self.state.devices[name].switched, explain(name),
                                liveness.last_answer)
                results[name] = work(pipeline, run)
            return results[name]

        outcomes = on_hosts([hosts[n] for n in names], task, limit=self.header.concurrency, timeouts=self.timeouts, opener=opener)
        for outcome in outcomes:
            if outcome.error is not None:
                name = host_name(outcome.host)
                (on_error or (lambda n, e: recorder.device(n, Phase.FAILED, error=e)))(name, outcome.error.message)
        return results

    def _fetched(self) -> dict[str, ClassEngine]:
        """Engines fetched earlier in this rollout (before a crash) that are still on the host."""
        ready: dict[str, ClassEngine] = {}
        for device in self.state.devices.values():
            fetched = device.last(Step.FETCH, Fetched)
            if fetched is not None and fetched.file.exists():
                ready[fetched.device_class] = ClassEngine(fetched.device_class, fetched.file, device.name, fetched.build_seconds)
        return ready


def begin(plan: RolloutPlan, *, progress: bool = True) -> Rollout:
    """Calibrate (cached), fix the engine ids, and write the journal's header."""
    plans = _plans(plan.recipe, set(plan.targets.values()), progress, plan.options.fit_budget)
    header = _header(plan.recipe, plan.hosts, plan.targets, plans, plan.waves, inventory=plan.inventory,
                     concurrency=plan.options.concurrency, max_failures=plan.options.max_failures,
                     build_each=plan.options.build_each, switching=Switching.WAVE, keep=plan.options.keep,
                     fit_budget=plan.options.fit_budget)
    created = Journal.create(journal.rollouts_dir(plan.recipe), header)
    return Rollout(created, st.initial(header), plans, plan.options.timeout, folder=created.path.with_suffix(""))


def _header(recipe: recipes.Recipe, hosts: list[Host], chosen: dict[str, str], plans: dict[str, DeployPlan],
            waves: list[list[str]], *, inventory: Path | None, concurrency: int, max_failures: str, build_each: bool,
            switching: Switching, keep: int | None, fit_budget: bool | None = None) -> RolloutHeader:
    return RolloutHeader(
        id=journal.new_id(),
        started_at=time.time(),
        operator=journal.operator(),
        recipe=recipe.source or recipe.folder / "recipe.yaml",
        recipe_name=recipe.name,
        inventory=inventory,
        hosts=hosts,
        targets=chosen,
        engine_ids={name: p.engine_id for name, p in plans.items()},
        waves=waves,
        concurrency=concurrency,
        max_failures=max_failures,
        build_each=build_each,
        switching=switching,
        keep=keep,
        fit_budget=fit_budget,
    )


def deploy(plan: DeployPlan, hosts: list[Host] | None, *, workdir: str | None = None,
           timeout: float | None = None, keep: int | None = 1, opener: Opener | None = None) -> Rollout:
    """`deploy`: one wave over ``hosts`` (None: this machine, in ``workdir``), one device after another, each
    switching on its own gates; nothing is journaled, each device's report goes to its deploy folder. ``opener``:
    how devices are connected to (default: SSH, or this machine; :func:`edgeq.remote.group.reach`'s connections)."""
    local = hosts is None
    devices = [Host(address=LOCAL, name=LOCAL, workdir=workdir or "~/.edgeq")] if local else list(hosts or [])
    names = [host_name(h) for h in devices]
    header = _header(plan.recipe, devices, dict.fromkeys(names, plan.target.name), {plan.target.name: plan}, [names],
                     inventory=None, concurrency=1, max_failures="100%", build_each=True, switching=Switching.DEVICE,
                     keep=keep)
    labels = {host_name(h): h.label for h in devices}
    return Rollout(None, st.initial(header), {plan.target.name: plan}, timeout, folder=plan.folder / "deploy",
                   scores=lambda name: deploy_folder(plan, labels[name]),
                   opener=opener or (open_local if local else SSHTransport.open))


def resume(path: Path, *, timeout: float | None = None, progress: bool = True) -> Rollout:
    """Pick up the rollout whose journal is ``path``; the recipe must still give the same engines."""
    header, entries = journal.read(path)
    state = st.replay(header, entries)
    recipe = recipes.load(header.recipe)
    plans = _plans(recipe, set(header.targets.values()), progress, header.fit_budget)
    for name, plan in plans.items():
        if plan.engine_id != header.engine_ids[name]:
            raise InputError(
                f"{header.recipe}: the recipe or its data changed since rollout {header.id} started "
                f"(engine for {name} was {header.engine_ids[name]}, now {plan.engine_id}): start a new rollout"
            )
    return Rollout(Journal.reopen(path), state, plans, timeout, folder=path.with_suffix(""), resumed=True)


def rollback(recipe: recipes.Recipe, hosts: list[Host], chosen: dict[str, str], *, timeout: float | None = None,
             concurrency: int = 4, progress: bool = True, fit_budget: bool | None = None) -> Rollout:
    """`edgeq rollback`: the devices ``hosts`` (device name -> target profile in ``chosen``) that run the recipe's
    engine go back to their previous one; nothing is journaled (the devices' own history is the record)."""
    plans = _plans(recipe, set(chosen.values()), progress, fit_budget)
    names = [host_name(h) for h in hosts]
    header = _header(recipe, hosts, chosen, plans, [names], inventory=None, concurrency=concurrency,
                     max_failures="0", build_each=True, switching=Switching.DEVICE, keep=None)
    return Rollout(None, st.initial(header), plans, timeout, folder=recipe.out_folder / "rollback")
