"""Detection quality on streamed audio and sensor series: ``ssm-signal evaluate`` (see :mod:`.job`).

inputs: positives and negative sources · stream: many streams through the streaming core ·
metrics: hits, misses, false accepts, delay at any thresholds · keywords: the keyword sweep and
calibration · anomaly: event-level precision/recall for anomaly bundles · report: JSON, Parquet, PNG.
"""

from .job import EvaluateConfig, evaluate

__all__ = ["EvaluateConfig", "evaluate"]
