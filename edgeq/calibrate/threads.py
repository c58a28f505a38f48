"""How `calibrate` spreads its work over the CPU: ONNX Runtime threads, numpy workers and image decoders.

ONNX Runtime's threads never spin (``session.intra_op.allow_spinning=0``): a spinning pool keeps
its cores busy between operators, so the histogram workers and the image decoders running beside it
would fight it for those cores.

- Statistics: one ONNX Runtime session runs the calibration batches while :attr:`ThreadPlan.workers`
  threads fold the previous batch into the histograms. When ONNX Runtime may use every core, half
  of them are left to the workers (the fold costs about as much CPU as the run).
- Validation: :meth:`ThreadPlan.lanes` threads each run a batch through the FP32 and the Q/DQ model
  at the same time (ONNX Runtime scales better over batches than inside one batch, and the INT8 host
  model hardly scales inside a batch at all), as many as the cores and :data:`LANE_BUDGET` allow. Each
  lane computes in its own thread, helped by the session's :meth:`ThreadPlan.validation_threads` - 1
  pool threads: about :attr:`ThreadPlan.ort` threads in all.
- Images are decoded ahead of both by :attr:`ThreadPlan.decoders` threads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

MAX_LANES = 16  # concurrent validation runs, at most
# Bytes of activations the concurrent validation runs may hold together. On the example (one sample a run, about
# 6 MB of activations alive in each: 2 x its largest tensor) 4 lanes peaked at 195 MB, 8 at 218-223 and 16 at
# 267 MB on 16 cores, with the validation step 1.38, 1.05 and 0.95 s: this keeps it under the statistics' budget.
LANE_BUDGET = 64 << 20
MAX_DECODERS = 2  # enough to keep ahead; more would only compete for the GIL (PIL holds it for part of each image)
MAX_WORKERS = 8  # enough for the fold to keep up with the run; counted by bincount, it stops scaling at 4-8 (the GIL)


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, so containers and taskset are respected)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ThreadPlan:
    """Thread counts for one calibration run; :meth:`for_machine` derives them from the cores."""

    cores: int  # CPU cores available to the process
    ort: int  # ONNX Runtime threads busy at any one time, summed over concurrent runs

    @classmethod
    def for_machine(cls, threads: int | None = None, cores: int | None = None) -> ThreadPlan:
        """``threads``: the ONNX Runtime threads to use (default: every core); ``cores``: override the core count."""
        cores = max(1, cores if cores is not None else available_cores())
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        return cls(cores=cores, ort=threads if threads is not None else cores)

    @property
    def collect_threads(self) -> int:
        """Intra-op threads of the statistics session: leaves at least half of the cores to the fold."""
        return max(1, min(self.ort, self.cores - self.cores // 2))

    @property
    def workers(self) -> int:
        """numpy threads for the histogram fold, the range search and compression."""
        return max(1, min(MAX_WORKERS, self.cores - self.collect_threads))

    @property
    def decoders(self) -> int:
        """Threads decoding images ahead of the runs."""
        return max(1, min(MAX_DECODERS, self.cores // 4))

    def lanes(self, run_bytes: int) -> int:
        """Concurrent validation runs of ``run_bytes`` of activations each: one per ONNX Runtime thread, as many as
        :data:`LANE_BUDGET` holds, at least one. How many run at once never changes what each run computes."""
        return max(1, min(MAX_LANES, self.ort, LANE_BUDGET // max(run_bytes, 1)))

    def validation_threads(self, lanes: int) -> int:
        """Intra-op threads of a validation session run on ``lanes``: their calling threads and the pool's, ``ort`` in all."""
        return max(1, self.ort - lanes + 1)
