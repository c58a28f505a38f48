"""GPU-free INT8 calibration on the host: statistics, ranges, TensorRT cache, Q/DQ model, predicted accuracy."""

from edgeq.calibrate.pipeline import calibrate, default_folder
from edgeq.calibrate.report import Artifacts, CalibrationReport, CalibrationResult, LayerSensitivity, PredictedAccuracy

__all__ = [
    "Artifacts",
    "CalibrationReport",
    "CalibrationResult",
    "LayerSensitivity",
    "PredictedAccuracy",
    "calibrate",
    "default_folder",
]
