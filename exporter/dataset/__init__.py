"""The feedback dataset: poorly scored conversations become offline eval cases (issue 7).

``build_sink`` gives the pipeline its writer; ``read_records`` and ``export_cases`` read the
directory back; ``agent-quality-exporter export-dataset`` (``exporter.dataset.cli``) is the
command line on top.
"""

from __future__ import annotations

from exporter._version import __version__
from exporter.config.model import Config
from exporter.dataset.export import ExportFilter, export_cases, to_case, to_inspect
from exporter.dataset.policy import Selection, SelectionPolicy
from exporter.dataset.reader import ReadStats, dataset_files, read_records
from exporter.dataset.record import FORMAT, Provenance, Record
from exporter.dataset.writer import DatasetWriter
from exporter.metrics import Metrics
from exporter.redaction import Redactor

__all__ = [
    "FORMAT",
    "DatasetWriter",
    "ExportFilter",
    "Provenance",
    "ReadStats",
    "Record",
    "Selection",
    "SelectionPolicy",
    "build_sink",
    "dataset_files",
    "export_cases",
    "read_records",
    "to_case",
    "to_inspect",
]


def build_sink(config: Config, *, metrics: Metrics) -> DatasetWriter | None:
    """Return the dataset writer for ``config``, or None when the dataset is disabled.

    The writer's thread starts at once; the pipeline closes it (``aclose``) at shutdown.
    """
    dataset = config.dataset
    if not dataset.enabled:
        return None
    redaction = dataset.redaction
    redactor = (
        Redactor(kinds=redaction.kinds, patterns=redaction.patterns) if redaction.enabled else None
    )
    return DatasetWriter(
        config=dataset,
        policy=SelectionPolicy(selection=dataset.select, dimensions=config.dimensions),
        provenance=Provenance(
            exporter_version=__version__,
            config_digest=config.digest,
            redacted=() if redactor is None else redactor.kinds,
        ),
        metrics=metrics,
        redactor=redactor,
    )
