"""An engine built on one device installs on another of the same class, checked file by file."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from edgeq import recipe as recipes
from edgeq import targets
from edgeq.deploy.pipeline import deploy_meta
from edgeq.deploy.plan import DeployPlan, make_plan
from edgeq.deploy.session import DeviceSession
from edgeq.errors import DeviceError
from tests.calibrate_nets import fire_net, write_recipe


@pytest.fixture
def plan(tmp_path: Path) -> DeployPlan:
    recipe = recipes.load(write_recipe(tmp_path / "r", fire_net()))
    return make_plan(recipe, targets.resolve("local"), progress=False)


def test_engine_moves_to_a_second_device_and_runs_there(plan: DeployPlan, tmp_path: Path) -> None:
    with DeviceSession.local(str(tmp_path / "builder")) as builder:
        builder.push(plan)
        build, _ = builder.build(plan, deploy_meta(plan))
        archive = builder.fetch_engine(plan, tmp_path)
    with DeviceSession.local(str(tmp_path / "other")) as other:
        other.push(plan)
        installed = other.install_engine(plan, archive)
        assert installed.engine_id == plan.engine_id
        assert installed.build.engine.artifact.sha256 == build.engine.artifact.sha256
        assert other.status().current is None  # installed, not activated
        smoke = other.smoke(plan, plan.engine_id)
        assert smoke.passed
        # the second device did not build: its engine folder has the builder's build.json
        assert other.existing_build(plan.engine_id).built_at == build.built_at


def test_damaged_engine_archive_is_refused(plan: DeployPlan, tmp_path: Path) -> None:
    with DeviceSession.local(str(tmp_path / "builder")) as builder:
        builder.push(plan)
        build, _ = builder.build(plan, deploy_meta(plan))
        archive = builder.fetch_engine(plan, tmp_path)
    damaged = tmp_path / "damaged.tar"
    with tarfile.open(archive) as source, tarfile.open(damaged, "w") as target:
        for member in source.getmembers():
            data = source.extractfile(member).read()
            if member.name == build.engine.artifact.path:
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
            target.addfile(member, __import__("io").BytesIO(data))
    with DeviceSession.local(str(tmp_path / "other")) as other:
        with pytest.raises(DeviceError, match="missing or damaged"):
            other.install_engine(plan, damaged)
        assert other.existing_build(plan.engine_id) is None
