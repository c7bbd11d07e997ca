"""``ssm-signal score --runtime onnx``: the bundle's ONNX export scores the files through the same job
(batches and long files in blocks) with the torch model's results; its rows are told apart from torch's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.errors import UsageError
from pipelines.export import export_onnx
from pipelines.score import ScoreConfig, score
from pipelines.score import long_files as score_long
from ssm_signal import load_bundle, save_bundle
from tests.pipelines.test_score import make_files
from tests.test_bundle import small_model


@pytest.fixture(scope="module")
def exported_bundle(tmp_path_factory):
    """A small keyword bundle (8 kHz, Mamba-2 and S4D) with its export in the bundle's onnx/."""
    root = tmp_path_factory.mktemp("onnx_score")
    path = save_bundle(small_model(), root / "bundle", name="tiny", version="3")
    export_onnx(path, path / "onnx")
    return path


def run(bundle, data, out, **kw):
    return score(ScoreConfig(model=str(bundle), input=str(data), output=str(out), num_workers=0, accelerator="cpu",
                             mlflow=False, frames=True, **kw))


def test_onnx_rows_equal_torch_rows_batches_and_blocks(tmp_path, exported_bundle, monkeypatch):
    data = tmp_path / "data"
    make_files(data, 6, seconds=1.3)
    monkeypatch.setattr(score_long, "BLOCK_SECONDS", 0.37)
    torch_s = run(exported_bundle, data, tmp_path / "torch.parquet")
    onnx_s = run(exported_bundle, data, tmp_path / "onnx.parquet", runtime="onnx")
    blocks_s = run(exported_bundle, data, tmp_path / "blocks.parquet", runtime="onnx", long_bytes=1)
    assert torch_s["ok"] == onnx_s["ok"] == blocks_s["ok"] == 6
    assert (torch_s["runtime"], onnx_s["runtime"]) == ("torch", "onnx float32")
    ref = pd.read_parquet(tmp_path / "torch.parquet").set_index("path")
    labels = load_bundle(exported_bundle).labels
    f_ref = pd.read_parquet(tmp_path / "torch_frames")
    for name in ("onnx", "blocks"):
        got = pd.read_parquet(tmp_path / f"{name}.parquet").set_index("path")
        assert (got["label"] == ref["label"]).all()
        assert np.abs(np.stack(got["scores"]) - np.stack(ref.loc[got.index, "scores"])).max() <= 1e-4
        f_got = pd.read_parquet(tmp_path / f"{name}_frames")
        for p in got.index:
            a = f_ref[f_ref["path"] == p][labels].to_numpy()
            b = f_got[f_got["path"] == p][labels].to_numpy()
            assert a.shape == b.shape and a.shape[0] > 30 and np.abs(a - b).max() <= 1e-4
        assert set(got["fingerprint"]) == {ref["fingerprint"].iloc[0] + "+onnx-float32"}


def test_int8_and_the_refusals(tmp_path, exported_bundle):
    data = tmp_path / "data"
    make_files(data, 3)
    s = run(exported_bundle, data, tmp_path / "int8.parquet", runtime="onnx", precision="int8")
    assert s["ok"] == 3 and s["runtime"] == "onnx int8"
    # rows of another runtime are never mixed into one output
    with pytest.raises(UsageError, match="rows of another model"):
        run(exported_bundle, data, tmp_path / "int8.parquet")
    plain = save_bundle(small_model(), tmp_path / "plain", name="plain", version="1")
    with pytest.raises(UsageError, match="holds no exported model"):
        run(plain, data, tmp_path / "x.parquet", runtime="onnx")
    with pytest.raises(UsageError, match="exported from another model"):
        run(plain, data, tmp_path / "y.parquet", runtime="onnx", onnx=str(exported_bundle / "onnx"))
    with pytest.raises(UsageError, match="options of --runtime onnx"):
        run(exported_bundle, data, tmp_path / "z.parquet", precision="int8")
