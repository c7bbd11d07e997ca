"""LightningDataModules over the readers in ``ssm_signal.data``.

Every datamodule yields batches ``(x, y, lengths)``: x (B, L, channels) float32 raw signal
padded at the end with zeros, y (B,) class indices (or (B, L) per-step labels), lengths
(B,) valid samples; a training loader of cached features (``use_feature_cache``, the task's ``cached_views``)
yields features (B, F, D) and (B,) valid frames instead. It exposes ``labels``, ``sample_rate``, ``channels`` and
``normalization_signals()`` (training signals for fitting the frontend's statistics).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, DataLoader, Dataset, RandomSampler, Subset

from pipelines.mining import HardNegatives
from ssm_signal.data.channel import ChannelConfig
from ssm_signal.data.custom_keywords import default_root, generate_custom_set
from ssm_signal.data.keywords import KeywordSetConfig, generate_keyword_set
from ssm_signal.data.phrases import folder_of, parse_phrases, set_name

log = logging.getLogger("ssm_signal.pipelines")


IGNORE = -100  # padding value of per-step labels (ignored by the losses)


def pad_batch(items: list[tuple[Tensor, int | Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
    """[(signal (L,) or (L, C), label or per-step labels (L,))] -> x (B, Lmax, C), y, lengths (B,).

    y is (B,) for clip labels, (B, Lmax) padded with IGNORE for per-step labels.
    """
    sigs = [s if s.dim() == 2 else s[:, None] for s, _ in items]
    lengths = torch.tensor([s.shape[0] for s in sigs])
    x = torch.zeros(len(sigs), int(lengths.max()), sigs[0].shape[1])
    for i, s in enumerate(sigs):
        x[i, : s.shape[0]] = s
    labels = [label for _, label in items]
    if isinstance(labels[0], Tensor) and labels[0].dim() == 1:
        y = torch.full((len(sigs), x.shape[1]), IGNORE, dtype=torch.long)
        for i, lab in enumerate(labels):
            y[i, : lab.shape[0]] = lab
    else:
        y = torch.as_tensor([int(label) for label in labels])
    return x, y, lengths


def clip_frames(lengths: Tensor, samples_per_frame: int) -> Tensor:
    """(B,) valid samples -> (B,) frames a clip is scored over: whole frames, at least one (a clip shorter than a
    frame is read at its first frame, which the padding completes)."""
    return torch.div(lengths, samples_per_frame, rounding_mode="floor").clamp(min=1)


class _Augmented(Dataset):
    """Applies a waveform augmentation to a dataset's signals (training split only)."""

    def __init__(self, base: Dataset, augment):
        self.base, self.augment = base, augment

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return self.augment(x), y


class _Clips(Dataset):
    """Signals in memory, all of one class (the mined hard negatives)."""

    def __init__(self, clips: list[Tensor], label: int):
        self.clips, self.label = clips, label

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i):
        return self.clips[i], self.label


