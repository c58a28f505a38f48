"""What a rollout does on one device, step by step, each step journaled: prepare the new engine next to
the running one and judge it, switch to it, or return to the previous engine.

Nothing before :func:`switch` changes what a device runs: the new engine is built (or installed
from another device of the same class) beside the active one, then evaluated, benchmarked and
smoke-tested by engine id. A device's failure ends that device's task only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeq.deploy.gates import check_gates
from edgeq.deploy.pipeline import meta as deploy_meta
from edgeq.deploy.plan import DeployPlan
from edgeq.deploy.session import DeviceSession
from edgeq.errors import DeviceError, GateError
from edgeq.fleet import state as st
from edgeq.fleet.class_engines import ClassEngine, ClassEngines, class_key, folder_name
from edgeq.fleet.journal import RolloutHeader
from edgeq.remote.liveness import Liveness
from edgeq.fleet.recorder import Recorder, describe_error


@dataclass
class RolloutContext:
    """What every device task of one rollout shares."""

    header: RolloutHeader
    plans: dict[str, DeployPlan]  # target profile -> plan
    recorder: Recorder
    engines: ClassEngines
    engines_dir: Path  # where engines built on one device of a class are kept for the others
    liveness: dict[str, Liveness] = field(default_factory=dict)  # device name -> its watchdog, while it works

    @contextmanager
    def step(self, name: str, step: str, session: DeviceSession) -> Iterator[dict[str, Any]]:
        """A journaled step whose data also says how long its remote commands ran."""
        start = session.transport.remote_seconds
        with self.recorder.step(name, step) as out:
            try:
                yield out
            finally:
                out["remote_seconds"] = round(session.transport.remote_seconds - start, 4)

    def explain(self, name: str, exc: BaseException) -> str:
        """What went wrong on a device: a hung device says so rather than "connection lost"."""
        watchdog = self.liveness.get(name)
        if watchdog is not None and watchdog.fired:
            return f"{name}: {watchdog.describe()}"
        return describe_error(exc)

    def plan(self, name: str) -> DeployPlan:
        return self.plans[self.header.targets[name]]

    def device_dir(self, name: str) -> Path:
        """Where files pulled from one device (its scores) go."""
        folder = self.engines_dir.parent / "devices" / folder_name(name)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def meta(self, name: str) -> dict[str, Any]:
        """Recorded on the device with the build and the activation: `edgeq status` shows it."""
        return {**deploy_meta(self.plan(name)), "rollout": self.header.id}


def prepare(ctx: RolloutContext, name: str, session: DeviceSession) -> bool:
    """Bring the new engine to the device and judge it there; True when it may switch to it.

    Records the device's outcome unless it is ready to switch (that is :func:`switch`'s to record).
    """
    rec, plan = ctx.recorder, ctx.plan(name)
    device = rec.state.devices[name]
    try:
        with ctx.step(name, "status", session) as out:
            status = session.status()
            out.update(current=status.current, previous=status.previous)
        if status.current == plan.engine_id:  # already switched: by this rollout before a crash, or earlier
            _verify(ctx, name, session)
            rec.device(name, st.DONE if device.switched else st.CURRENT)
            return False
        with ctx.step(name, "probe", session) as out:
            probe = session.probe()
            key = class_key(
                probe.module, probe.tensorrt_version, probe.compute_capability, plan.recipe.build.dla_core, plan.target.backend
            )
            out.update(**{"class": key, "module": probe.module, "tensorrt": probe.tensorrt_version})
        with ctx.step(name, "push", session) as out:
            out["bytes_sent"] = session.push(plan).bytes_sent
        if plan.engine_id in status.engines:  # built before a crash, or by an earlier rollout
            with ctx.step(name, "reuse", session) as out:
                out["engine"] = plan.engine_id
        else:
            _bring_engine(ctx, name, session, key)
        with ctx.step(name, "evaluate", session) as out:
            evaluated, evaluation = session.evaluate(plan, ctx.device_dir(name))
            out.update(drop=evaluation.drop, fp32=evaluation.fp32, int8=evaluation.int8, agreement=evaluation.top1_agreement)
            out["device_seconds"] = evaluated.seconds
        with ctx.step(name, "bench", session) as out:
            bench = session.bench(plan)
            out.update(p99_ms=bench.int8.p99_ms, median_ms=bench.int8.median_ms, device_seconds=bench.seconds)
        with ctx.step(name, "smoke", session) as out:
            smoke = session.smoke(plan, plan.engine_id)
            out.update(passed=smoke.passed, agreement=smoke.comparison.top1_agreement, cosine=smoke.comparison.cosine)
            out["device_seconds"] = smoke.seconds
        with ctx.step(name, "gates", session) as out:
            results = check_gates(plan.recipe, evaluation, bench)
            out["results"] = [r.to_dict() for r in results]
            failed = [r.describe() for r in results if not r.passed]
            if not smoke.passed:
                failed.append(f"smoke: agreement {smoke.comparison.top1_agreement:.3f}, cosine {smoke.comparison.cosine:.4f}")
            if failed:
                raise GateError("; ".join(failed))
    except GateError as exc:
        rec.device(name, st.GATE_FAILED, error=exc.message)
        return False
    except Exception as exc:  # noqa: BLE001 (one device's failure, whatever it is, must not end the others)
        rec.device(name, st.FAILED, error=ctx.explain(name, exc))
        return False
    return True


def _bring_engine(ctx: RolloutContext, name: str, session: DeviceSession, key: str) -> None:
    """Build the engine here, or install the one another device of this class built."""
    plan = ctx.plan(name)
    built = None
    if not ctx.header.build_each:
        with ctx.step(name, "class", session) as out:  # waits while another device of the class builds
            built = ctx.engines.claim(key)
            out.update(**{"class": key, "role": "install" if built else "build"})
    if built is not None:
        with ctx.step(name, "install", session) as out:
            report = session.install_engine(plan, built.file)
            out.update(builder=built.builder, device_seconds=report.seconds)
        return
    try:
        with ctx.step(name, "build", session) as out:
            report, _ = session.build(plan, ctx.meta(name))
            out["device_seconds"] = report.seconds
        if not ctx.header.build_each:
            with ctx.step(name, "fetch", session) as out:
                folder = ctx.engines_dir / folder_name(key)
                folder.mkdir(parents=True, exist_ok=True)
                file = session.fetch_engine(plan, folder)
                out.update(**{"class": key, "file": str(file), "build_seconds": report.seconds})
            ctx.engines.publish(ClassEngine(key, file, name, report.seconds))
    except BaseException:
        if not ctx.header.build_each:
            ctx.engines.abandon(key)
        raise


def _verify(ctx: RolloutContext, name: str, session: DeviceSession) -> None:
    """Smoke-test the active engine; a failure is a gate failure."""
    with ctx.step(name, "verify", session) as out:
        smoke = session.smoke(ctx.plan(name), "current")
        out.update(passed=smoke.passed, agreement=smoke.comparison.top1_agreement, device_seconds=smoke.seconds)
        if not smoke.passed:
            raise GateError(f"smoke test of the active engine failed (agreement {smoke.comparison.top1_agreement:.3f})")


def switch(ctx: RolloutContext, name: str, session: DeviceSession) -> None:
    """Make the new engine the active one, then smoke-test it as the active engine."""
    rec, plan = ctx.recorder, ctx.plan(name)
    try:
        with ctx.step(name, "activate", session) as out:
            status = session.activate(plan, ctx.meta(name))
            out.update(current=status.current, previous=status.previous)
            if status.current != plan.engine_id:
                raise DeviceError(name, f"after activation the device runs {status.current}, expected {plan.engine_id}")
        _verify(ctx, name, session)
    except GateError as exc:
        rec.device(name, st.GATE_FAILED, error=exc.message)
        return
    except Exception as exc:  # noqa: BLE001
        rec.device(name, st.FAILED, error=ctx.explain(name, exc))
        return
    rec.device(name, st.DONE)


def roll_back(ctx: RolloutContext, name: str, session: DeviceSession) -> None:
    """Return a device this rollout switched to the engine it ran before, and smoke-test that one."""
    rec, plan = ctx.recorder, ctx.plan(name)
    try:
        with ctx.step(name, "rollback", session) as out:
            status = session.status()
            if status.current == plan.engine_id:
                status = session.rollback(ctx.meta(name))
            out.update(current=status.current)
        if status.current is not None:
            _verify(ctx, name, session)
    except Exception as exc:  # noqa: BLE001
        rec.rollback(name, "failed", error=ctx.explain(name, exc))
        return
    rec.rollback(name, "ok", current=status.current)
