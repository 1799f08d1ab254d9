"""The aiohttp application: factory, lifecycle, route guards and the small pages."""

from exporter.web.app import create_app, serve
from exporter.web.keys import CONFIG, INTAKE, METRICS, PIPELINE, STATE, AppState

__all__ = ["CONFIG", "INTAKE", "METRICS", "PIPELINE", "STATE", "AppState", "create_app", "serve"]