class _Base(L.LightningDataModule):
    def __init__(self, batch_size: int, num_workers: int, normalization_items: int):
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.normalization_items = normalization_items
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.labels: list[str] = []
        self._cache: tuple | None = None  # (frontend, views, samples_per_frame) of use_feature_cache
        self._cached: Dataset | None = None

    def use_feature_cache(self, frontend, views: int, samples_per_frame: int) -> None:
        """Train on ``frontend``'s features of ``views`` augmented passes over the training set, computed at the
        first training loader (:mod:`pipelines.feature_cache`); batches are then (features (B, F, D), y, frames (B,)).
        """
        from pipelines.feature_cache import check_frozen

        check_frozen(frontend)
        self._cache, self._cached = (frontend, views, samples_per_frame), None

    def _loader(self, ds: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          collate_fn=pad_batch, persistent_workers=self.num_workers > 0, drop_last=False)

    def train_dataloader(self):
        if self._cache is not None:
            return self._feature_loader()
        return self._loader(self.train_set, True)

    def _feature_loader(self) -> DataLoader:
        from pipelines.feature_cache import FeatureViews, ViewSampler, encode_views

        frontend, views, spf = self._cache
        if self._cached is None:
            self._cached = FeatureViews(encode_views(self.train_set, frontend, views, spf, batch_size=self.batch_size,
                                                     num_workers=self.num_workers))
        n = self._cached.n
        # the features are in memory: loader workers would only copy them
        return DataLoader(self._cached, batch_size=self.batch_size, sampler=ViewSampler(n, views, getattr(self, "seed", 0)),
                          collate_fn=pad_batch, num_workers=0, drop_last=False)

    def val_dataloader(self):
        return self._loader(self.val_set, False)

    def test_dataloader(self):
        return self._loader(self.test_set, False)

    def normalization_signals(self) -> Iterator[Tensor]:
        """Un-augmented training signals, one at a time as (1, L, C) batches, for the frontend statistics.

        Three-dimensional on purpose: the frontends read a 2-D tensor differently (log-mel as
        (B, L) mono audio, the sensor frontend as one (L, C) stream).
        """
        ds = self._plain_train()
        g = torch.Generator().manual_seed(0)
        # device="cpu" explicitly: Lightning calls configure_model (our caller) under a
        # torch.device("cuda") default-device context on GPU runs
        idx = torch.randperm(len(ds), generator=g, device="cpu")[: self.normalization_items]
        for i in idx.tolist():
            x, _ = ds[i]
            yield (x if x.dim() == 2 else x[:, None])[None]

    def _plain_train(self) -> Dataset:
        ds = self.train_set
        return ds.base if isinstance(ds, _Augmented) else ds


