"""`deploy` on one device: push, probe, build, evaluate, bench, gates, then activate only if every gate passed."""

from __future__ import annotations

import getpass
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from edgeq import atomic
from edgeq.deploy.gates import check_gates
from edgeq.deploy.plan import DeployPlan
from edgeq.deploy.report import DeployReport, Transfer
from edgeq.deploy.session import DeviceSession

Step = Callable[[str], None]
STEPS = ("push", "probe", "build", "evaluate", "bench", "activate")


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)


def deploy_folder(plan: DeployPlan, label: str) -> Path:
    """Where one device's pulled scores and reports go on the host."""
    return plan.folder / "deploy" / _slug(label)


def meta(plan: DeployPlan) -> dict[str, str]:
    """Who deployed what, recorded on the device with the build and the activation."""
    return {
        "recipe": plan.recipe.name,
        "target": plan.target.name,
        "by": f"{getpass.getuser()}@{socket.gethostname()}",
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "calibration_key": plan.calibration.report.key,
    }


def deploy_one(session: DeviceSession, plan: DeployPlan, *, on_step: Step | None = None) -> DeployReport:
    """Deploy ``plan`` to the session's device; the new engine becomes current only if the gates pass."""
    phases: dict[str, float] = {}
    folder = deploy_folder(plan, session.label)
    folder.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def phase(name: str) -> Iterator[None]:
        if on_step is not None:
            on_step(name)
        started = time.perf_counter()
        yield
        phases[name] = time.perf_counter() - started

    with phase("push"):
        sync = session.push(plan)
    with phase("probe"):
        probe = session.probe()
    with phase("build"):
        build, reused = session.build(plan, meta(plan))
    with phase("evaluate"):
        evaluated, evaluation = session.evaluate(plan, folder)
    with phase("bench"):
        bench = session.bench(plan)
    gates = check_gates(plan.recipe, evaluation, bench)
    activation = None
    if all(g.passed for g in gates):
        with phase("activate"):
            activation = session.activate(plan, meta(plan))
    device_seconds = (0.0 if reused else build.seconds) + evaluated.seconds + bench.seconds
    report = DeployReport(
        recipe=plan.recipe.name,
        target=plan.target.name,
        host=session.label,
        engine_id=plan.engine_id,
        quantization=plan.quantization,
        probe=probe,
        build=build,
        build_reused=reused,
        evaluation=evaluation,
        bench=bench,
        gates=gates,
        activated=activation is not None,
        activation=activation,
        transfer=Transfer(sync.files_sent, sync.files_skipped, session.transport.bytes_sent, session.transport.bytes_received),
        phases=phases,
        device_seconds=device_seconds,
        predicted_drop=plan.calibration.report.accuracy.drop,
        files={"folder": str(folder), "report": str(folder / "report.json"), "html": str(folder / "report.html")},
    )
    atomic.write_json(folder / "report.json", report.to_dict())
    return report
