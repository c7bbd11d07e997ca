"""A scoring job's settings (``ssm-signal score``'s options), checked when made."""

from __future__ import annotations

import dataclasses

from pipelines.errors import UsageError
from pipelines.score.long_files import LONG_BYTES
from pipelines.score.runtime import RUNTIMES


@dataclasses.dataclass
class ScoreConfig:
    model: str
    input: str
    output: str
    frames: bool = False
    batch_size: int = 16
    num_workers: int = 2
    accelerator: str = "auto"
    devices: str | int = 1
    strategy: str = "auto"
    fail_on_error: bool = False
    mlflow: bool = True
    log_output: bool = False
    ring: bool | None = None  # batches through a BatchRing: None = on a GPU, for jobs large enough (make_ring)
    ring_bytes: int = 4 << 30  # at most this much page-locked host memory for the ring
    direct_wav: bool = True  # PCM16 WAV read by one os.read and a header walk (False: soundfile)
    part_rows: int = 16384  # rows per Parquet part (several batches; 1: a part per batch)
    cuda_graphs: bool = True  # on a GPU, the forward replayed as CUDA graphs (BatchGraphs); False: eager
    long_bytes: int = LONG_BYTES  # audio decoding to more than this is read in blocks (pipelines.score.long_files)
    runtime: str = "torch"  # "onnx": the bundle's ONNX export in onnxruntime, on the CPU (pipelines.score.runtime)
    onnx: str | None = None  # the export's folder (default: the bundle directory's onnx/); --runtime onnx only
    precision: str = "float32"  # "int8": the export's quantized graphs; --runtime onnx only

    def __post_init__(self):
        for name, least in (("batch_size", 1), ("num_workers", 0), ("part_rows", 1), ("ring_bytes", 0),
                            ("long_bytes", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise UsageError(f"--{name.replace('_', '-')} must be an integer >= {least}, got {value!r}")
        if self.runtime not in RUNTIMES:
            raise UsageError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        if self.precision not in ("float32", "int8"):
            raise UsageError(f"--precision must be float32 or int8, got {self.precision!r}")
