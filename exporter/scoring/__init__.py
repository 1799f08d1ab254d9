"""Scorers: the built-in deterministic checks, user plugins, and the registry that builds them.

Built-ins, the LLM judge among them, are ordinary implementations of ``exporter.types.Scorer``,
exactly as a plugin would be; ``register_scorer_type`` adds a type. ``build_scoring`` builds
what the pipeline runs: the scorers and the second-tier confirmers.
"""

from exporter.scoring._options import ScorerOptions, is_set
from exporter.scoring._registry import (
    ScorerFactory,
    build_scorers,
    build_scoring,
    register_scorer_type,
    scorer_types,
)

__all__ = [
    "ScorerFactory",
    "ScorerOptions",
    "build_scorers",
    "build_scoring",
    "is_set",
    "register_scorer_type",
    "scorer_types",
]
