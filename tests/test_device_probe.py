"""probe on fake device trees in the documented formats (trt-jetson-facts.md §2.2, §1.1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from edgeq.device.probe import probe, soc_from_compatible
from edgeq.device.report import ProbeReport

ORIN_RELEASE = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8\n"
ARM_CPUINFO = "".join(f"processor\t: {i}\nBogoMIPS\t: 62.50\nCPU implementer\t: 0x41\nCPU part\t: 0xd42\n\n"
                      for i in range(12))


def device_tree(root: Path, model: str, compatible: list[str], release: str | None = ORIN_RELEASE,
                trtexec: bool = False) -> Path:
    files: dict[str, str] = {
        "proc/device-tree/model": model + "\0",
        "proc/device-tree/compatible": "\0".join(compatible) + "\0",
        "proc/cpuinfo": ARM_CPUINFO,
        "proc/meminfo": "MemTotal:       62833744 kB\nMemFree:         1000000 kB\n",
    }
    if release:
        files["etc/nv_tegra_release"] = release
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    if trtexec:
        path = root / "usr/src/tensorrt/bin/trtexec"
        path.parent.mkdir(parents=True)
        path.write_text("")
        path.chmod(0o755)
    return root


def runner(outputs: dict[str, str]):  # type: ignore[no-untyped-def]
    """Stands in for dpkg-query / trtexec --help, answering with their documented output for each command."""
    calls: list[list[str]] = []

    def run(argv: list[str]) -> str | None:
        calls.append(argv)
        key = next((k for k in outputs if k in " ".join(argv)), None)
        return outputs[key] if key else None

    run.calls = calls  # type: ignore[attr-defined]
    return run


def test_agx_orin_with_tensorrt_from_dpkg(tmp_path: Path) -> None:
    root = device_tree(tmp_path, "NVIDIA Jetson AGX Orin Developer Kit",
                       ["nvidia,p3737-0000+p3701-0005", "nvidia,p3701-0005", "nvidia,tegra234"], trtexec=True)
    run = runner({"libnvinfer": "libnvinfer-bin 10.3.0.30-1+cuda12.5\nlibnvinfer10 10.3.0.30-1+cuda12.5\n"})
    report = probe(str(root), run)
    assert (report.l4t, report.soc, report.compute_capability, report.gpu_int8) == ("36.4.3", "tegra234", "8.7", True)
    assert report.module == "NVIDIA Jetson AGX Orin Developer Kit" and report.dla_cores == 2
    assert (report.tensorrt_version, report.tensorrt_source) == ("10.3.0", "dpkg")
    assert report.trtexec == str(root / "usr/src/tensorrt/bin/trtexec")
    assert (report.cpu_model, report.cpu_cores, report.memory_mb) == ("Cortex-A78AE", 12, 61361)
    assert report.backends[0] == "tensorrt" and report.missing == []
    assert ProbeReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report


def test_nano_without_release_file_uses_dpkg_and_trtexec_banner(tmp_path: Path) -> None:
    root = device_tree(tmp_path, "NVIDIA Jetson Nano Developer Kit", ["nvidia,p3450-0000", "nvidia,tegra210"],
                       release=None, trtexec=True)
    run = runner({"nvidia-l4t-core": "32.7.4-20230608212426",
                  "--help": "&&&& RUNNING TensorRT.trtexec [TensorRT v8201] # trtexec --help\n"})
    report = probe(str(root), run)
    assert (report.l4t, report.compute_capability, report.gpu_int8, report.dla_cores) == ("32.7.4", "5.3", False, 0)
    assert (report.tensorrt_version, report.tensorrt_source) == ("8.2.1", "trtexec")


def test_plain_linux_box_says_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text("processor\t: 0\nmodel name\t: AMD EPYC\n")
    report = probe(str(tmp_path), runner({}))
    assert report.l4t is None and report.soc is None and report.tensorrt_version is None and report.trtexec is None
    assert report.cpu_model == "AMD EPYC" and report.cpu_cores == 1
    assert {m.split(":")[0] for m in report.missing} >= {"l4t", "module", "compute capability", "tensorrt", "trtexec"}


def test_soc_is_the_last_tegra_token() -> None:
    assert soc_from_compatible("nvidia,p3768-0000+p3767-0005\0nvidia,p3767-0005\0nvidia,tegra234\0") == "tegra234"
    assert soc_from_compatible("raspberrypi,4-model-b\0brcm,bcm2711\0") is None


def test_probe_subcommand_with_root(tmp_path: Path) -> None:
    root = device_tree(tmp_path, "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super",
                       ["nvidia,p3768-0000+p3767-0005", "nvidia,p3767-0005", "nvidia,tegra234"])
    done = subprocess.run([sys.executable, "-m", "edgeq.device", "probe", "--root", str(root)],
                          cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE, text=True, check=True,
                          env=dict(os.environ))
    report = ProbeReport.from_dict(json.loads(done.stdout))
    assert (report.l4t, report.compute_capability, report.dla_cores) == ("36.4.3", "8.7", 0)
    assert "onnxruntime" in report.backends
