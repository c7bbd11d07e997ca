"""Generating the negative corpus into a folder: planning, running the jobs in worker processes, naming
the files, the manifest and summary, and the cache marker that makes a second call return at once."""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import fcntl
import json
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ssm_signal.data.generated import holds_generated
from ssm_signal.data.negatives.config import NegativeCorpusConfig
from ssm_signal.data.negatives.jobs import KINDS, init_worker, plan_jobs, run_job
from ssm_signal.data.negatives.materials import SONIC_PI_DIR
from ssm_signal.data.negatives.sentences import TEXT_SOURCES, load_sentences, text_digest
from ssm_signal.data.negatives.speakers import ESPEAK_ENGINE, FLITE_ENGINE
from ssm_signal.data.skips import DataError
from ssm_signal.data.voices import tool as _tool

log = logging.getLogger("ssm_signal.data")

GENERATOR = "ssm-signal negative corpus"
GENERATOR_VERSION = 2  # 2: inflected keyword forms (KEYWORD_FORMS) rejected too
MARKER = "GENERATED.json"
SUMMARY = "SUMMARY.json"
SENTENCES = "SENTENCES.txt"
MANIFEST = "MANIFEST.tsv"


def _settings(cfg: NegativeCorpusConfig, seed: int) -> dict:
    return json.loads(json.dumps({"generator": GENERATOR, "version": GENERATOR_VERSION, "seed": seed,
                                  "config": dataclasses.asdict(cfg)}))


def check_tools(cfg: NegativeCorpusConfig | None = None) -> None:
    """Raise a DataError naming what is missing: espeak-ng, flite, Sonic Pi samples, the texts."""
    cfg = cfg or NegativeCorpusConfig()
    if cfg.speech_hours > 0:
        if cfg.flite_sources < cfg.speech_sources:
            _tool("espeak-ng")
        if cfg.flite_sources > 0:
            _tool("flite")
        load_sentences(min_words=cfg.min_words, max_words=cfg.max_words)
    if (cfg.music_minutes > 0 or cfg.noise_minutes > 0 or cfg.speech_noise_fraction > 0) and not Path(
            SONIC_PI_DIR).is_dir():
        raise DataError(f"{SONIC_PI_DIR} not found: install the Debian package sonic-pi-samples (`make system-deps`)")


