"""Deploy overhead: one deploy to a real loopback SSH device, split into its phases.

Baselines measured in the same run:
- the device's own work (build, evaluate, bench, smoke, as the agent timed them): edgeq's overhead is the rest
  (connection included),
  target <= 2 s;
- the first deploy's push: an unchanged re-deploy's push must take <= 20 % of it.

Run as root after tests/devices/provision.sh:
    python bench/deploy_overhead.py [--recipe recipes/squeezenet-digits/recipe.yaml] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgeq import recipe as recipes
from edgeq import targets
from edgeq.deploy.plan import make_plan
from edgeq.deploy.report import deploy_report
from edgeq.fleet import rollout as rollouts
from tests.devices.fleet import missing_prerequisites, running_fleet

EXAMPLE = ROOT / "recipes" / "squeezenet-digits" / "recipe.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, default=EXAMPLE)
    parser.add_argument("--repeat", type=int, default=3, help="unchanged re-deploys to time")
    args = parser.parse_args()
    reason = missing_prerequisites()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    recipe = recipes.load(args.recipe)
    with tempfile.TemporaryDirectory() as out:
        plan = make_plan(recipe, targets.resolve("local"), progress=False, out=Path(out))
        with running_fleet(1) as fleet:
            reports = []
            host = fleet[0].host
            for _ in range(1 + args.repeat):
                run = rollouts.deploy(plan, [host])
                run.run()
                (device,) = run.state.devices.values()
                report = deploy_report(plan, host.label, device)
                if report is None:
                    print(f"deploy failed: {device.error}", file=sys.stderr)
                    return 1
                reports.append(report)
    first, again = reports[0], reports[1:]
    print(f"recipe {recipe.name}, device {first.host} (loopback OpenSSH), backend {first.build.backend}")
    columns = ("connect", "push", "status", "probe", "build", "reuse", "evaluate", "bench", "smoke", "activate", "verify")
    print(f"{'':16}" + "".join(f"{name:>9}" for name in (*columns, "device", "edgeq")))
    for label, report in [("first deploy", first)] + [(f"re-deploy {i + 1}", r) for i, r in enumerate(again)]:
        p = report.phases
        print(f"{label:16}" + "".join(f"{p.get(k, 0.0):>9.3f}" for k in columns)
              + f"{report.device_seconds:>9.3f}{report.overhead_seconds:>9.3f}")
    overhead = first.overhead_seconds
    repush = statistics.median(r.phases["push"] for r in again)
    print()
    print(f"edgeq overhead, first deploy: {overhead:.3f} s (target <= 2 s): {'PASS' if overhead <= 2 else 'FAIL'}")
    print(f"  ratio overhead / device work (baseline): {overhead / max(first.device_seconds, 1e-9):.3f}")
    print(f"re-deploy push: {repush:.3f} s vs first push {first.phases['push']:.3f} s (baseline): ratio "
          f"{repush / first.phases['push']:.3f} (target <= 0.20): {'PASS' if repush <= 0.2 * first.phases['push'] else 'FAIL'}")
    print(f"bytes sent: first {first.transfer.bytes_sent}, re-deploy {again[0].transfer.bytes_sent}")
    speedups = [r.bench.speedup for r in reports]
    print(f"on-device latency, INT8 vs FP32 (baseline) median speed-up over {len(speedups)} deploys: "
          f"x{statistics.median(speedups):.2f} (INT8 median {first.bench.int8.median_ms:.2f} ms, "
          f"FP32 {first.bench.fp32.median_ms:.2f} ms in the first)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
