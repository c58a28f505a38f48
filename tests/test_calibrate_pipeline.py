"""`edgeq calibrate` end to end on small models: artifacts, reuse, budget, bad data, the example recipe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from edgeq import recipe as recipe_module
from edgeq import targets
from edgeq.calibrate import calibrate
from edgeq.calibrate.activations import activation_tensors
from edgeq.calibrate.cache import parse_cache
from edgeq.calibrate.report import CalibrationReport, CalibrationResult, MethodChoice, PreparationStep
from edgeq.device.hashing import sha256_file
from edgeq.device.report import Int8Arithmetic, KernelCheck
from edgeq.errors import InputError
from tests.calibrate_nets import capped_fire_net, fire_net, images, residual_net, write_recipe
from tests.cli import run_edgeq

ORIN = "agx-orin-jp6.2"  # TensorRT 10.3.0
EXAMPLE = Path(__file__).resolve().parent.parent / "recipes" / "squeezenet-digits"


def test_artifacts_cache_manifest_and_report(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, fire_net())
    result = calibrate(recipe_module.load(path), targets.resolve(ORIN), sensitivity=True, progress=False)
    folder = tmp_path / "edgeq-out" / "tiny" / ORIN
    assert result.folder == folder and not result.reused
    names = {"model.fp32.onnx", "model.qdq.onnx", "calibration.cache", "ranges.json", "validation.npz", "report.json", "manifest.json"}
    assert {p.name for p in folder.iterdir()} == names

    fp32 = onnx.load(folder / "model.fp32.onnx")
    cache = parse_cache((folder / "calibration.cache").read_text())
    assert cache.header == "TRT-100300-EntropyCalibration2"
    assert list(cache.scales) == activation_tensors(fp32)  # every activation, named as in model.fp32.onnx
    ranges = json.loads((folder / "ranges.json").read_text())["tensors"]
    for name, scale in cache.scales.items():
        assert scale == pytest.approx(ranges[name]["amax"] / 127, rel=1e-6)

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["key"] == result.report.key and manifest["tensorrt"] == "10.3.0"
    assert manifest["tensorrt_header_version"] == 100300
    listed = {a["name"]: a for a in manifest["artifacts"]}
    assert set(listed) == names - {"manifest.json"}
    for name, entry in listed.items():
        assert entry["sha256"] == sha256_file(folder / name) and entry["size"] == (folder / name).stat().st_size

    validation = np.load(folder / "validation.npz")
    assert validation["data"].shape == (48, 3, 32, 32) and validation["labels"].shape == (48,)
    report = json.loads((folder / "report.json").read_text())
    assert report["method"] == "auto" and report["range_choice"]["method"] == "entropy" and report["accuracy"]["fp32"] == 100.0
    assert report["range_choice"]["trials"] == {"entropy": report["accuracy"]["int8"]}  # entropy lost nothing: no other tried
    assert all(entry["method"] in ("entropy", "minmax") and entry["why"] for entry in ranges.values())
    acc = result.report.accuracy
    assert acc.passed and acc.drop == pytest.approx(acc.fp32 - acc.int8) and acc.drop <= 5.0
    assert 0.99 < acc.cosine[fp32.graph.output[0].name] <= 1.0
    scores_sorted = [s.score for s in result.report.sensitivity]
    assert len(scores_sorted) == 5 and scores_sorted == sorted(scores_sorted, reverse=True)
    dumped = result.model_dump(mode="json")
    assert dumped["report"]["accuracy"]["metric"] == "top1" and dumped["passed"] and dumped["artifacts"]["cache"] == str(result.artifacts.cache)
    # round trip: report.json and the result's JSON read back to what calibrate returned, nested models included
    written = CalibrationReport.model_validate_json((folder / "report.json").read_text())
    assert written == result.report and isinstance(written.int8_arithmetic, Int8Arithmetic)
    assert isinstance(written.int8_arithmetic.checks[0], KernelCheck) and isinstance(written.range_choice, MethodChoice)
    assert written.preparation and all(isinstance(step, PreparationStep) for step in written.preparation)
    assert CalibrationResult.model_validate_json(json.dumps(dumped)) == result


def test_unchanged_rerun_reuses_and_a_change_recomputes(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, fire_net())
    target = targets.resolve(ORIN)
    first = calibrate(recipe_module.load(path), target, progress=False)
    second = calibrate(recipe_module.load(path), target, progress=False)
    assert second.reused and second.report.created == first.report.created and second.report.key == first.report.key
    third = calibrate(recipe_module.load(path), target, method="minmax", progress=False)
    assert not third.reused and third.report.created != first.report.created and third.report.method == "minmax"
    np.savez(tmp_path / "cal.npz", x=np.random.default_rng(9).standard_normal((64, 3, 32, 32)).astype(np.float32))
    fourth = calibrate(recipe_module.load(path), target, method="minmax", progress=False)
    assert not fourth.reused and fourth.report.key != third.report.key


def test_the_int8_arithmetic_picks_the_prediction_kernels_and_is_part_of_the_cache_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_recipe(tmp_path, fire_net())
    runs = {}
    for arithmetic in ("exact", "saturating"):
        monkeypatch.setenv("EDGEQ_INT8_ARITH", arithmetic)
        runs[arithmetic] = calibrate(recipe_module.load(path), targets.resolve(ORIN), progress=False)
        assert not runs[arithmetic].reused
        report = runs[arithmetic].report
        assert report.int8_arithmetic.verdict == report.int8_arithmetic.forced == arithmetic
        saved = json.loads(runs[arithmetic].artifacts.report.read_text())
        assert saved["int8_arithmetic"]["verdict"] == arithmetic and saved["prediction_kernels"] == report.prediction_kernels
    assert "fused u8 x s8" in runs["exact"].report.prediction_kernels
    assert "fused u8 x u8" in runs["saturating"].report.prediction_kernels
    assert calibrate(recipe_module.load(path), targets.resolve(ORIN), progress=False).reused
    monkeypatch.setenv("EDGEQ_INT8_ARITH", "sometimes")
    with pytest.raises(InputError, match="EDGEQ_INT8_ARITH: expected 'exact' or 'saturating'"):
        calibrate(recipe_module.load(path), targets.resolve(ORIN), progress=False)


def test_layers_are_ranked_only_when_asked_or_when_the_budget_fails(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, fire_net())
    target = targets.resolve(ORIN)
    plain = calibrate(recipe_module.load(path), target, progress=False)
    assert plain.report.accuracy.passed and plain.report.sensitivity == [] and "sensitivity" not in plain.report.seconds
    ranked = calibrate(recipe_module.load(path), target, sensitivity=True, progress=False)
    assert not ranked.reused and len(ranked.report.sensitivity) == len(ranked.report.quantized_layers)
    assert ranked.report.accuracy == plain.report.accuracy  # the same prediction, ranking aside


def test_trt11_target_gets_no_cache_and_the_header_follows_the_target(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, residual_net(), size=16)
    trt11 = calibrate(recipe_module.load(path), targets.resolve("agx-orin-jp7.2.2-trt11"), progress=False)
    assert trt11.artifacts.cache is None and not (trt11.folder / "calibration.cache").exists()
    assert (trt11.folder / "model.qdq.onnx").is_file()
    xavier = calibrate(recipe_module.load(path), targets.resolve("agx-xavier-jp5.1"), progress=False)
    assert (xavier.folder / "calibration.cache").read_text().startswith("TRT-8502-EntropyCalibration2\n")


def test_budget_failure_exits_1_suggests_the_fit_without_ranking_and_fit_budget_keeps_layers_in_float(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, capped_fire_net(seed=4), budget={"accuracy_drop": 1.0})
    # One wild pixel in the calibration data: min-max then spends the input's whole INT8 range on it (the ReLU6
    # after the first conv keeps it out of the other ranges: keeping that conv in float repairs it).
    calibration = images(np.random.default_rng(5), 64, 32)
    calibration[0, 0, 0, 0] = 5000.0
    np.savez(tmp_path / "cal.npz", x=calibration)
    result = run_edgeq("calibrate", path, "--target", ORIN, "--method", "minmax", "--json")
    data = json.loads(result.stdout)
    assert not data["report"]["accuracy"]["passed"] and data["report"]["accuracy"]["drop"] > 1.0
    assert data["report"]["sensitivity"] == [] and "sensitivity" not in data["report"]["seconds"]  # nothing ranked unasked
    assert any("--fit-budget widens clipped ranges" in note for note in data["report"]["notes"])
    assert result.code == 1 and "budget" in result.stderr and "--fit-budget" in result.stderr
    assert (tmp_path / "edgeq-out" / "tiny" / ORIN / "manifest.json").is_file()
    fitted = run_edgeq("calibrate", path, "--target", ORIN, "--method", "minmax", "--fit-budget", "--json")
    report = json.loads(fitted.stdout)["report"]
    assert fitted.code == 0 and report["accuracy"]["passed"] and report["kept_high_precision"] and report["fit"]["met"]
    assert report["widened"] == []  # min-max clips nothing: only precision can help here
    assert report["quantized_layers"] and not set(report["quantized_layers"]) & set(report["kept_high_precision"])
    ranking = [s["layer"] for s in report["sensitivity"]]
    assert report["kept_high_precision"] == ranking[: len(report["kept_high_precision"])]
    qdq = onnx.load(tmp_path / "edgeq-out" / "tiny" / ORIN / "model.qdq.onnx")
    kept = set(report["kept_high_precision"])
    assert not any(n.name in kept for n in qdq.graph.node if any(i.endswith("_dequantized") for i in n.input))
    cache = parse_cache((tmp_path / "edgeq-out" / "tiny" / ORIN / "calibration.cache").read_text())
    fp32 = onnx.load(tmp_path / "edgeq-out" / "tiny" / ORIN / "model.fp32.onnx")
    kept_inputs = {n.input[0] for n in fp32.graph.node if n.name in kept}
    assert not kept_inputs & set(cache.scales)



def test_a_layer_kept_in_float_on_onnx_runtime_keeps_its_inputs_in_float(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, fire_net(seed=4), budget={"accuracy_drop": 1.0})
    calibration = images(np.random.default_rng(5), 64, 32)
    calibration[0, 0, 0, 0] = 5000.0  # every range follows the outlier: layers kept in float are what the fit can do
    np.savez(tmp_path / "cal.npz", x=calibration)
    result = run_edgeq("calibrate", path, "--target", "local", "--method", "minmax", "--fit-budget", "--json")
    report = json.loads(result.stdout)["report"]
    kept = set(report["kept_high_precision"])
    assert kept and not report["fit"]["met"] and result.code == 1  # the last layer would make it FP32: not a fit
    qdq = onnx.load(tmp_path / "edgeq-out" / "tiny" / "local" / "model.qdq.onnx")
    fp32 = onnx.load(tmp_path / "edgeq-out" / "tiny" / "local" / "model.fp32.onnx")
    kept_inputs = {i for n in fp32.graph.node if n.name in kept for i in n.input[:1]}
    quantized = {n.input[0] for n in qdq.graph.node if n.op_type == "QuantizeLinear"}
    assert kept_inputs and not kept_inputs & quantized  # ONNX Runtime's Q/DQ between layers left out too

def _images(folder: Path, classes: list[str], size: int = 32, per_class: int = 3) -> None:
    rng = np.random.default_rng(0)
    for name in classes:
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / name / f"{i}.png")


@pytest.mark.parametrize("case", ["shape", "dtype", "empty", "classes"])
def test_bad_calibration_data_exits_2_and_writes_nothing(tmp_path: Path, case: str) -> None:
    path = write_recipe(tmp_path, fire_net())
    if case == "shape":
        np.savez(tmp_path / "cal.npz", x=np.zeros((8, 3, 16, 16), np.float32))
    elif case == "dtype":
        np.savez(tmp_path / "cal.npz", x=np.zeros((8, 3, 32, 32), np.float64))
    elif case == "empty":
        (tmp_path / "empty").mkdir()
        text = path.read_text().replace("path: cal.npz", "path: empty")
        path.write_text(text)
    else:
        _images(tmp_path / "cal_img", ["a", "b"])
        _images(tmp_path / "val_img", ["a", "c"])
        path.write_text(path.read_text().replace("path: cal.npz", "path: cal_img").replace("path: val.npz", "path: val_img"))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = run_edgeq("calibrate", path, "--target", ORIN)
    assert result.code == 2, result.stderr
    assert result.stderr.count("error:") == 1
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_wrong_image_size_fails_during_statistics_and_writes_nothing(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, fire_net())
    _images(tmp_path / "cal_img", ["a", "b"], size=20)
    path.write_text(path.read_text().replace("path: cal.npz", "path: cal_img"))
    with pytest.raises(InputError, match="preprocessed to shape"):
        calibrate(recipe_module.load(path), targets.resolve(ORIN), progress=False)
    assert not (tmp_path / "edgeq-out").exists()


def test_user_metric_file_and_its_errors(tmp_path: Path) -> None:
    (tmp_path / "m.py").write_text("import numpy as np\ndef half(outputs, labels):\n    assert isinstance(outputs, dict)\n    return 50.0\n")
    path = write_recipe(tmp_path, fire_net(), validation={"path": "val.npz", "metric": "m.py:half"})
    result = calibrate(recipe_module.load(path), targets.resolve(ORIN), progress=False)
    assert result.report.accuracy.metric == "m.py:half" and result.report.accuracy.fp32 == 50.0
    for metric, fragment in [("missing.py:f", "not found"), ("m.py:nope", "no function 'nope'")]:
        bad = write_recipe(tmp_path / metric.split(":")[1], fire_net(), validation={"path": "val.npz", "metric": metric})
        (bad.parent / "m.py").write_text((tmp_path / "m.py").read_text())
        with pytest.raises(InputError, match=fragment):
            calibrate(recipe_module.load(bad), targets.resolve(ORIN), progress=False)
        assert not (bad.parent / "edgeq-out").exists()


def test_target_without_int8_is_refused(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, fire_net())
    with pytest.raises(InputError, match="no INT8"):
        calibrate(recipe_module.load(path), targets.resolve("nano-jp4.6"), progress=False)


@pytest.mark.slow
@pytest.mark.skipif(not (EXAMPLE / "model.onnx").is_file() or not (EXAMPLE / "images").is_dir(),
                    reason="the example model is trained by recipes/squeezenet-digits/train.py")
def test_example_recipe_predicts_int8_within_half_a_point(tmp_path: Path, int8_path: str) -> None:
    """On either arithmetic the prediction is the reference Q/DQ arithmetic (every graph optimization off)."""
    import onnxruntime as ort

    from edgeq import metrics
    from edgeq.calibrate import predict
    from edgeq.calibrate.host import host_model
    from edgeq.device.compare import cosine, top1_agreement

    recipe = recipe_module.load(EXAMPLE / "recipe.yaml")
    result = calibrate(recipe, targets.resolve(ORIN), out=tmp_path / "out", progress=False)
    acc = result.report.accuracy
    assert acc.fp32 > 50.0  # a trained model
    assert abs(acc.drop) <= 0.5, acc
    assert result.report.int8_arithmetic.verdict == int8_path
    assert ("u8 x u8" in result.report.prediction_kernels) == (int8_path == "saturating")

    data = np.load(result.artifacts.validation)
    x, labels = data[recipe.inputs[0].name], data["labels"]
    qdq = onnx.load(result.artifacts.qdq_model)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    plain = ort.InferenceSession(qdq.SerializeToString(), options, providers=["CPUExecutionProvider"])
    reference = np.concatenate([plain.run(None, {plain.get_inputs()[0].name: b})[0] for b in predict.slices(x, 32)])
    predicted = next(iter(predict.outputs([host_model(qdq, int8_path)], predict.slices(x, 32))[0].values()))
    assert cosine(reference, predicted) >= 0.9999
    assert top1_agreement(reference, predicted) >= 0.995
    score = metrics.load(recipe, labels)({plain.get_outputs()[0].name: reference}, labels)
    assert abs(acc.int8 - score) <= 0.5  # the predicted INT8 score is the reference's



def test_numeric_class_folders_are_read_in_natural_order_printed_and_reported(tmp_path: Path) -> None:
    classes = ["0", "90", "180", "270"]
    _images(tmp_path / "cal_img", classes)
    _images(tmp_path / "val_img", classes)
    path = write_recipe(tmp_path, fire_net(classes=4))
    path.write_text(path.read_text().replace("path: cal.npz", "path: cal_img").replace("path: val.npz", "path: val_img"))
    result = run_edgeq("calibrate", path, "--target", ORIN)
    assert "classes in label order: 0, 90, 180, 270" in " ".join(result.stdout.split()), result.stdout
    report = json.loads((tmp_path / "edgeq-out" / "tiny" / ORIN / "report.json").read_text())
    assert report["classes"] == classes
    assert np.load(tmp_path / "edgeq-out" / "tiny" / ORIN / "validation.npz")["classes"].tolist() == classes