def generate_negative_corpus(root: str | os.PathLike, seed: int = 0, *, config: NegativeCorpusConfig | None = None,
                             workers: int | None = None) -> Path:
    """Generate the negative corpus into ``root`` (or return at once if it is already there).

    A folder that holds anything without this generator's marker, or a corpus generated with other
    settings, is never touched: that raises a DataError. Processes that ask for the same root at the same
    time take turns (an exclusive lock on ``<root>.lock``): the first generates, the others then find it
    cached. Returns ``root``.
    """
    cfg = config or NegativeCorpusConfig()
    root = Path(root)
    settings = _settings(cfg, seed)
    if holds_generated(root, MARKER, settings, "negative corpus"):
        return root
    check_tools(cfg)
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.with_name(root.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, also if this process dies
        if holds_generated(root, MARKER, settings, "negative corpus"):  # another process made it while this one waited
            return root
        return _generate(root, cfg, seed, settings, workers)


def _generate(root: Path, cfg: NegativeCorpusConfig, seed: int, settings: dict, workers: int | None) -> Path:
    t0 = time.time()
    sentences: tuple[str, ...] = ()
    if cfg.speech_hours > 0:
        pool = load_sentences(min_words=cfg.min_words, max_words=cfg.max_words)
        sentences = tuple(np.random.default_rng([seed, 0x7E47]).permutation(pool).tolist())
    jobs = plan_jobs(cfg, seed, len(sentences))
    tmp = root.with_name(root.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)  # an interrupted earlier run
    tmp.mkdir(parents=True)
    log.info("generating the negative corpus: %.2f h speech, %.0f min music, %.0f min noise, %d jobs, into %s",
             cfg.speech_hours, cfg.music_minutes, cfg.noise_minutes, len(jobs), root)
    # the longest jobs first, so that the last ones to finish are short
    order = sorted(range(len(jobs)), key=lambda q: -jobs[q].seconds * (3 if jobs[q].kind == "speech" else 1))
    args = [(jobs[q], str(tmp), cfg, seed) for q in order]
    workers = workers or max(1, min(len(jobs), os.cpu_count() or 1))
    if workers == 1:
        threads = torch.get_num_threads()
        try:
            init_worker(sentences)
            results_in_order = [run_job(a) for a in args]
        finally:
            init_worker(())
            torch.set_num_threads(threads)
    else:
        # spawn, not fork: the parent has torch's thread pools running
        with cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=init_worker, initargs=(sentences,)) as pool:
            results_in_order = list(pool.map(run_job, args))
    results: list[list[dict]] = [[] for _ in jobs]
    for q, res in zip(order, results_in_order, strict=True):
        results[q] = res

    # name each source's files 00000, 00001 ... in (part, file) order
    records: list[dict] = []
    by_source: dict[str, list[dict]] = {}
    for res in results:
        for r in res:
            by_source.setdefault(r["path"].rsplit("/", 1)[0], []).append(r)
    for src in sorted(by_source):
        for n, r in enumerate(sorted(by_source[src], key=lambda r: r["path"])):
            new = f"{src}/{n:05d}.wav"
            (tmp / r["path"]).rename(tmp / new)
            records.append({**r, "path": new})

    summary = _summarise(records, cfg, seed, time.time() - t0)
    (tmp / SENTENCES).write_text("".join(f"{s}\n" for s in summary.pop("_sentences")))
    with open(tmp / MANIFEST, "w") as f:
        f.write("path\tseconds\tengine\tvoice\tmaterials\ttext\n")
        for r in records:
            f.write(f"{r['path']}\t{r['seconds']:.3f}\t{r['engine']}\t{r['voice']}\t{','.join(r['materials'])}\t"
                    f"{' | '.join(r['text'])}\n")
    (tmp / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    (tmp / MARKER).write_text(json.dumps(settings, indent=2) + "\n")
    if root.exists():
        root.rmdir()  # empty (checked above)
    tmp.rename(root)
    log.info("negative corpus ready in %.0f s: %.2f h in %d files", time.time() - t0,
             summary["seconds"]["total"] / 3600, summary["files"])
    return root


def _summarise(records: list[dict], cfg: NegativeCorpusConfig, seed: int, elapsed: float) -> dict:
    per_source: dict[str, float] = {}
    per_kind = dict.fromkeys(KINDS, 0.0)
    voices: dict[str, set[str]] = {ESPEAK_ENGINE: set(), FLITE_ENGINE: set()}
    materials: set[str] = set()
    sentences: set[str] = set()
    for r in records:
        src = r["path"].rsplit("/", 1)[0]
        per_source[src] = per_source.get(src, 0.0) + r["seconds"]
        per_kind[src.split("/", 1)[0]] += r["seconds"]
        if r["voice"]:
            voices[r["engine"]].add(r["voice"])
        materials.update(r["materials"])
        sentences.update(r["text"])
    return {
        "seconds": {**{k: round(v, 3) for k, v in per_kind.items()}, "total": round(sum(per_kind.values()), 3)},
        "sources": {k: round(v, 3) for k, v in sorted(per_source.items())},
        "files": len(records),
        "voices": {k: sorted(v) for k, v in voices.items()},
        "espeak_variants": sorted({v.split("+", 1)[1] for v in voices[ESPEAK_ENGINE]}),
        "sentences": len(sentences),
        "materials": sorted(materials),
        "text_sources": list(TEXT_SOURCES) if cfg.speech_hours > 0 else [],
        "text_sha256": text_digest() if cfg.speech_hours > 0 else "",
        "generation_seconds": round(elapsed, 1),  # the one field that is not deterministic
        "_sentences": sorted(sentences),
    }



def corpus_sources(root: str | os.PathLike) -> dict[str, list[Path]]:
    """Every source of a generated corpus: ``"speech/espeak-03"`` -> its WAV files in stream order.

    Raises:
        DataError: ``root`` is not a generated negative corpus (no marker, or no source).
    """
    root = Path(root)
    if not (root / MARKER).is_file():
        raise DataError(f"{root} is not a generated negative corpus (no {MARKER}); run generate_negative_corpus")
    out = {}
    for kind in KINDS:
        for folder in sorted(p for p in (root / kind).glob("*") if p.is_dir()):
            files = sorted(folder.glob("*.wav"))
            if files:
                out[f"{kind}/{folder.name}"] = files
    if not out:
        raise DataError(f"{root} holds no source")
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m ssm_signal.data.negatives ROOT [--seed N] [--workers N] [--speech-hours H] ...``"""
    import argparse

    from ssm_signal.data import negatives

    p = argparse.ArgumentParser(prog="python -m ssm_signal.data.negatives",
                                description=negatives.__doc__.splitlines()[0])
    p.add_argument("root", help="where to write the corpus (e.g. data/negatives)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None)
    d = NegativeCorpusConfig()
    p.add_argument("--speech-hours", type=float, default=d.speech_hours)
    p.add_argument("--music-minutes", type=float, default=d.music_minutes)
    p.add_argument("--noise-minutes", type=float, default=d.noise_minutes)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    cfg = NegativeCorpusConfig(speech_hours=a.speech_hours, music_minutes=a.music_minutes,
                               noise_minutes=a.noise_minutes)
    root = generate_negative_corpus(a.root, a.seed, config=cfg, workers=a.workers)
    print(json.dumps(json.loads((root / SUMMARY).read_text())["seconds"]))

