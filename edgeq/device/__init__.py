"""Runs ON the device: probe, build, evaluate, bench, smoke. Standard library + numpy + the backend only; Python 3.8+."""
