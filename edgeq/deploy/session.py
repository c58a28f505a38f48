"""One device over one transport (SSH, or a subprocess for `local`): each deploy step as a method."""

from __future__ import annotations

import json
import posixpath
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from edgeq import labels as labels_module
from edgeq.deploy.evaluation import Evaluation, score
from edgeq.deploy.plan import DeployPlan
from edgeq.deploy.wire import (
    ActivationReport,
    BenchReport,
    BuildReport,
    EvaluateReport,
    ExportReport,
    GcReport,
    ImportReport,
    ProbeReport,
    SmokeReport,
    StatusReport,
    W,
    parse_answer,
)
from edgeq.errors import DeviceError
from edgeq.feeds import batch_axes
from edgeq.hosts import Host
from edgeq.metrics.classification import is_class_scores
from edgeq.remote.agent import (
    AgentInvocation,
    AgentMissing,
    agent_file,
    expected_agent,
    push_agent,
    run_agent,
)
from edgeq.remote.sync import SyncResult, push_blobs, sha256_file
from edgeq.remote.timeouts import Timeouts
from edgeq.remote.transport import LocalTransport, SSHTransport, Transport

BUILD_TIMEOUT = 3 * 3600.0  # an INT8 build on a small Jetson can take hours
RUN_TIMEOUT = 1800.0
BENCH_WARMUP = 10
BENCH_ITERATIONS = 200


def local_transport(workdir: str, timeouts: Timeouts | None = None) -> LocalTransport:
    """This machine as the device: this Python (numpy and ONNX Runtime) runs the agent in ``workdir``."""
    return LocalTransport(sys.executable, workdir, timeouts)