class KeywordDataModule(_Base):
    """Speech Commands layout: the generated default keyword set, or a real Speech Commands v2.

    Args:
        root: dataset folder (label folders, validation_list.txt, testing_list.txt, _background_noise_);
            None: ``data/keywords``, or with ``words`` ``data/keywords_<words joined>``.
        setup: "default" (20 core words + _silence_ + _unknown_), "12" or "35" (Speech Commands setups).
        words: custom keywords instead of the setup's: phrases (``[hey nova, lights on]``) or one string of
            comma-separated phrases. The labels are the phrases, then _silence_ and _unknown_; with
            ``generate`` the set is generated from the text (:mod:`ssm_signal.data.custom_keywords`: the
            default set's speakers, ``keyword_set``'s if given, with everyday words as _unknown_).
        generate: generate the embedded keyword set with espeak-ng into ``root`` if it is absent.
        seed: generation seed (the set is cached and deterministic for a seed).
        keyword_set: what to generate (engines, speakers, ``holdout_engine``...); None: the default set.
        augment: noise mixing, gain and time shift on training clips.
        channel: with ``augment``, acoustic-channel augmentation too (room, microphone, band, codec; see
            :class:`ssm_signal.data.channel.ChannelConfig`); None: off.
        check: how files are checked when the index is built: "header" (cheap: corrupt, unsupported and
            empty files), "full" (decode every file: also NaN/Inf samples and truncated data; slower) or
            "none". Whatever it is, a file that fails to read during training is a counted skip.
        hard_negatives: mine hard negatives from the set's mining pool during training
            (:class:`pipelines.mining.HardNegatives`; needs ``trainer.reload_dataloaders_every_n_epochs: 1``);
            None: off.
        batch_size, num_workers, normalization_items: loader settings; clips used to fit the frontend.
    """

    sample_rate = 16000
    channels = 1

    def __init__(self, root: str | None = None, setup: str = "default", generate: bool = True, seed: int = 0,
                 keyword_set: KeywordSetConfig | None = None, augment: bool = True, channel: ChannelConfig | None = None,
                 check: str = "header", batch_size: int = 64, num_workers: int = 2, normalization_items: int = 500,
                 words: str | list[str] | None = None, hard_negatives: HardNegatives | None = None):
        super().__init__(batch_size, num_workers, normalization_items)
        self.hard_negatives = hard_negatives
        self._mined: list[Tensor] = []
        self._augment = None
        # the phrases are checked here, so a bad word list fails when the config is read, not after set-up
        self.words = parse_phrases(words) if words is not None else None
        #: a name for what this data trains (the bundle's, unless the config names one)
        self.bundle_name = f"kws_{set_name(self.words)}" if self.words else None
        if root is None:
            root = default_root(self.words) if self.words else "data/keywords"
        self.root, self.setup_name, self.generate, self.seed, self.augment = Path(root), setup, generate, seed, augment
        self.keyword_set, self.channel, self.check = keyword_set, channel, check

    def prepare_data(self) -> None:
        if self.generate and self.words:
            generate_custom_set(self.words, self.root, seed=self.seed, base=self.keyword_set)
        elif self.generate:
            generate_keyword_set(self.root, seed=self.seed, config=self.keyword_set)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from ssm_signal.data.speech_commands import SpeechCommands

        folders = [folder_of(w) for w in self.words] if self.words else None
        sets = {s: SpeechCommands(self.root, subset=s, setup=self.setup_name, words=folders, check=self.check)
                for s in ("training", "validation", "testing")}
        # a phrase's label is the phrase ("hey nova"), not its folder ("hey_nova")
        self.labels = list(self.words or ()) + list(sets["training"].labels)[len(folders or ()):]
        for name, ds in sets.items():
            if len(ds.skipped):
                log.warning("%s: %s", name, ds.skipped.summary())
        train: Dataset = sets["training"]
        if self.augment:
            from ssm_signal.data.augment import WaveAugment

            self._augment = WaveAugment.for_dataset(self.root, seed=self.seed, channel=self.channel)
            train = _Augmented(train, self._augment)
        self.train_set, self.val_set, self.test_set = train, sets["validation"], sets["testing"]

    # -- hard-negative mining (pipelines/mining.py) --------------------------------------------------------
    def pool_files(self) -> list[Path]:
        """The mining pool: whole sentences of the training speakers (empty if the set has none)."""
        from ssm_signal.data.training_speech import POOL_DIR

        return sorted((self.root / POOL_DIR).glob("*.wav"))

    def use_feature_cache(self, frontend, views: int, samples_per_frame: int) -> None:
        if self.hard_negatives is not None:
            raise ValueError("model.cached_views and data.hard_negatives cannot be combined: the mined clips change "
                             "every round, the cached features do not")
        super().use_feature_cache(frontend, views, samples_per_frame)

    def set_hard_negatives(self, clips: list[Tensor]) -> None:
        """Mined windows [(L,)], ``_unknown_`` from the next training loader on (replacing earlier ones)."""
        self._mined = list(clips)

    def train_dataloader(self):
        if not self._mined:
            return super().train_dataloader()
        from ssm_signal.data.speech_commands import UNKNOWN

        mined: Dataset = _Clips(self._mined, self.labels.index(UNKNOWN))
        if self._augment is not None:
            mined = _Augmented(mined, self._augment)
        union = ConcatDataset([self.train_set, mined])
        # as many clips an epoch as without mining: the schedule's step count and the epoch's time hold
        sampler = RandomSampler(union, num_samples=len(self.train_set))
        return DataLoader(union, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                          collate_fn=pad_batch, persistent_workers=self.num_workers > 0, drop_last=False)


class UEADataModule(_Base):
    """A UEA/UCR archive problem (``<root>/<name>/<name>_TRAIN.ts`` and ``_TEST.ts``).

    The archive has no validation split; with ``val_fraction`` 0 the test split is used
    for the validation curves only (no checkpoint or early-stopping decision reads it).

    Args:
        root: archive folder (``python benchmarks/fetch_uea.py`` fills data/uea).
        name: problem name, e.g. BasicMotions, JapaneseVowels.
        val_fraction: hold out this fraction of the training set for validation instead.
        batch_size, num_workers, normalization_items: loader settings.
    """

    sample_rate = 1

    def __init__(self, root: str = "data/uea", name: str = "BasicMotions", val_fraction: float = 0.0,
                 batch_size: int = 16, num_workers: int = 0, normalization_items: int = 10_000, seed: int = 0):
        super().__init__(batch_size, num_workers, normalization_items)
        self.root, self.name, self.val_fraction, self.seed = root, name, val_fraction, seed
        self.channels = 0

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from ssm_signal.data.uea import UEADataset

        train = UEADataset(self.name, split="train", root=self.root)
        test = UEADataset(self.name, split="test", root=self.root)
        self.labels = list(train.class_labels)
        self.channels = train.num_channels
        if self.val_fraction > 0:
            g = torch.Generator().manual_seed(self.seed)
            perm = torch.randperm(len(train), generator=g, device="cpu").tolist()
            n_val = max(1, int(round(self.val_fraction * len(train))))
            self.train_set, self.val_set = Subset(train, perm[n_val:]), Subset(train, perm[:n_val])
        else:
            self.train_set, self.val_set = train, test
        self.test_set = test


