"""Engines and pseudo-speakers (ssm_signal.data.voices) and the multi-engine keyword set: every engine and
voice speaks (a missing tool fails, never skips: `make system-deps` installs them), F0, tempo and formant
perturbations do what they say, splits stay person-disjoint, an engine can be held out, and generation is
deterministic."""

from __future__ import annotations

import json

import pytest
import torch
import torchaudio.functional as AF

from ssm_signal.data import keywords as kw
from ssm_signal.data import voices
from ssm_signal.data.speech_commands import speaker_of
from tests.helpers import band_centroid, median_f0, tree_digest

SR = 16000


@pytest.mark.parametrize("engine,voice", [(e, v) for e, vs in voices.VOICES.items() for v in vs])
def test_every_engine_voice_speaks(engine, voice):
    voices.check_engine(engine)
    one, two = voices.synthesize_words(engine, voice, ["seven", "yes"])
    for w in (one, two):
        assert w.dtype == torch.float32 and 0.2 * SR < w.shape[0] < 1.2 * SR
        assert float(w.abs().max()) > 0.01
    assert 60 < median_f0(one) < 300  # voiced speech at a human pitch


def vowel(f0: float = 120.0, formants=(700.0, 1200.0), n: int = SR) -> torch.Tensor:
    """A pulse train at f0 through two resonators: a crude steady vowel."""
    phase = torch.cumsum(torch.full((n,), f0 / SR, dtype=torch.float64), 0)
    y = (phase.frac() < f0 / SR).float()
    for fc in formants:
        y = AF.bandpass_biquad(y, SR, fc, Q=5.0)
    return 0.5 * y / y.abs().max()


def test_pitch_moves_f0_and_keeps_the_formants():
    x = vowel()
    up = voices.perturb(x, SR, semitones=4.0)
    assert up.shape == x.shape
    assert median_f0(up) == pytest.approx(median_f0(x) * 2 ** (4 / 12), rel=0.04)
    assert band_centroid(up) == pytest.approx(band_centroid(x), rel=0.05)


def test_vtl_moves_the_formants_and_keeps_f0():
    x = vowel()
    for factor in (0.85, 1.2):
        y = voices.perturb(x, SR, vtl=factor)
        assert median_f0(y) == pytest.approx(median_f0(x), rel=0.02)
        assert band_centroid(y) == pytest.approx(band_centroid(x) * factor, rel=0.05)


def test_tempo_changes_the_duration_and_keeps_f0():
    x = vowel()
    y = voices.perturb(x, SR, tempo=1.25)
    assert y.shape[0] == pytest.approx(SR / 1.25, rel=0.02)
    assert median_f0(y) == pytest.approx(median_f0(x), rel=0.02)


def test_perturbation_is_deterministic():
    x = voices.synthesize_words("flite", "kal16", ["seven"])[0]
    a, b = (voices.perturb(x, SR, 2.5, 0.9, 1.1) for _ in range(2))
    assert torch.equal(a, b)


def test_missing_tool_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(voices.shutil, "which", lambda name: None)
    with pytest.raises(voices.DataError, match="flite not found.*apt-get install flite"):
        voices.check_engine("flite")


# -- the multi-engine keyword set ---------------------------------------------------------------------------

MIXED = kw.KeywordSetConfig(n_speakers=12, words=("yes", "no"), other_words=("bed", "cat"), other_per_speaker=1,
                            validation_percent=30, testing_percent=30, engine_speakers={"flite": 5, "festival": 3})


def splits(root, cfg, seed) -> dict[str, set[tuple[str, str]]]:
    """split -> {(engine, person)} read back from the written lists and files."""
    by_id = {s.id: s for s in kw.plan_speakers(cfg, seed)}
    lists = {n: set((root / f"{n}_list.txt").read_text().split()) for n in ("validation", "testing")}
    out: dict[str, set[tuple[str, str]]] = {"training": set(), "validation": set(), "testing": set()}
    for p in root.glob("*/*_nohash_*.wav"):
        rel = f"{p.parent.name}/{p.name}"
        name = next((n for n, rels in lists.items() if rel in rels), "training")
        s = by_id[speaker_of(rel)]
        out[name].add((s.engine, s.person))
    return out


@pytest.fixture(scope="module")
def mixed_set(tmp_path_factory):
    return kw.generate_keyword_set(tmp_path_factory.mktemp("kw") / "mixed", seed=2, config=MIXED, workers=2)


def test_mixed_set_speaks_every_engine_and_splits_by_person(mixed_set):
    got = splits(mixed_set, MIXED, 2)
    assert {e for e, _ in got["training"]} == set(voices.ENGINES)
    assert got["validation"] and got["testing"]
    persons = {n: {p for _, p in v} for n, v in got.items()}
    assert not persons["training"] & persons["validation"]
    assert not persons["training"] & persons["testing"]
    assert not persons["validation"] & persons["testing"]
    config = json.loads((mixed_set / kw.MARKER).read_text())["config"]
    assert config["engine_speakers"] == {"flite": 5, "festival": 3}


def test_mixed_set_is_deterministic(mixed_set, tmp_path):
    assert tree_digest(kw.generate_keyword_set(tmp_path / "again", seed=2, config=MIXED, workers=1)) == tree_digest(mixed_set)


@pytest.mark.parametrize("engine", ["flite", "festival"])
def test_holdout_engine_is_the_whole_validation_split(engine):
    cfg = kw.KeywordSetConfig(**{**MIXED.__dict__, "holdout_engine": engine})
    speakers = kw.plan_speakers(cfg, 2)
    val = [s for s in speakers if s.split == "validation"]
    assert val and {s.engine for s in val} == {engine}
    assert len(val) == MIXED.engine_speakers[engine]
    held = {s.person for s in val}
    assert not held & {s.person for s in speakers if s.split != "validation"}  # kal/slt not heard via the other
    base = kw.plan_speakers(MIXED, 2)
    moved = {s.id for s in base if s.split == "validation" and s.engine != engine}
    assert moved <= {s.id for s in speakers if s.split == "testing"}  # its validation voices now test


def test_espeak_only_sets_keep_their_settings():
    # sets generated before other engines existed stay valid caches: no engine fields in the marker
    assert "engine_speakers" not in kw._settings(kw.KeywordSetConfig(), 0)["config"]
    assert kw.KeywordSetConfig().engines == ("espeak-ng",)


def test_bad_engine_configs():
    with pytest.raises(ValueError, match="engine_speakers"):
        kw.KeywordSetConfig(engine_speakers={"piper": 3})
    with pytest.raises(ValueError, match="holdout_engine"):
        kw.KeywordSetConfig(holdout_engine="flite")
    with pytest.raises(ValueError, match="nothing to train"):
        kw.KeywordSetConfig(n_speakers=0, engine_speakers={"flite": 4}, holdout_engine="flite")
