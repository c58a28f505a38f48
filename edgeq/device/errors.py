"""The one error type of the device agent: a message plus a machine-readable kind."""


class AgentError(Exception):
    """A failure the agent reports as ``{"error": message, "kind": kind}`` with a non-zero exit."""

    USAGE = "usage"
    NOT_FOUND = "not_found"
    INVALID_INPUT = "invalid_input"
    UNSUPPORTED = "unsupported"
    CONFLICT = "conflict"
    BUILD_FAILED = "build_failed"
    RUN_FAILED = "run_failed"

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
