"""Ingest: conversations decoded from JSON, NDJSON or OTLP spans, and the intake they all pass.

The HTTP handlers that feed it are routes of the web layer (``exporter.web.ingest``,
``exporter.web.traces``); nothing here imports ``exporter.web``.
"""
