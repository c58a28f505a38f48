"""The container definitions copy only files that exist in the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = sorted((ROOT / "containers").glob("*Dockerfile"))


def test_there_is_a_host_and_a_device_image() -> None:
    names = {p.name for p in DOCKERFILES}
    assert {"host.Dockerfile", "device.Dockerfile"} <= names


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_copied_source_exists(dockerfile: Path) -> None:
    sources = []
    for line in dockerfile.read_text().splitlines():
        match = re.match(r"\s*COPY\s+(?!--from)(.+)", line)
        if match:
            parts = match.group(1).split()
            sources += [p for p in parts[:-1] if not p.startswith("--")]
    assert sources, f"{dockerfile.name} copies nothing"
    for source in sources:
        assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source} does not exist"


def test_device_image_entrypoint_runs_the_agent_package() -> None:
    text = (ROOT / "containers" / "device.Dockerfile").read_text()
    assert "edgeq/device" in text and '"-m", "edgeq_device"' in text