class DeviceSession:
    """The deploy steps on one device. Files are pushed once per session and addressed by content."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.label = transport.label
        self._agent: AgentInvocation | None = None
        self._remote: dict[Path, str] = {}

    @classmethod
    def open(cls, host: Host, timeouts: Timeouts | None = None) -> DeviceSession:
        """Connect over SSH with strict host keys (DeviceError when unreachable or the key is refused)."""
        return cls(SSHTransport.open(host, timeouts))

    @classmethod
    def local(cls, workdir: str = "~/.edgeq") -> DeviceSession:
        """This machine as the device, with this Python (numpy and ONNX Runtime) running the agent."""
        return cls(local_transport(workdir))

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> DeviceSession:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _call(self, answer: type[W], sub_command: str, args: list[str] | None = None, **options: Any) -> W:
        """Run an agent sub-command and validate its answer. The agent is assumed present (no extra round
        trip when it is); a device without this version gets it pushed, then the call runs again."""
        if self._agent is None:
            self._agent = expected_agent(self.transport)
        try:
            reply = run_agent(self.transport, self._agent, sub_command, args, **options)
        except AgentMissing:
            self._agent = push_agent(self.transport)
            reply = run_agent(self.transport, self._agent, sub_command, args, **options)
        return parse_answer(answer, reply, self.label, f"agent `{sub_command}`")

    def _remote_path(self, local: Path) -> str:
        if local not in self._remote:
            raise DeviceError(self.label, f"{local.name} was not pushed to the device in this session")
        return self._remote[local]

    def push(self, plan: DeployPlan) -> SyncResult:
        """The plan's files and the agent, in one content-addressed sync: only what the device lacks is sent.

        The agent travels as a blob; it is unpacked the first time a call finds it missing.
        """
        with agent_file() as agent:
            result = push_blobs(self.transport, [*plan.files().values(), agent])
        self._remote.update(result.remote)
        return result

    def probe(self) -> ProbeReport:
        return self._call(ProbeReport, "probe", pass_workdir=False)

    def existing_build(self, engine_id: str) -> BuildReport | None:
        """The build.json of an engine already on the device, if there is one."""
        found = self.transport.run(["cat", self.transport.path("engines", engine_id, "build.json")])
        if not found.ok:
            return None
        try:
            data = json.loads(found.stdout)
        except ValueError:
            raise DeviceError(self.label, f"the build.json of engine {engine_id} is not JSON") from None
        return parse_answer(BuildReport, data, self.label, f"the build.json of engine {engine_id}")

    def build(self, plan: DeployPlan, meta: dict[str, Any]) -> tuple[BuildReport, bool]:
        """Build the plan's engine (not activated); an engine of the same id already there is reused."""
        existing = self.existing_build(plan.engine_id)
        if existing is not None:
            return existing, True
        remote = {str(local): self._remote_path(local) for local in plan.files().values()}
        options = plan.build_options.on_device(remote)
        args = ["--engine-id", plan.engine_id, "--options", options.to_json(), "--meta", json.dumps(meta, sort_keys=True)]
        return self._call(BuildReport, "build", args, timeout=BUILD_TIMEOUT), False

    def fetch_engine(self, plan: DeployPlan, dest: Path) -> Path:
        """The built engine folder, packed on the device and pulled into ``dest`` (for devices of the same class)."""
        remote = self.transport.path("engines", f".export-{plan.engine_id}.tar")
        exported = self._call(ExportReport, "export", ["--engine-id", plan.engine_id, "--out", remote])
        local = Path(dest) / f"{plan.engine_id}.tar"
        try:
            self.transport.get(exported.path, local)
        finally:
            self.transport.run(["rm", "-f", exported.path])
        if sha256_file(local) != exported.sha256:
            local.unlink(missing_ok=True)
            raise DeviceError(self.label, f"the engine archive of {plan.engine_id} arrived damaged (sha256 mismatch)")
        return local

    def install_engine(self, plan: DeployPlan, engine_file: Path) -> ImportReport:
        """Install an engine another device of the same class built, checked file by file (not activated)."""
        pushed = push_blobs(self.transport, [engine_file])
        args = ["--engine-id", plan.engine_id, "--archive", pushed.remote[Path(engine_file)]]
        return self._call(ImportReport, "import", args, timeout=RUN_TIMEOUT)

    def evaluate(self, plan: DeployPlan, pulled: Path) -> tuple[EvaluateReport, Evaluation]:
        """Run engine and FP32 reference on the validation set there; pull the scores; apply the recipe's metric."""
        data = plan.calibration.artifacts.validation
        args = ["--engine-id", plan.engine_id, "--data", self._remote_path(data)]
        report = self._call(EvaluateReport, "evaluate", args, timeout=RUN_TIMEOUT)
        outputs = {}
        for kind, name in (("fp32", report.scores_fp32), ("int8", report.scores_int8)):
            local = pulled / f"outputs.{kind}.npz"
            self.transport.get(posixpath.join(self.transport.path("engines", plan.engine_id), name), local)
            with np.load(local, allow_pickle=False) as archive:
                outputs[kind] = {key: archive[key] for key in archive.files}
        with np.load(data, allow_pickle=False) as validation:
            labels = labels_module.from_arrays(validation)
        timings = {"fp32": report.fp32.ms_per_sample, "int8": report.int8.ms_per_sample}
        return report, score(plan.recipe, outputs["fp32"], outputs["int8"], labels, timings)

    def bench(self, plan: DeployPlan, iterations: int = BENCH_ITERATIONS) -> BenchReport:
        axes = {name: -1 if axis is None else axis for name, axis in batch_axes(plan.recipe.inputs).items()}
        args = ["--engine-id", plan.engine_id, "--warmup", str(BENCH_WARMUP), "--iterations", str(iterations),
                "--batch-axes", json.dumps(axes)]
        return self._call(BenchReport, "bench", args, timeout=RUN_TIMEOUT)

    def activate(self, plan: DeployPlan, meta: dict[str, Any]) -> ActivationReport:
        args = ["--engine-id", plan.engine_id, "--meta", json.dumps(meta, sort_keys=True)]
        return self._call(ActivationReport, "activate", args)

    def rollback(self, meta: dict[str, Any] | None = None) -> ActivationReport:
        return self._call(ActivationReport, "rollback", ["--meta", json.dumps(meta or {}, sort_keys=True)])

    def status(self) -> StatusReport:
        return self._call(StatusReport, "status")

    def gc(self, keep: int, blob_grace: float) -> GcReport:
        """Remove old engines (never current or previous), blobs unused for ``blob_grace`` s, crash leftovers."""
        return self._call(GcReport, "gc", ["--keep", str(keep), "--blob-grace", f"{blob_grace:g}"])

    def smoke(self, plan: DeployPlan, engine_id: str = "current") -> SmokeReport:
        """The plan's smoke inputs through the engine, compared there with the host's FP32 outputs."""
        if plan.smoke_data not in self._remote:
            self._remote.update(push_blobs(self.transport, [plan.smoke_data]).remote)
        args = ["--engine-id", engine_id, "--data", self._remote[plan.smoke_data]]
        with np.load(plan.smoke_data) as smoke:
            if not is_class_scores(smoke["expected"]):  # top-1 agreement means nothing there: cosine alone decides
                args += ["--min-agreement", "0"]
        return self._call(SmokeReport, "smoke", args, timeout=RUN_TIMEOUT)
