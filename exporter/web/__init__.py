"""The aiohttp application: factory, lifecycle, route guards and the small pages."""

from exporter.web.app import create_app, serve
from exporter.web.keys import INTAKE, METRICS, PIPELINE, STATE, AppState

__all__ = ["INTAKE", "METRICS", "PIPELINE", "STATE", "AppState", "create_app", "serve"]
