"""Offline batch scoring: files -> Parquet, resumable, constant memory, one or many GPUs.

    ssm-signal score --model artifacts/kws_default --input data/keywords --output scores.parquet [--frames]

The parts, in the order a job uses them (the job itself: :mod:`pipelines.score.job`):

- ``inputs``: listing a directory, glob or manifest; each input's identity; what ``--output`` may overwrite
- ``config``: :class:`ScoreConfig`, the job's settings
- ``readers``: one file: 16-bit PCM at the model's rate as it is, anything else decoded (soundfile)
- ``batching``: DataLoader workers read and pad length-bucketed batches (the ring, in batch_ring)
- ``long_files``: files too long to hold whole, read in blocks with the state carried
- ``predict``: the model over the batches, ``Trainer.predict`` (Lightning, imported only for batches)
- ``rows``: a batch's results -> Parquet rows; the final merge
- ``writer``: rows written as atomic Parquet parts; what a rerun finds already done
- ``summary``: counts, throughput, accuracy; printed and recorded in MLflow

Importing this package does not import Lightning: a job of long files scores without it.
"""

from pipelines.score.config import ScoreConfig
from pipelines.score.job import score

__all__ = ["ScoreConfig", "score"]
