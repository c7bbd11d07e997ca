"""The work of generating a negative corpus, cut into jobs: one part of one source each, with a random
stream of its own (so the audio does not depend on which worker runs it, or when)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch

from ssm_signal.data.audio_io import write_audio
from ssm_signal.data.negatives.config import NegativeCorpusConfig
from ssm_signal.data.negatives.dsp import fade, level, tile
from ssm_signal.data.negatives.materials import SPEECH_BACKGROUND, Materials
from ssm_signal.data.negatives.music import MAKE_MUSIC, MUSIC_STYLES
from ssm_signal.data.negatives.noise import MAKE_NOISE, NOISE_STYLES
from ssm_signal.data.negatives.speakers import Speaker, plan_speakers, synthesize_sentence
from ssm_signal.data.skips import DataError

KINDS = ("speech", "music", "noise")


@dataclasses.dataclass(frozen=True)
class Job:
    """One part of one source: the files a worker writes with one random stream."""

    kind: str  # speech, music, noise
    source: str  # folder name under kind/
    style: str  # music/noise style, or the speech engine
    source_index: int
    part: int
    seconds: float  # audio to write (speech: at least this much, as whole files)
    speakers: tuple[Speaker, ...] = ()
    sentence_offset: int = 0  # speech: the job's own stretch of the shuffled sentence pool
    sentence_count: int = 0


def _job_seed(seed: int, job: Job) -> list[int]:
    return [seed, KINDS.index(job.kind), job.source_index, job.part]


_POOL: tuple[str, ...] = ()  # the shuffled sentence pool, set once per worker process


def init_worker(sentences: tuple[str, ...]) -> None:
    """Set up a worker process (or this process, for one worker): the sentence pool, one torch thread."""
    global _POOL
    _POOL = sentences
    torch.set_num_threads(1)  # one process per core already


def run_job(args: tuple[Job, str, NegativeCorpusConfig, int]) -> list[dict]:
    """Worker: one job's files under ``root``. Returns one record per written file: path (relative to the
    root), seconds, engine, voice, materials (recorded samples used), text (sentences spoken)."""
    job, root, cfg, seed = args
    rng = np.random.default_rng(_job_seed(seed, job))
    folder = Path(root) / job.kind / job.source
    if job.kind == "speech":
        return _speech_files(job, cfg, rng, folder)
    return _sound_file(job, cfg, rng, folder)


def _speech_files(job: Job, cfg: NegativeCorpusConfig, rng: np.random.Generator, folder: Path) -> list[dict]:
    """Speech files, a turn of one speaker each, until the job's seconds are reached."""
    sentences = _POOL
    sr = cfg.sample_rate
    records = []
    mat = Materials(sr)
    done, j, k = 0.0, 0, 0
    turn = int(rng.integers(len(job.speakers)))
    while done < job.seconds:
        if len(job.speakers) > 1:  # the next turn goes to another speaker
            turn = (turn + 1 + int(rng.integers(len(job.speakers) - 1))) % len(job.speakers)
        speaker = job.speakers[turn]
        said, spoken = [], []
        pieces = [np.zeros(int(rng.uniform(*cfg.edge_s) * sr), np.float32)]
        for i in range(int(rng.integers(cfg.sentences_per_file[0], cfg.sentences_per_file[1] + 1))):
            text = sentences[job.sentence_offset + k % job.sentence_count]
            k += 1
            if i:
                pieces.append(np.zeros(int(rng.uniform(*cfg.pause_s) * sr), np.float32))
            spoken.append(synthesize_sentence(text, speaker, rng, sr))
            pieces.append(spoken[-1])
            said.append(text)
        pieces.append(np.zeros(int(rng.uniform(*cfg.edge_s) * sr), np.float32))
        raw = np.concatenate(pieces)
        gain = 10 ** ((speaker.level_db + float(rng.uniform(-3, 3))) / 20) / max(float(np.abs(raw).max()), 1e-9)
        wave = raw * gain
        materials: list[str] = []
        if rng.random() < cfg.speech_noise_fraction:
            mat.used.clear()
            noise = mat(SPEECH_BACKGROUND[int(rng.integers(len(SPEECH_BACKGROUND)))])
            noise = tile(noise, len(wave), int(rng.integers(len(noise))))
            # the SNR refers to the speech itself, not to the pauses around it (as in keywords.py)
            p_voice = float(np.mean(np.square(np.concatenate(spoken)))) * gain**2
            p_noise = max(float(np.mean(np.square(noise))), 1e-12)
            wave = wave + noise * math.sqrt(p_voice / (p_noise * 10 ** (rng.uniform(*cfg.speech_snr_db) / 10)))
            materials = sorted(mat.used)
        peak = float(np.abs(wave).max())
        if peak > 0.99:
            wave = wave * (0.99 / peak)
        rel = f"{job.kind}/{job.source}/p{job.part:03d}_{j:04d}.wav"
        write_audio(folder / rel.rsplit("/", 1)[1], wave, sr)
        records.append({"path": rel, "seconds": len(wave) / sr, "engine": speaker.engine, "voice": speaker.voice,
                        "materials": materials, "text": said})
        done += len(wave) / sr
        j += 1
    return records


