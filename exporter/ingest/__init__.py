"""Ingest: the HTTP sink, OTLP traces and the intake every conversation goes through."""
