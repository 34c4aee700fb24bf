"""The result as JSON (schema in the README)."""

from __future__ import annotations

import json

from sharescan.result import AnalysisResult

__all__ = ["render_json"]


def render_json(result: AnalysisResult) -> str:
    return json.dumps(result.to_dict(), indent=2) + "\n"
