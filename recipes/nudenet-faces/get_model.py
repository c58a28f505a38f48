"""Copy the detector this recipe uses out of the installed `nudenet` package (its weights are not committed here).

    pip install nudenet==3.4.2 && python recipes/nudenet-faces/get_model.py

nudenet 3.4.2 (MIT licence, per its package metadata) ships a YOLOv8n detector, `320n.onnx`: input `images`
[N, 3, 320, 320] float32 RGB in 0..1, output `output0` [N, 22, 2100] (cx, cy, w, h in input pixels, then 18
class scores per anchor). The copy is checked against the package's file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent


def package_model() -> Path:
    """nudenet's 320n.onnx, where the installed package keeps it."""
    spec = importlib.util.find_spec("nudenet")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("nudenet is not installed: pip install nudenet==3.4.2")
    return Path(spec.submodule_search_locations[0]) / "320n.onnx"


def main() -> None:
    source, target = package_model(), HERE / "model.onnx"
    shutil.copyfile(source, target)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    print(f"{target} ({target.stat().st_size} bytes, sha256 {digest[:16]}...) from {source}")


if __name__ == "__main__":
    main()
