"""Example user scorer plugins, loaded by dotted path in tests/test_scorer_plugins.py."""
