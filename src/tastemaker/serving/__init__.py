"""The recommendation service: HTTP API (FastAPI), web page, retrieval index, model loading."""

from tastemaker.serving.app import create_app
from tastemaker.serving.settings import ServeSettings
from tastemaker.serving.state import LoadedModel, load_bundle

__all__ = ["LoadedModel", "ServeSettings", "create_app", "load_bundle"]
