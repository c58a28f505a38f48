"""Errors that end a command, each with the exit code the README documents."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of every edgeq command."""

    OK = 0
    GATE_FAILED = 1  # a check or a pass/fail gate failed
    BAD_INPUT = 2  # bad input or usage
    DEVICE = 3  # device or remote failure
    INTERNAL = 4  # an unexpected error inside edgeq (a bug): please report it


class EdgeqError(Exception):
    """An error the user can act on: one clear message, one exit code."""

    exit_code: ExitCode = ExitCode.BAD_INPUT

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(EdgeqError):
    """Bad input: a malformed recipe, a missing file, a wrong tensor shape, corrupt ONNX."""

    exit_code = ExitCode.BAD_INPUT


class GateError(EdgeqError):
    """A check or a pass/fail gate failed."""

    exit_code = ExitCode.GATE_FAILED


class DeviceError(EdgeqError):
    """A device could not be reached, or a remote step failed."""

    exit_code = ExitCode.DEVICE

    def __init__(self, host: str, message: str) -> None:
        super().__init__(f"{host}: {message}")
        self.host = host
