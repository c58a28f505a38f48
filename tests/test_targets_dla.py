"""DLA per TensorRT release in the target profiles and in what deploy asks the device to build."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from edgeq import recipe as recipes
from edgeq import targets
from edgeq.calibrate.report import Artifacts
from edgeq.deploy.plan import choose_quantization, device_build_options
from edgeq.deploy.wire import BuildOptions
from edgeq.errors import InputError

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "squeezenet-digits" / "recipe.yaml"
TARGETS = Path(__file__).resolve().parent.parent / "targets"


@pytest.mark.parametrize("name", ["agx-orin-jp7.2", "orin-nx-jp7.2"])
def test_jetpack_72_orin_profiles_say_no_usable_dla_with_the_release_notes(name):
    profile = targets.resolve(name)
    assert (profile.dla_cores, profile.dla_usable_cores, profile.usable_dla_cores) == (2, 0, 0)
    assert "Orin DLA is not supported at this time" in profile.sources["dla_usable_cores"]
    assert profile.l4t == "39.2.0" and "NVIDIA/TensorRT#4832" in profile.sources["l4t"]
    assert "39.1.0" in profile.sources["l4t"]  # the disagreeing mapping is named, not hidden


def test_a_profile_cannot_claim_dla_its_tensorrt_lacks(tmp_path):
    data = yaml.safe_load((TARGETS / "agx-orin-jp7.2.yaml").read_text())
    data["dla_usable_cores"] = 2
    with pytest.raises(ValueError, match=r"TensorRT 10\.16\.2 has no DLA"):
        targets.Target.model_validate(data)


def _recipe(tmp_path: Path, **build: object) -> recipes.Recipe:
    if not (RECIPE.parent / "model.onnx").is_file():
        pytest.skip("the example model is not trained")
    data = yaml.safe_load(RECIPE.read_text())
    data["build"] = {**data.get("build", {}), **build}
    path = RECIPE.parent / f".test-{tmp_path.name}.yaml"
    path.write_text(yaml.safe_dump(data))
    try:
        return recipes.load(path)
    finally:
        path.unlink()


def _options(recipe: recipes.Recipe, target: targets.Target, quantization: str, folder: Path) -> BuildOptions:
    """What deploy sends the device to build."""
    calibration = SimpleNamespace(artifacts=Artifacts.in_folder(folder, with_cache=target.implicit_int8), folder=folder)
    return device_build_options(recipe, target, quantization, calibration)  # type: ignore[arg-type]


def test_deploy_to_a_jetpack_72_orin_never_asks_for_a_dla_core(tmp_path):
    recipe = _recipe(tmp_path, dla_core=0, gpu_fallback=True)
    jp72, jp62 = targets.resolve("agx-orin-jp7.2"), targets.resolve("agx-orin-jp6.2")
    assert choose_quantization(recipe, jp72) == "explicit"
    options = _options(recipe, jp72, "explicit", tmp_path)
    assert options.dla_core is None and not options.gpu_fallback
    assert choose_quantization(recipe, jp62) == "implicit"  # TensorRT 10.3 DLA: the cache, not Q/DQ
    dla = _options(recipe, jp62, "implicit", tmp_path)
    assert (dla.dla_core, dla.gpu_fallback) == (0, True) and dla.cache is not None


def test_explicit_qdq_with_dla_on_tensorrt_10_3_is_refused_with_a_clear_message(tmp_path):
    recipe = _recipe(tmp_path, dla_core=0, quantization="explicit")
    with pytest.raises(InputError, match=r"no NVIDIA source says TensorRT 10\.3\.0 DLA takes Q/DQ networks; use 'implicit'"):
        choose_quantization(recipe, targets.resolve("agx-orin-jp6.2"))
    assert choose_quantization(recipe, targets.resolve("agx-orin-jp7.2.2-trt11")) == "explicit"
