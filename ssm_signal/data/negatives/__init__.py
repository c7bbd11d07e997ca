"""The held-out negative corpus: hours of audio that hold no keyword, for false accepts per hour.

A keyword spotter is measured the way the field measures it: misses at a false-accept rate per hour
(FA/h) on long streamed audio. This module generates that audio on the machine, from material the
keyword set of :mod:`ssm_signal.data.keywords` never uses in training::

    <root>/speech/<source>/<nnnnn>.wav   16 kHz mono PCM-16; a few sentences by one voice, natural pauses
    <root>/music/<source>/<nnnnn>.wav    arranged music: real recorded loops and hits, and synthesised music
    <root>/noise/<source>/<nnnnn>.wav    coloured noise, hum, recorded machine and electronic sounds
    <root>/SENTENCES.txt                 every sentence spoken, one per line (sorted)
    <root>/MANIFEST.tsv                  every file: seconds, engine and voice, materials, sentences (" | ")
    <root>/GENERATED.json                generator, version, seed and config (the cache marker)
    <root>/SUMMARY.json                  seconds per source and kind, voices, sentence count, materials

Each folder under ``speech/``, ``music/`` and ``noise/`` is one *source*: an evaluator concatenates its
files in sorted order into one stream (:func:`corpus_sources`). No sentence is spoken in two sources,
so sources can be split into calibration and test halves that share no file or sentence.

Speech: espeak-ng with only the voice variants that the keyword set holds out of training (its
validation and testing variants, :func:`~ssm_signal.data.keywords.split_of`), in its eight English
accents, each speaker with its own rate and pitch (jittered per sentence); and Debian's ``flite`` (CMU
Flite: a second engine, diphone and unit-selection voices, not in the default keyword set; note that
``configs/kws_default.yaml`` does train on flite voices), each speaker with its own duration stretch and
mean F0. A speech source is a channel of a few speakers taking turns, a file
per turn. Sentences come from a text that ships in Debian packages (:data:`TEXT_SOURCES`): the
``fortunes`` and ``fortunes-min`` quotation files of fortune-mod (BSD licence, Debian's copyright file). Every
sentence is checked to hold no keyword (:func:`holds_keyword`: the 35 Speech Commands words, their
homophones and inflected forms, any digit) and no token a synthesiser could read as one (roman numerals, single letters).
A share of the speech files gets real recorded machine noise (a Sonic Pi sample not used in training)
mixed in at a high SNR.

Music and noise use recorded Sonic Pi samples (Debian ``sonic-pi-samples``, CC0) that are not in
:data:`~ssm_signal.data.keywords.NOISE_SOURCES`, and generated sound.

Generation is deterministic for a seed (one random stream per job, a job being one part of one source,
independent of worker scheduling), runs in spawned worker processes, is written to ``<root>.partial``
and renamed into place when complete, and is cached: a second call with the same settings returns at
once, and a folder that holds anything else is never overwritten (:class:`DataError`).

Modules, one concern each (this package re-exports their public names):

    config      NegativeCorpusConfig, held_out_variants
    sentences   the texts, the keyword check (holds_keyword), clean_sentences, load_sentences
    speakers    Speaker, plan_speakers, synthesize_sentence (espeak-ng, flite)
    materials   the Sonic Pi samples it may use and their loader
    dsp         sample-level tools of the music and noise generators
    music       four music styles; synth_music, the synthesised one alone
    noise       four noise styles
    jobs        the plan of jobs and the worker that runs one
    corpus      generate_negative_corpus, corpus_sources, the cache marker, the command line
"""

from __future__ import annotations

from ssm_signal.data.negatives.config import NegativeCorpusConfig, held_out_variants
from ssm_signal.data.negatives.corpus import (
    GENERATOR,
    GENERATOR_VERSION,
    MANIFEST,
    MARKER,
    SENTENCES,
    SUMMARY,
    check_tools,
    corpus_sources,
    generate_negative_corpus,
    main,
)
from ssm_signal.data.negatives.jobs import KINDS
from ssm_signal.data.negatives.materials import (
    BASS_C,
    CRASHES,
    DRUM_LOOPS,
    EVENTS,
    GUITAR_E,
    HATS,
    KICKS,
    LAYER_LOOPS,
    MACHINES,
    SNARES,
    SONIC_PI_DIR,
    SPEECH_BACKGROUND,
    TABLA,
)
from ssm_signal.data.negatives.music import MUSIC_STYLES, PROGRESSIONS, synth_music
from ssm_signal.data.negatives.noise import NOISE_STYLES
from ssm_signal.data.negatives.sentences import (
    FORTUNES_DIR,
    HOMOPHONES,
    KEYWORD_FORMS,
    KEYWORD_LIKE,
    TEXT_SOURCES,
    clean_sentences,
    holds_keyword,
    load_sentences,
)
from ssm_signal.data.negatives.speakers import (
    ESPEAK_ENGINE,
    FLITE_ENGINE,
    FLITE_VOICES,
    Speaker,
    plan_speakers,
    synthesize_sentence,
)

__all__ = [
    "BASS_C", "CRASHES", "DRUM_LOOPS", "ESPEAK_ENGINE", "EVENTS", "FLITE_ENGINE", "FLITE_VOICES", "FORTUNES_DIR",
    "GENERATOR", "GENERATOR_VERSION", "GUITAR_E", "HATS", "HOMOPHONES", "KEYWORD_FORMS", "KEYWORD_LIKE", "KICKS",
    "KINDS", "LAYER_LOOPS", "MACHINES", "MANIFEST", "MARKER", "MUSIC_STYLES", "NOISE_STYLES", "PROGRESSIONS",
    "SENTENCES", "SNARES", "SONIC_PI_DIR", "SPEECH_BACKGROUND", "SUMMARY", "TABLA", "TEXT_SOURCES",
    "NegativeCorpusConfig", "Speaker", "check_tools", "clean_sentences", "corpus_sources", "generate_negative_corpus",
    "held_out_variants", "holds_keyword", "load_sentences", "main", "plan_speakers", "synth_music",
    "synthesize_sentence",
]  # fmt: skip
