"""Bounds declared with config fields and checked by one function: every kind of violation, and the
configs that declare them."""

from __future__ import annotations

import dataclasses

import pytest

from ssm_signal.bounds import bounded, check_bounds
from ssm_signal.data.channel import ChannelConfig
from ssm_signal.data.keywords import KeywordSetConfig
from ssm_signal.data.negatives.config import NegativeCorpusConfig
from ssm_signal.data.training_speech import TrainingSpeech
from ssm_signal.models.config import BackboneConfig, FrontendConfig


@dataclasses.dataclass
class Settings:
    count: int = bounded(3, ge=1)
    share: float = bounded(0.5, ge=0, le=1)
    step_s: float = bounded(0.1, gt=0)
    span: tuple[int, int] = bounded((2, 5), ge=1)
    level_db: tuple[float, float] = bounded((-10.0, 10.0))
    name: str = "free"  # not bounded: never looked at

    def __post_init__(self):
        check_bounds(self, "settings.")


def test_defaults_and_values_within_bounds_pass():
    Settings()
    Settings(count=1, share=1, step_s=1e-9, span=[1, 1], level_db=(3, 3.5), name="")


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("count", 0, "settings.count must be >= 1, got 0"),
        ("count", 2.0, "settings.count must be an integer, got 2.0"),
        ("count", True, "settings.count must be an integer, got True"),
        ("share", 1.5, "settings.share must be >= 0 and <= 1, got 1.5"),
        ("share", float("nan"), "settings.share must be >= 0 and <= 1, got nan"),
        ("share", "0.5", "settings.share must be a number, got '0.5'"),
        ("step_s", 0.0, "settings.step_s must be > 0, got 0.0"),
        ("span", (5, 2), "settings.span must be a range (low, high) of integers >= 1 with low <= high, got (5, 2)"),
        ("span", (0, 2), "settings.span must be a range (low, high) of integers >= 1 with low <= high, got (0, 2)"),
        ("span", (1.5, 2), "of integers >= 1"),
        ("span", (1, 2, 3), "settings.span must be a range (low, high)"),
        ("span", 3, "settings.span must be a range (low, high)"),
        ("level_db", (1.0, -1.0), "settings.level_db must be a range (low, high) of numbers with low <= high"),
    ],
)
def test_each_violation_is_named(field, value, message):
    with pytest.raises(ValueError) as e:
        Settings(**{field: value})
    assert message in str(e.value)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: FrontendConfig(n_mels=-3), "frontend.n_mels must be >= 1, got -3"),
        (lambda: FrontendConfig(hop_length="160"), "frontend.hop_length must be an integer, got '160'"),
        (lambda: BackboneConfig(d_model=0), "backbone.d_model must be >= 1, got 0"),
        (lambda: NegativeCorpusConfig(pause_s=(1.0, 0.5)), "pause_s must be a range"),
        (lambda: NegativeCorpusConfig(music_file_s=0), "music_file_s must be > 0, got 0"),
        (lambda: KeywordSetConfig(tempo=(0.0, 1.0)), "tempo must be a range (low, high) of numbers > 0"),
        (lambda: KeywordSetConfig(validation_percent=-1), "validation_percent must be >= 0, got -1"),
        (lambda: TrainingSpeech(crops_per_sentence=0), "crops_per_sentence must be >= 1, got 0"),
        (lambda: ChannelConfig(reverb=1.5), "reverb must be >= 0 and <= 1, got 1.5"),
    ],
)
def test_configs_check_their_declared_bounds(make, message):
    with pytest.raises(ValueError) as e:
        make()
    assert message in str(e.value)


def test_label_and_error_are_the_callers():
    class OptionError(ValueError):
        pass

    s = Settings()
    s.count = 0
    with pytest.raises(OptionError, match="^--count must be >= 1, got 0$"):
        check_bounds(s, lambda name: f"--{name}", OptionError)
