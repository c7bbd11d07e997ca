"""Issue 17, point 12: a NaN sample in one training file (which the header check cannot see) is a
counted skip during training, never an exception mid-epoch; the data module exposes the full check."""

from __future__ import annotations

import numpy as np
import soundfile as sf

from pipelines.data import KeywordDataModule
from ssm_signal.data.speech_commands import COMMAND_WORDS, SpeechCommands
from tests.data.test_speech_commands import SR, make_tree


def _tree_with_nan(tmp_path):
    root = make_tree(tmp_path / "sc", COMMAND_WORDS, per_speaker=2)
    bad = root / "yes" / "aa000001_nohash_1.wav"
    x = np.full(SR // 4, 0.1, np.float32)
    x[100] = np.nan
    sf.write(bad, x, SR, subtype="FLOAT")
    return root, bad


def test_nan_file_is_a_counted_skip_replaced_by_its_class(tmp_path):
    root, bad = _tree_with_nan(tmp_path)
    ds = SpeechCommands(root, "training", setup="12", silence_count=0)
    assert bad in ds.paths and len(ds.skipped) == 0  # the header is fine
    i = ds.paths.index(bad)
    items = [ds[k] for k in range(len(ds))]  # a whole epoch: no exception
    assert ds.skipped.counts() == {"NaN": 1} and ds.skipped.items[0][0] == str(bad)
    assert items[i][1] == ds.targets[i] and np.isfinite(items[i][0].numpy()).all()
    ds[i]
    assert len(ds.skipped) == 1  # counted once, however often it is drawn


def test_data_module_full_check_rejects_it_up_front(tmp_path):
    root, bad = _tree_with_nan(tmp_path)
    dm = KeywordDataModule(root=str(root), setup="12", generate=False, augment=False, check="full", batch_size=8,
                           num_workers=0)
    dm.setup("fit")
    assert bad not in dm.train_set.paths and dm.train_set.skipped.counts().get("NaN") == 1
    dm = KeywordDataModule(root=str(root), setup="12", generate=False, augment=False, batch_size=8, num_workers=0)
    dm.setup("fit")
    batches = list(dm.train_dataloader())  # header check only: the epoch still completes
    assert sum(len(b[1]) for b in batches) == len(dm.train_set) and all(np.isfinite(b[0].numpy()).all()
                                                                       for b in batches)
