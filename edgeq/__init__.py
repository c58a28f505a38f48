"""edgeq: ONNX to validated TensorRT INT8 engines on NVIDIA Jetson devices."""

__version__ = "0.1.0"