class SensorAnomalyDataModule(_Base):
    """Sensor tables with per-row anomaly labels (0 normal, 1 anomaly) and a ``split`` column.

    The forecaster trains on the normal ``train`` series only, in windows of ``window``
    steps; ``val`` series (validation curves; recipes and thresholds are chosen on them) and
    ``test`` series are scored whole. A table without ``val`` series validates on ``test``, for
    the curves only.

    Args:
        path: CSV/Parquet table (series_id, split, time, channel columns, label[, kind]).
        generate: write the table to ``path`` if it is absent: the generated demo table, or with
            ``stream`` a real recording's (:mod:`ssm_signal.data.anomaly_streams`, fetched once).
        stream: a real anomaly stream by name (``ucr135``, ``daphnet``) instead of the generated table.
        window: training window length in samples.
        batch_size, num_workers, normalization_items: loader settings.
    """

    def __init__(self, path: str = "data/sensor_anomaly/table.parquet", generate: bool = True, window: int = 256,
                 batch_size: int = 16, num_workers: int = 0, normalization_items: int = 1000, seed: int = 0,
                 stream: str | None = None):
        super().__init__(batch_size, num_workers, normalization_items)
        self.sample_rate = 1  # a table's rows are time steps, unless the stream has a physical rate
        if stream is not None:
            from ssm_signal.data.anomaly_streams import STREAMS

            if stream not in STREAMS:
                raise ValueError(f"data.stream must be one of {sorted(STREAMS)}, got {stream!r}")
            self.sample_rate = STREAMS[stream].sample_rate
        self.path, self.generate, self.window, self.seed, self.stream = Path(path), generate, window, seed, stream
        self.labels = ["normal", "anomaly"]
        self.channels = 0

    def prepare_data(self) -> None:
        if not self.generate or self.path.exists():
            return
        if self.stream is not None:
            from ssm_signal.data.anomaly_streams import make_stream_table

            make_stream_table(self.stream, self.path)
        else:
            from ssm_signal.data.synthetic_sensors import make_sensor_anomaly_table

            make_sensor_anomaly_table(self.path, seed=self.seed)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from ssm_signal.data.sensor_tables import SensorTable, channel_columns, read_table

        table = read_table(self.path)
        if "split" not in table.columns:
            raise ValueError(f"{self.path}: needs a 'split' column (train/test) to separate normal training series")
        channels = channel_columns(table, str(self.path))
        self.channels = len(channels)
        kw = dict(channels=channels, row_label_col="label", classes=[0, 1])
        train = table[table["split"] == "train"]
        if (train["label"] != 0).any():
            raise ValueError(f"{self.path}: training series must be normal (label 0) for anomaly detection")
        self.train_set = SensorTable(train, window=self.window, stride=self.window // 2, **kw)
        self.normal_set = SensorTable(train, **kw)
        self.test_set = SensorTable(table[~table["split"].isin(["train", "val"])], **kw)
        has_val = (table["split"] == "val").any()
        self.val_set = SensorTable(table[table["split"] == "val"], **kw) if has_val else self.test_set

    def normal_series(self) -> list[torch.Tensor]:
        """The normal training series, each whole (L_i, C): the anomaly head's memory is fitted on them."""
        self.setup("fit")
        return [self.normal_set[i][0] for i in range(len(self.normal_set))]
