"""Model conversion: framework model → validated, optimized, stamped ONNX artifact."""

from __future__ import annotations

from modelfleet.convert.pipeline import STAGES, BuildResult, build_artifact

__all__ = ["STAGES", "BuildResult", "build_artifact"]
