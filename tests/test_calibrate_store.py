"""Where calibrations go: one folder per recipe and target, and a store of what every target shares."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import yaml

from edgeq import recipe as recipe_module
from edgeq import targets
from edgeq.calibrate import calibrate
from edgeq.calibrate.report import CalibrationResult
from edgeq.device.hashing import sha256_file
from tests.calibrate_nets import fire_net, write_recipe
from tests.cli import run_edgeq

ORIN = "agx-orin-jp6.2"  # TensorRT 10.3.0


def _second_recipe(folder: Path, name: str, seed: int) -> Path:
    """Another recipe in ``folder`` (beside write_recipe's), with its own model and the same data."""
    onnx.save(fire_net(seed=seed), folder / f"{name}.onnx")
    data = yaml.safe_load((folder / "recipe.yaml").read_text())
    data.update(name=name, model=f"{name}.onnx")
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_two_recipes_in_one_folder_keep_separate_outputs(tmp_path: Path) -> None:
    first_path = write_recipe(tmp_path, fire_net(seed=0))
    second_path = _second_recipe(tmp_path, "other", seed=7)
    target = targets.resolve(ORIN)
    first = calibrate(recipe_module.load(first_path), target, progress=False)
    before = {p.name: sha256_file(p) for p in first.folder.iterdir()}
    second = calibrate(recipe_module.load(second_path), target, progress=False)
    assert first.folder == tmp_path / "edgeq-out" / "tiny" / ORIN
    assert second.folder == tmp_path / "edgeq-out" / "other" / ORIN
    assert {p.name: sha256_file(p) for p in first.folder.iterdir()} == before  # the second left the first's alone
    assert json.loads(second.artifacts.report.read_text())["model"] == str(tmp_path / "other.onnx")
    assert sha256_file(second.artifacts.fp32_model) != sha256_file(first.artifacts.fp32_model)
    assert calibrate(recipe_module.load(first_path), target, progress=False).reused  # still current


ARTIFACTS = ("model.fp32.onnx", "model.qdq.onnx", "calibration.cache", "ranges.json", "validation.npz")


def _artifacts(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in ARTIFACTS}


def test_a_second_target_reuses_the_first_targets_statistics_and_gets_the_same_bytes(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, fire_net())
    first = calibrate(recipe_module.load(path), targets.resolve(ORIN), progress=False)
    assert not first.report.statistics_reused and {"prepare", "statistics"} <= set(first.report.seconds)
    xavier = targets.resolve("agx-xavier-jp5.1")  # TensorRT 8.5: another cache header, another folder
    second = calibrate(recipe_module.load(path), xavier, progress=False)
    assert second.report.statistics_reused and second.report.statistics_key == first.report.statistics_key
    assert "statistics" not in second.report.seconds and "prepare" not in second.report.seconds
    assert second.report.key != first.report.key and second.folder != first.folder
    assert (tmp_path / "edgeq-out" / "tiny" / ".store" / first.report.statistics_key / "statistics.npz").is_file()
    assert second.report.memory["statistics_passes"] == first.report.memory["statistics_passes"]  # how they were measured
    assert second.report.validation_reused and not first.report.validation_reused  # only xavier's INT8 model ran
    reused = _artifacts(second.folder)

    shutil.rmtree(tmp_path / "edgeq-out" / "tiny" / ".store")
    shutil.rmtree(second.folder)
    computed = calibrate(recipe_module.load(path), xavier, progress=False)
    assert not computed.report.statistics_reused and "statistics" in computed.report.seconds
    assert not computed.report.validation_reused and computed.report.accuracy == second.report.accuracy
    assert _artifacts(computed.folder) == reused  # ranges, cache, models and validation data: byte for byte
    assert json.loads(reused["ranges.json"])["tensors"]  # not trivially equal


def test_the_store_keeps_each_methods_ranges_and_a_damaged_entry_is_made_again(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, fire_net())
    orin, xavier = targets.resolve(ORIN), targets.resolve("agx-xavier-jp5.1")
    first = calibrate(recipe_module.load(path), orin, method="minmax", progress=False)
    entry = tmp_path / "edgeq-out" / "tiny" / ".store" / first.report.statistics_key
    assert sorted(p.name for p in entry.glob("ranges-*.json")) == ["ranges-minmax-99.99.json"]
    other = calibrate(recipe_module.load(path), orin, method="percentile", progress=False)  # statistics shared, not ranges
    assert other.report.statistics_reused and "statistics" not in other.report.seconds
    assert sorted(p.name for p in entry.glob("ranges-*.json")) == ["ranges-minmax-99.99.json", "ranges-percentile-99.99.json"]
    stored = json.loads((entry / "ranges-percentile-99.99.json").read_text())
    written = json.loads(other.artifacts.ranges.read_text())["tensors"]
    assert {r["name"]: r["amax"] for r in stored} == {name: r["amax"] for name, r in written.items()}

    statistics = entry / "statistics.npz"
    statistics.write_bytes(statistics.read_bytes()[:-7] + b"damaged")
    again = calibrate(recipe_module.load(path), xavier, method="minmax", progress=False)
    assert not again.report.statistics_reused and "statistics" in again.report.seconds  # measured again, not trusted
    assert calibrate(recipe_module.load(path), targets.resolve("local"), method="minmax", progress=False).report.statistics_reused


def _64_then_32_samples(tmp_path: Path) -> tuple[Path, dict, CalibrationResult, CalibrationResult]:
    """The tiny recipe calibrated for Orin on its 64 samples, then on 32: the recipe, its data, both results."""
    path = write_recipe(tmp_path, fire_net())
    first = calibrate(recipe_module.load(path), targets.resolve(ORIN), progress=False)
    data = yaml.safe_load(path.read_text())
    data["calibration"]["samples"] = 32
    path.write_text(yaml.safe_dump(data))
    return path, data, first, calibrate(recipe_module.load(path), targets.resolve(ORIN), progress=False)


def test_other_calibration_data_or_preprocessing_is_another_store_entry(tmp_path: Path) -> None:
    path, data, first, fewer = _64_then_32_samples(tmp_path)
    target = targets.resolve(ORIN)
    assert not fewer.report.statistics_reused and fewer.report.statistics_key != first.report.statistics_key
    data["calibration"].update(samples=64, method="mse")  # back to the first sampling; the method does not count
    data["budget"]["accuracy_drop"] = 4.0  # nor the budget
    path.write_text(yaml.safe_dump(data))
    again = calibrate(recipe_module.load(path), target, progress=False)
    assert again.report.statistics_reused and again.report.statistics_key == first.report.statistics_key


def test_another_sample_count_reuses_the_fp32_side_of_validation_and_gets_the_bytes_of_a_cold_run(tmp_path: Path) -> None:
    """The FP32 side of validation depends on the prepared model and the validation data, not on the calibration
    sampling: calibrating 32 samples after 64 runs only the INT8 model over the validation data."""
    path, _, first, fewer = _64_then_32_samples(tmp_path)
    assert not fewer.report.statistics_reused and fewer.report.validation_reused and not first.report.validation_reused
    warm = _artifacts(fewer.folder)
    shutil.rmtree(tmp_path / "edgeq-out" / "tiny" / ".store")
    shutil.rmtree(fewer.folder)
    cold = calibrate(recipe_module.load(path), targets.resolve(ORIN), progress=False)
    assert not cold.report.validation_reused and cold.report.accuracy == fewer.report.accuracy
    assert _artifacts(cold.folder) == warm
    assert fewer.report.calibration_samples == 32 and first.report.calibration_samples == 64


def test_calibrate_for_one_target_then_another_says_the_statistics_were_reused(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, fire_net())
    first = run_edgeq("calibrate", path, "--target", "jetson-orin")
    assert first.code == 0 and "statistics reused" not in first.stdout, first.stderr
    second = run_edgeq("calibrate", path, "--target", "local")
    assert second.code == 0 and "statistics reused from the calibration store" in " ".join(second.stdout.split())


def test_a_store_that_cannot_be_written_costs_reuse_not_the_calibration(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, fire_net())
    (tmp_path / "edgeq-out" / "tiny").mkdir(parents=True)
    (tmp_path / "edgeq-out" / "tiny" / ".store").write_text("in the way")  # as a read-only folder would be
    result = calibrate(recipe_module.load(path), targets.resolve(ORIN), progress=False)
    assert result.report.accuracy.passed and any("calibration store" in note for note in result.report.notes)
    assert not calibrate(recipe_module.load(path), targets.resolve("local"), progress=False).report.statistics_reused


def test_the_store_keeps_the_most_recently_used_entries(tmp_path: Path) -> None:
    from edgeq.calibrate.store import ENTRY, KEEP, Store

    path = write_recipe(tmp_path, fire_net())
    first = calibrate(recipe_module.load(path), targets.resolve(ORIN), progress=False)
    folder = tmp_path / "edgeq-out" / "tiny" / ".store"
    measured = Store(folder, first.report.statistics_key).load()
    assert measured is not None
    for index in range(KEEP - 1):  # with the first calibration's, KEEP entries
        Store(folder, f"entry-{index}").save(measured)
        os.utime(folder / f"entry-{index}" / ENTRY, (1000 + index, 1000 + index))  # made in this order, long ago
    assert Store(folder, "entry-0").load() is not None  # used now: the most recent
    Store(folder, "entry-new").save(measured)
    kept = {p.name for p in folder.iterdir()} - {"validation"}  # the validation sets are pruned on their own
    assert len(kept) == KEEP and "entry-1" not in kept  # the least recently used went
    assert {"entry-0", "entry-new", first.report.statistics_key} <= kept


def test_fp32_validation_is_reused_only_for_the_same_validation_data_and_only_when_intact(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, fire_net())
    first = calibrate(recipe_module.load(path), targets.resolve(ORIN), progress=False)
    (stored,) = (tmp_path / "edgeq-out" / "tiny" / ".store" / "validation").glob("*/reference.npz")
    stored.write_bytes(stored.read_bytes()[:-7] + b"damaged")
    damaged = calibrate(recipe_module.load(path), targets.resolve("local"), progress=False)
    assert damaged.report.statistics_reused and not damaged.report.validation_reused  # run again, not trusted
    assert calibrate(recipe_module.load(path), targets.resolve("agx-xavier-jp5.1"), progress=False).report.validation_reused

    with np.load(tmp_path / "val.npz") as val:  # one validation sample fewer: other FP32 outputs, validation.npz
        np.savez(tmp_path / "val.npz", x=val["x"][1:], labels=val["labels"][1:])
    fewer = calibrate(recipe_module.load(path), targets.resolve(ORIN), method="minmax", progress=False)
    assert fewer.report.statistics_reused and not fewer.report.validation_reused
    assert fewer.report.accuracy.samples == first.report.accuracy.samples - 1


def test_the_store_keeps_its_most_recently_used_validation_sets() -> None:
    import tempfile

    import numpy as np

    from edgeq.calibrate.store import KEEP, Store, Validated

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        store = Store(folder, "entry")  # no entry needed: validation sets belong to the store
        npz = folder / "validation.npz"
        npz.write_bytes(b"npz")
        for index in range(KEEP + 2):
            store.save_validation(f"key-{index:02d}", Validated({"y": np.full(3, index, np.float32)}, npz, 8, {"y": 0}))
            made = folder / "validation" / f"key-{index:02d}" / "validation.json"
            os.utime(made, (1000 + index, 1000 + index))  # used in this order
        kept = sorted(p.name for p in (folder / "validation").iterdir())
        assert kept == [f"key-{i:02d}" for i in range(2, KEEP + 2)]
        again = store.validation(f"key-{KEEP + 1:02d}")
        assert again is not None and again.reference["y"].tolist() == [KEEP + 1] * 3 and again.output_axes == {"y": 0}
        assert store.validation("key-00") is None
