"""Exception types shared by every part of modelfleet.

Every error a user can cause carries a message that says what was wrong and where; callers
(CLI, Ansible modules, the server) print ``str(error)`` without adding a traceback.
"""

from __future__ import annotations


class ModelfleetError(Exception):
    """Base class of the errors modelfleet reports to users."""


class SpecError(ModelfleetError):
    """The model spec is malformed; ``problems`` lists each path-qualified complaint."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        listed = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid model spec {source}:\n{listed}")


class ConversionError(ModelfleetError):
    """The source model could not be turned into an ONNX graph."""


class ValidationError(ModelfleetError):
    """The ONNX graph failed a check (checker, shape inference, signature, parity)."""

    def __init__(self, stage: str, message: str) -> None:
        self.stage = stage
        super().__init__(f"{stage}: {message}")


class ArtifactError(ModelfleetError):
    """An artifact directory is missing, corrupted, or conflicts with what is being built."""


class UsageError(ModelfleetError):
    """A command-line setting that cannot be used (exit status 2, like argparse's own usage errors)."""
