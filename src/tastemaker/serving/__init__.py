"""The recommendation service: HTTP API (FastAPI), web page, retrieval index, model loading.

Names are imported on first use, so that ``tastemaker.serving.schemas`` (its limits, for the
command line) comes without FastAPI.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "create_app": "tastemaker.serving.app",
    "ServeSettings": "tastemaker.serving.settings",
    "LoadedModel": "tastemaker.serving.state",
    "load_bundle": "tastemaker.serving.state",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
