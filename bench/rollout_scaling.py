"""Rollout time for 1, 2, 4 and 8 devices, built once per device class and built on each device.

Runs `edgeq rollout --json` on the loopback SSH fleet of tests/devices (root, openssh-server and
tests/devices/provision.sh needed). On real hardware each device brings its own processor; here all
devices share this machine's cores, so the script reports the split the rollout report measures:

- device work: build, evaluate, bench and smoke seconds from the devices' own reports (summed);
- device path: per wave, the slowest device's remote commands (its work plus agent start-up) and waits;
- edgeq's part: per wave, the slowest device's remaining step time: connections, transfers, orchestration.

Targets: edgeq's part for 8 devices at most 1.5x its part for one; built once per class, the total
device build time for 8 devices about that of one.

    python bench/rollout_scaling.py [--recipe RECIPE --target NAME] [--counts 1,2,4,8]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.calibrate_nets import fire_net, write_recipe
from tests.devices.fleet import Fleet, missing_prerequisites, running_fleet

EDGEQ_TARGET_RATIO = 1.5


def _inventory(fleet: Fleet, folder: Path, target: str) -> Path:
    hosts = {
        f"dev{i + 1}": {"address": h.address, "user": h.user, "key": str(h.key), "known_hosts": str(h.known_hosts),
                        "python": h.python, "target": target}
        for i, h in enumerate(fleet.hosts)
    }
    path = folder / "fleet.yaml"
    path.write_text(yaml.safe_dump({"hosts": hosts}))
    return path


def _variant(base: Path, run: int) -> Path:
    """The recipe with a build setting no other run uses: a new engine id, so every run really builds."""
    data = yaml.safe_load(base.read_text())
    data.setdefault("build", {})["workspace_mb"] = 4000 + run
    path = base.with_name(f".bench-{run}-{base.name}")
    path.write_text(yaml.safe_dump(data))
    return path


def _rollout(recipe: Path, inventory: Path, count: int, build_each: bool) -> dict:
    limit = [arg for i in range(count) for arg in ("--limit", f"dev{i + 1}")]
    extra = ["--build-each"] if build_each else []
    command = [sys.executable, "-m", "edgeq", "rollout", str(recipe), "--inventory", str(inventory), *limit,
               "--waves", "100%", "--concurrency", str(count), "--json", *extra]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    if done.returncode != 0:
        raise SystemExit(f"rollout of {count} device(s) exited with {done.returncode}:\n{done.stderr}\n{done.stdout[-2000:]}")
    return json.loads(done.stdout)


def _row(report: dict) -> dict:
    devices = report["devices"]
    return {
        "wall": report["seconds"],
        "work": sum(d["device_seconds"] for d in devices),
        "path": report["device_path_seconds"],
        "edgeq": report["edgeq_seconds"],
        "builds": report["builds"],
        "build": sum(d["build_seconds"] or 0.0 for d in devices),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, help="recipe to roll out (default: a small generated CNN)")
    parser.add_argument("--target", default="local", help="target profile of the loopback devices")
    parser.add_argument("--counts", default="1,2,4,8")
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration; the median run is shown")
    args = parser.parse_args()
    reason = missing_prerequisites()
    if reason:
        raise SystemExit(f"cannot start the loopback fleet: {reason}")
    counts = [int(c) for c in args.counts.split(",")]
    with tempfile.TemporaryDirectory(prefix="edgeq-bench-") as tmp, running_fleet(max(counts)) as fleet:
        folder = Path(tmp)
        base = args.recipe.resolve() if args.recipe else write_recipe(folder / "tiny", fire_net(size=64), samples=64, size=64)
        inventory = _inventory(fleet, folder, args.target)
        rows: dict[tuple[str, int], dict] = {}
        run = 0
        print(f"{'mode':<10}{'devices':>8}{'wall s':>9}{'device work s':>15}{'device path s':>15}{'edgeq s':>9}{'builds':>8}{'build s (sum)':>15}")
        for mode in ("once", "each"):
            for count in counts:
                runs = []
                for _ in range(args.repeat):
                    run += 1
                    recipe = _variant(base, run)
                    try:
                        runs.append(_row(_rollout(recipe, inventory, count, build_each=mode == "each")))
                    finally:
                        recipe.unlink()
                row = rows[(mode, count)] = sorted(runs, key=lambda r: r["edgeq"])[len(runs) // 2]
                print(f"{mode:<10}{count:>8}{row['wall']:>9.2f}{row['work']:>15.2f}{row['path']:>15.2f}{row['edgeq']:>9.2f}"
                      f"{row['builds']:>8}{row['build']:>15.2f}")
        low, high = min(counts), max(counts)
        print()
        for mode in ("once", "each"):
            ratio = rows[(mode, high)]["edgeq"] / max(rows[(mode, low)]["edgeq"], 1e-9)
            verdict = "meets" if ratio <= EDGEQ_TARGET_RATIO else "MISSES"
            print(f"edgeq's part, {high} vs {low} device(s), built {mode}: {ratio:.2f}x ({verdict} the {EDGEQ_TARGET_RATIO}x target)")
        build_ratio = rows[("once", high)]["build"] / max(rows[("once", low)]["build"], 1e-9)
        each_ratio = rows[("each", high)]["build"] / max(rows[("each", low)]["build"], 1e-9)
        print(f"total device build time, {high} vs {low} device(s): built once per class {build_ratio:.2f}x, built on each {each_ratio:.2f}x")
        wall = rows[("each", high)]["wall"] / max(rows[("once", high)]["wall"], 1e-9)
        print(f"rollout wall time for {high} devices, built on each / built once per class: {wall:.2f}x")


if __name__ == "__main__":
    main()
