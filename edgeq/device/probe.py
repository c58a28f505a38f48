"""What this device is: Jetson module, L4T, compute capability, TensorRT, CPU, memory, backends.

Sources and formats: trt-jetson-facts.md §1.1 (SoC -> compute capability, DLA) and §2.2 (detection).
Every file path is read under ``root`` so tests can feed a fake /proc and /etc tree.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import re
import shutil
import subprocess
from typing import Callable, Dict, List, Optional, Tuple

from .report import ProbeReport
from .trt_version import TrtVersion

Runner = Callable[[List[str]], Optional[str]]

COMPUTE_CAPABILITY: Dict[str, str] = {
    "tegra210": "5.3",
    "tegra186": "6.2",
    "tegra194": "7.2",
    "tegra234": "8.7",
    "tegra264": "11.0",
}
NO_GPU_INT8 = ("5.3", "6.2")
# Module-name fragment -> DLA cores, most specific first (§1.1; Orin NX 8 GB is unverified, left unknown).
DLA_CORES: List[Tuple[str, int]] = [
    ("orin nano", 0),
    ("orin nx 16", 2),
    ("agx orin", 2),
    ("igx orin", 2),
    ("xavier", 2),
    ("thor", 0),
    ("nano", 0),
    ("tx1", 0),
    ("tx2", 0),
]
ARM_CPU_PARTS = {"0xd07": "Cortex-A57", "0xd08": "Cortex-A72", "0xd42": "Cortex-A78AE", "0x004": "NVIDIA Carmel"}
TRTEXEC_DEFAULT = "/usr/src/tensorrt/bin/trtexec"
_RELEASE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)")


def run_command(argv: List[str]) -> Optional[str]:
    """stdout+stderr of a command, or None if it is missing, fails or hangs."""
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode("utf-8", "replace") if done.returncode == 0 else None


def _read(root: str, path: str) -> Optional[str]:
    try:
        with open(os.path.join(root, path.lstrip("/")), "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return None


def parse_l4t_release(text: str) -> Optional[str]:
    """``# R36 (release), REVISION: 4.3, ...`` -> ``36.4.3``."""
    match = _RELEASE.search(text)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def soc_from_compatible(text: str) -> Optional[str]:
    """Last ``nvidia,tegraNNN`` token of the NUL-separated compatible list."""
    socs = [t.split(",", 1)[1] for t in text.split("\0") if re.match(r"^nvidia,tegra\d+$", t.strip())]
    return socs[-1] if socs else None


def dla_cores_for(module: str) -> Optional[int]:
    name = module.lower()
    for fragment, cores in DLA_CORES:
        if fragment in name:
            return cores
    return None


def _module_version(name: str) -> Optional[str]:
    if importlib.util.find_spec(name) is None:
        return None
    try:
        return str(importlib.import_module(name).__version__)
    except Exception:  # noqa: BLE001 (a broken install counts as absent)
        return None


def _dpkg_tensorrt(run: Runner) -> Optional[str]:
    out = run(["dpkg-query", "-W", "-f=${Package} ${Version}\\n", "libnvinfer*"]) or ""
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and re.match(r"^libnvinfer\d+$", parts[0]):
            return str(TrtVersion.parse(parts[1]))
    return None


def find_trtexec(root: str = "/") -> Optional[str]:
    on_path = shutil.which("trtexec") if root == "/" else None
    default = os.path.join(root, TRTEXEC_DEFAULT.lstrip("/"))
    return on_path or (default if os.access(default, os.X_OK) else None)


def _cpu(cpuinfo: str) -> Tuple[Optional[str], int]:
    fields = [line.split(":", 1) for line in cpuinfo.splitlines() if ":" in line]
    values: Dict[str, List[str]] = {}
    for key, value in fields:
        values.setdefault(key.strip().lower(), []).append(value.strip())
    names = values.get("model name")
    model = names[0] if names else None
    if model is None and values.get("cpu part"):
        part = values["cpu part"][0]
        model = ARM_CPU_PARTS.get(part, f"ARM CPU part {part}")
    return model, len(values.get("processor", [])) or (os.cpu_count() or 1)


def probe(root: str = "/", run: Runner = run_command) -> ProbeReport:
    missing: List[str] = []
    release = _read(root, "/etc/nv_tegra_release")
    l4t = parse_l4t_release(release) if release else None
    if l4t is None:
        dpkg = (run(["dpkg-query", "--showformat=${Version}", "--show", "nvidia-l4t-core"]) or "").strip()
        l4t = dpkg.split("-", 1)[0] or None
    if l4t is None:
        missing.append("l4t: no /etc/nv_tegra_release and no nvidia-l4t-core package")

    model = _read(root, "/proc/device-tree/model")
    module = model.strip("\0\n ") if model else None
    if module is None:
        missing.append("module: no /proc/device-tree/model")
    compatible = _read(root, "/proc/device-tree/compatible")
    soc = soc_from_compatible(compatible) if compatible else None
    cc = COMPUTE_CAPABILITY.get(soc) if soc else None
    if cc is None:
        missing.append("compute capability: no known nvidia,tegra SoC in /proc/device-tree/compatible")
    dla = dla_cores_for(module) if module else None
    if dla is None:
        missing.append("dla cores: module not in the DLA table")

    trt_python = _module_version("tensorrt")
    trt_version = trt_python or _dpkg_tensorrt(run)
    trt_source: Optional[str] = "python" if trt_python else "dpkg"
    trtexec = find_trtexec(root)
    if trt_version is None and trtexec:
        found = TrtVersion.from_log(run([trtexec, "--help"]) or "")
        trt_version, trt_source = (str(found), "trtexec") if found else (None, None)
    if trt_version is None:
        trt_source = None
        missing.append("tensorrt: no python module, no libnvinfer package, no trtexec version")
    if trtexec is None:
        missing.append("trtexec: not on PATH nor at " + TRTEXEC_DEFAULT)

    cpu_model, cores = _cpu(_read(root, "/proc/cpuinfo") or "")
    meminfo = re.search(r"MemTotal:\s+(\d+)\s*kB", _read(root, "/proc/meminfo") or "")
    ort = _module_version("onnxruntime")
    backends = (["tensorrt"] if trt_python or trtexec else []) + (["onnxruntime"] if ort else [])
    if not backends:
        missing.append("backends: neither TensorRT nor onnxruntime is usable")
    return ProbeReport(
        l4t=l4t,
        module=module,
        soc=soc,
        compute_capability=cc,
        gpu_int8=(cc not in NO_GPU_INT8) if cc else None,
        dla_cores=dla,
        tensorrt_version=trt_version,
        tensorrt_source=trt_source,
        tensorrt_python=trt_python is not None,
        trtexec=trtexec,
        cpu_model=cpu_model,
        cpu_cores=cores,
        memory_mb=int(meminfo.group(1)) // 1024 if meminfo else None,
        machine=platform.machine(),
        python=platform.python_version(),
        onnxruntime_version=ort,
        backends=backends,
        missing=missing,
    )
