"""ForenX: explainable image forensics with multimodal LLMs.

The public API is imported lazily so that `import forenx` (and the CLI) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Verdict": "forenx.schema",
    "Quadruple": "forenx.schema",
    "ForensicReport": "forenx.schema",
    "parse_answer": "forenx.schema",
    "render_answer": "forenx.schema",
    "build_messages": "forenx.prompts",
    "load_image": "forenx.images",
    "ForenXConfig": "forenx.modeling",
    "ForenXForConditionalGeneration": "forenx.modeling",
    "ForenXProcessor": "forenx.modeling",
    "build_model": "forenx.modeling",
    "tiny_model": "forenx.modeling",
    "Explainer": "forenx.inference.explainer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'forenx' has no attribute {name!r}")


__all__ = sorted(_LAZY)
