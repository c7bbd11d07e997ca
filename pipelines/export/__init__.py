"""Export a bundle for runtimes without PyTorch: ``ssm-signal export --model M --format onnx --out DIR``.

- ``graphs``: the frame step as an ONNX graph (torch's exporter), and the chunk graph around it;
- ``quantize``: the int8 graphs (onnxruntime's quantization);
- ``job``: the export itself: graphs, checks against the torch model, the sidecar.

The runtime that runs the result is ``ssm_signal.runtime`` (numpy and onnxruntime only). Needs
``onnx`` and ``onnxscript`` (the ``export`` extra); docs/export.md says more.
"""

from pipelines.export.job import FORMATS, ExportError, export_onnx, open_export

__all__ = ["FORMATS", "ExportError", "export_onnx", "open_export"]
