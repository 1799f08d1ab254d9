"""Scorers: the built-in deterministic checks, user plugins, and the registry that builds them.

Built-ins are ordinary implementations of ``exporter.types.Scorer``, exactly as a plugin
would be. Another scorer type (the LLM judge) plugs in with ``register_scorer_type``.
"""

from exporter.scoring._options import ScorerOptions, is_set
from exporter.scoring._registry import (
    MeteredScorerFactory,
    ScorerFactory,
    build_scorers,
    register_metered_scorer_type,
    register_scorer_type,
    scorer_types,
)

__all__ = [
    "MeteredScorerFactory",
    "ScorerFactory",
    "ScorerOptions",
    "build_scorers",
    "is_set",
    "register_metered_scorer_type",
    "register_scorer_type",
    "scorer_types",
]