def _sound_file(job: Job, cfg: NegativeCorpusConfig, rng: np.random.Generator, folder: Path) -> list[dict]:
    """One music or noise file of the job's style and seconds, levelled to a random peak."""
    sr = cfg.sample_rate
    mat = Materials(sr)
    n = max(int(round(job.seconds * sr)), 1)
    make = MAKE_MUSIC[job.style] if job.kind == "music" else MAKE_NOISE[job.style]
    wave = make(n, sr, rng, mat)[:n]
    levels = cfg.music_peak_dbfs if job.kind == "music" else cfg.noise_peak_dbfs
    wave = level(fade(wave, int(0.02 * sr), int(0.02 * sr)), float(rng.uniform(*levels)))
    rel = f"{job.kind}/{job.source}/p{job.part:03d}_0000.wav"
    write_audio(folder / rel.rsplit("/", 1)[1], wave, sr)
    return [{"path": rel, "seconds": n / sr, "engine": "", "voice": "", "materials": sorted(mat.used), "text": []}]


def plan_jobs(cfg: NegativeCorpusConfig, seed: int, n_sentences: int) -> list[Job]:
    """Every job of the corpus: speech sources in parts of about ``cfg.speech_part_s``, each with its own
    stretch of the ``n_sentences`` shuffled sentences; music and noise sources a file per job."""
    jobs: list[Job] = []
    speech_s = cfg.speech_hours * 3600.0
    if speech_s > 0:
        per_source = speech_s / cfg.speech_sources
        parts = max(1, math.ceil(per_source / cfg.speech_part_s))
        for i, (name, speakers) in enumerate(plan_speakers(cfg, seed)):
            for p in range(parts):
                jobs.append(Job("speech", name, speakers[0].engine, i, p, per_source / parts, tuple(speakers)))
        # each speech job reads its own stretch of the shuffled pool (repeating it only if it runs out, which
        # the default sizes never do): no sentence is spoken in two sources
        if n_sentences < len(jobs):
            raise DataError(f"{n_sentences} sentences cannot give {len(jobs)} speech jobs a sentence each")
        bounds = [q * n_sentences // len(jobs) for q in range(len(jobs) + 1)]
        jobs = [dataclasses.replace(j, sentence_offset=bounds[q], sentence_count=bounds[q + 1] - bounds[q])
                for q, j in enumerate(jobs)]
    for kind, total_s, n_sources, styles, file_s in (
            ("music", cfg.music_minutes * 60.0, cfg.music_sources, MUSIC_STYLES, cfg.music_file_s),
            ("noise", cfg.noise_minutes * 60.0, cfg.noise_sources, NOISE_STYLES, cfg.noise_file_s)):
        if total_s <= 0:
            continue
        per_source = total_s / n_sources
        files = max(1, math.ceil(per_source / file_s - 1e-9))
        for i in range(n_sources):
            style = styles[i % len(styles)]
            name = f"{style}-{i // len(styles):02d}"
            for p in range(files):
                jobs.append(Job(kind, name, style, i, p, per_source / files))
    return jobs

