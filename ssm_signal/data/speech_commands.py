"""Speech Commands v2 (Warden, 2018, arXiv:1804.03209) in its published layout, as a torch Dataset.

Layout read (the user's own download, or the generated set of :mod:`ssm_signal.data.keywords`)::

    <root>/<word>/<speaker>_nohash_<n>.wav      1 s (or shorter), 16 kHz mono
    <root>/validation_list.txt                  relative paths, e.g. right/bb05582b_nohash_3.wav
    <root>/testing_list.txt                     training = every word file in neither list
    <root>/_background_noise_/*.wav             long noise recordings, source of the _silence_ class
    <root>/_unknown_/*.wav                      optional: clips of the _unknown_ class that are no word
                                                (running speech, see ssm_signal.data.training_speech)

Setups (class lists):

- ``"35"``: the 35 words, alphabetical; no silence or unknown class.
- ``"12"``: yes, no, up, down, left, right, on, off, stop, go, ``_silence_``, ``_unknown_`` (all other words).
- ``"default"``: the twenty core words (the ten above and zero..nine), ``_silence_``, ``_unknown_``.

``_silence_`` items are 1-second crops of the background noise files, scaled by a gain uniform in
``silence_gain`` (the original TF recipe also mixes background at a random, mostly low volume); by default
there are as many as the mean class size of the subset (``n_word_items / (num_classes - 1)``), drawn
deterministically from ``seed`` and the subset. ``_unknown_`` holds every other word's files, subsampled
to ``unknown_fraction`` of them (deterministic too).

Bad files never stop training half-way: every file of the subset gets a cheap header check when the
index is built (``check="header"``: corrupt, unsupported and empty files), and the rejects are recorded
in :attr:`SpeechCommands.skipped` and summarised in the log. ``check="full"`` decodes every file up front
(also catching truncated data or NaN samples), at the cost of reading the whole set once.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ssm_signal.data.audio_io import _skip_reason, audio_info, fix_length, read_audio, screen_audio
from ssm_signal.data.augment import crop_or_tile
from ssm_signal.data.skips import DataError, SkipLog

log = logging.getLogger("ssm_signal.data")

COMMAND_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CORE_WORDS = COMMAND_WORDS + DIGIT_WORDS
AUXILIARY_WORDS = (
    "backward", "bed", "bird", "cat", "dog", "follow", "forward", "happy",
    "house", "learn", "marvin", "sheila", "tree", "visual", "wow",
)  # fmt: skip
ALL_WORDS = tuple(sorted(CORE_WORDS + AUXILIARY_WORDS))
SILENCE = "_silence_"
UNKNOWN = "_unknown_"
BACKGROUND_DIR = "_background_noise_"
VALIDATION_LIST = "validation_list.txt"
TESTING_LIST = "testing_list.txt"
SUBSETS = ("training", "validation", "testing")
SETUPS = ("12", "35", "default")
SAMPLE_RATE = 16000


def setup_words(setup: str) -> tuple[tuple[str, ...], bool]:
    """The keyword list of a setup and whether it adds ``_silence_`` and ``_unknown_``."""
    if setup == "35":
        return ALL_WORDS, False
    if setup == "12":
        return COMMAND_WORDS, True
    if setup == "default":
        return CORE_WORDS, True
    raise ValueError(f"setup must be one of {SETUPS}, got {setup!r}")


def speaker_of(path: str | Path) -> str:
    """The speaker id of a ``<speaker>_nohash_<n>.wav`` file name."""
    return Path(path).name.split("_nohash_")[0]


def read_split_list(path: Path) -> set[str]:
    """Relative paths listed in a split file, with '/' separators.

    Raises:
        DataError: the file is missing.
    """
    if not path.is_file():
        raise DataError(f"{path}: split list missing; Speech Commands' layout has {VALIDATION_LIST} and {TESTING_LIST}")
    with open(path, encoding="utf-8") as f:
        return {line.strip().replace("\\", "/") for line in f if line.strip()}


def _subset_rng(seed: int, subset: str, what: str) -> np.random.Generator:
    # Independent streams per subset and purpose, stable across Python runs (no hash() salt).
    digest = hashlib.sha256(f"{seed}/{subset}/{what}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


class SpeechCommands(Dataset):
    """One subset of a Speech Commands tree.

    Args:
        root: the folder holding the word folders and split lists.
        subset: ``"training"``, ``"validation"`` or ``"testing"``.
        setup: ``"12"``, ``"35"`` or ``"default"`` (see the module docstring).
        words: replaces the setup's keyword list (``_silence_``/``_unknown_`` are still added unless
            setup is ``"35"``); for custom trees such as a small generated set.
        sample_rate: output rate in Hz; items are exactly 1 s long.
        silence_count: number of ``_silence_`` items; None = the subset's mean class size.
        silence_gain: (low, high) linear gain applied to each silence crop.
        unknown_fraction: share of the other words' files kept as ``_unknown_`` (0..1).
        seed: for the silence crops and the unknown subsample.
        check: index-time file check: ``"header"``, ``"full"`` or ``"none"``.
        transform: applied to each waveform (e.g. a :class:`~ssm_signal.data.augment.WaveAugment`).
        skips: a shared :class:`SkipLog` to record into (a new one otherwise).

    Items are ``(waveform, label)``: float32 (sample_rate,) zero-padded at the end or cropped to 1 s, and
    the int index of the class in :attr:`labels`.

    Raises:
        DataError: missing root, split list, keyword folder, or (with a silence class) background noise.
    """

    def __init__(
        self,
        root: str | Path,
        subset: str = "training",
        setup: str = "default",
        *,
        words: Sequence[str] | None = None,
        sample_rate: int = SAMPLE_RATE,
        silence_count: int | None = None,
        silence_gain: tuple[float, float] = (0.0, 1.0),
        unknown_fraction: float = 1.0,
        seed: int = 0,
        check: str = "header",
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        skips: SkipLog | None = None,
    ) -> None:
        if subset not in SUBSETS:
            raise ValueError(f"subset must be one of {SUBSETS}, got {subset!r}")
        if not 0.0 <= unknown_fraction <= 1.0:
            raise ValueError(f"unknown_fraction must lie in [0, 1], got {unknown_fraction}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{self.root}: Speech Commands root folder not found")
        self.subset, self.setup, self.sample_rate = subset, setup, int(sample_rate)
        self.transform = transform
        self.skipped = skips if skips is not None else SkipLog()
        keywords, extras = setup_words(setup)
        if words is not None:
            keywords = tuple(words)
        self.labels: list[str] = list(keywords) + ([SILENCE, UNKNOWN] if extras else [])
        index = {w: i for i, w in enumerate(self.labels)}

        validation = read_split_list(self.root / VALIDATION_LIST)
        testing = read_split_list(self.root / TESTING_LIST)
        folders = sorted(d.name for d in os.scandir(self.root) if d.is_dir() and not d.name.startswith(("_", ".")))
        missing = [w for w in keywords if w not in folders]
        if missing:
            raise DataError(f"{self.root}: missing word folders for setup {setup!r}: {', '.join(missing)}")
        others = [w for w in folders if w not in index]

        def in_subset(rel: str) -> bool:
            if subset == "validation":
                return rel in validation
            if subset == "testing":
                return rel in testing
            return rel not in validation and rel not in testing

        found: set[str] = set()  # every file of the subset that the listings saw

        def listing(word: str) -> list[str]:
            names = sorted(e.name for e in os.scandir(self.root / word) if e.is_file() and e.name.endswith(".wav"))
            rels = [rel for rel in (f"{word}/{n}" for n in names) if in_subset(rel)]
            found.update(rels)
            return rels

        entries: list[tuple[str, int]] = [(rel, index[w]) for w in keywords for rel in listing(w)]
        if extras:
            unknown = [rel for w in others for rel in listing(w)]
            if (self.root / UNKNOWN).is_dir():  # clips that are _unknown_ as such (running speech, near-misses)
                unknown += listing(UNKNOWN)
            if unknown_fraction < 1.0:
                rng = _subset_rng(seed, subset, "unknown")
                keep = np.sort(rng.permutation(len(unknown))[: round(unknown_fraction * len(unknown))])
                unknown = [unknown[i] for i in keep]
            entries += [(rel, index[UNKNOWN]) for rel in unknown]
        elif others:
            log.info("%s: folders outside setup %r ignored: %s", self.root, setup, ", ".join(others))
        self._record_missing_listed(validation if subset == "validation" else testing if subset == "testing" else set(),
                                    set(keywords) | (set(others) if extras else set()), set(folders), found)

        ok = screen_audio([self.root / rel for rel, _ in entries], check, self.skipped)
        entries = [e for e, k in zip(entries, ok, strict=True) if k]
        self._paths: list[Path] = [self.root / rel for rel, _ in entries]
        self._targets: list[int] = [t for _, t in entries]
        # (noise file index, start sample, gain) for silence items; word items hold None.
        self._crops: list[tuple[int, int, float] | None] = [None] * len(entries)
        self._noise_files: list[Path] = []
        self._noise_cache: dict[int, torch.Tensor] = {}
        self._failed: set[int] = set()  # items that failed to read in __getitem__ (this process)
        if extras:
            self._add_silence(silence_count, silence_gain, seed, index[SILENCE])

        summary = ", ".join(f"{self.labels[i]}={n}" for i, n in sorted(self._class_counts().items()))
        log.info("%s [%s, setup %s]: %d items (%s)", self.root, subset, setup, len(self), summary)
        if self.skipped:
            log.warning("%s [%s]: %s", self.root, subset, self.skipped.summary())
        if not self._paths:
            raise DataError(f"{self.root}: no usable items in subset {subset!r} ({self.skipped.summary()})")

    def _record_missing_listed(self, listed: set[str], used: set[str], folders: set[str], found: set[str]) -> None:
        """Record split-list entries whose file is absent (a damaged or partial copy), instead of losing them
        silently. Entries of folders present but outside the setup are not counted (those folders are logged
        as ignored); an entry of a folder absent altogether is counted when the setup has ``_unknown_``,
        which would have taken it. ``found``: the subset's files the folder listings saw (no stat per entry)."""
        name = VALIDATION_LIST if self.subset == "validation" else TESTING_LIST
        for rel in sorted(listed - found):
            word = rel.split("/", 1)[0]
            counted = word in used or (word not in folders and UNKNOWN in self.labels and not word.startswith("_"))
            if counted:
                self.skipped.add(str(self.root / rel), f"missing: listed in {name} but not found")

    def _add_silence(self, count: int | None, gain: tuple[float, float], seed: int, target: int) -> None:
        n_words = len(self._paths)
        if count is None:
            count = round(n_words / max(1, len(self.labels) - 1))
        if count <= 0:
            return
        folder = self.root / BACKGROUND_DIR
        files = sorted(p for p in folder.glob("*.wav")) if folder.is_dir() else []
        lengths = []
        for f in files:
            try:
                info = audio_info(f)
            except DataError as e:
                self.skipped.add(str(f), f"unreadable: {e}")
                continue
            self._noise_files.append(f)
            lengths.append(-(-info.frames * self.sample_rate // info.sample_rate))  # ceil: resampled length
        if not self._noise_files:
            raise DataError(
                f"{folder}: no readable background noise files, needed for the {SILENCE} class "
                f"(pass silence_count=0 to do without)"
            )
        rng = _subset_rng(seed, self.subset, "silence")
        for _ in range(count):
            k = int(rng.integers(len(self._noise_files)))
            start = int(rng.integers(max(1, lengths[k] - self.sample_rate + 1)))
            g = float(rng.uniform(*gain))
            self._paths.append(self._noise_files[k])
            self._targets.append(target)
            self._crops.append((k, start, g))

    def _class_counts(self) -> dict[int, int]:
        return dict(zip(*np.unique(np.asarray(self._targets, dtype=np.int64), return_counts=True), strict=True))

    @property
    def paths(self) -> list[Path]:
        """Per-item source file (for ``_silence_`` items: the noise file cropped)."""
        return list(self._paths)

    @property
    def targets(self) -> list[int]:
        """Per-item class index (for samplers and class weights)."""
        return list(self._targets)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def class_counts(self) -> dict[str, int]:
        """Items per class name."""
        counts = self._class_counts()
        return {name: int(counts.get(i, 0)) for i, name in enumerate(self.labels)}

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """Item ``i``; a word file that fails to read now (a NaN sample the header check cannot see, a
        file damaged since indexing) is recorded in :attr:`skipped` like the files the index check
        rejected, and the next readable item of the same class takes its place: one bad file never
        stops an epoch. (In a DataLoader worker the record is that worker's: the warning is logged.)"""
        try:
            return self._item(i)
        except DataError as e:
            self._skip(i, e)
        n = len(self._paths)
        for j in (k % n for k in range(i + 1, i + n)):
            if self._targets[j] == self._targets[i] and j not in self._failed:
                try:
                    return self._item(j)
                except DataError as e:
                    self._skip(j, e)
        raise DataError(f"{self.root} [{self.subset}]: no readable item of class {self.labels[self._targets[i]]!r} "
                        f"left ({self.skipped.summary()})")

    def _skip(self, i: int, e: DataError) -> None:
        if i not in self._failed:
            self._failed.add(i)
            self.skipped.add(str(self._paths[i]), _skip_reason(str(e)))

    def _item(self, i: int) -> tuple[torch.Tensor, int]:
        crop = self._crops[i]
        if crop is None:
            wave = fix_length(read_audio(self._paths[i], self.sample_rate), self.sample_rate)
        else:
            k, start, gain = crop
            noise = self._noise_cache.get(k)
            if noise is None:
                # Per process (each DataLoader worker fills its own); a noise set is tens of MB at most.
                noise = self._noise_cache[k] = read_audio(self._noise_files[k], self.sample_rate)
            wave = crop_or_tile(noise, self.sample_rate, min(start, max(0, noise.shape[-1] - self.sample_rate)))
            wave = wave * gain
        if self.transform is not None:
            wave = self.transform(wave)
        return wave, self._targets[i]

    def __repr__(self) -> str:
        return f"SpeechCommands({str(self.root)!r}, subset={self.subset!r}, setup={self.setup!r}, n={len(self)})"
