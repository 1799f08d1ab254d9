"""``python -m exporter`` is the same program as ``agent-quality-exporter``."""

from exporter.cli import main

main()
