"""Clip accuracy of keyword bundles on a generated set's held-out split, clean and through acoustic channels.

    python benchmarks/bench_kws_channels.py --model artifacts/kws_espeak --model artifacts/kws_default \
        [--root data/keywords_robust] [--split testing]

Each clip of the split (the Speech Commands loader, ``_silence_`` and ``_unknown_`` included, as the
training job's ``test_acc``) is passed through each channel of CHANNELS (``ssm_signal.data.channel``,
parameters fixed, reverberation drawn from one seeded generator per clip, so every bundle hears the same
audio) and classified at its last frame. Accuracy per bundle x channel, and per engine x channel (the
engine of each clip from the set's speaker plan). Writes ``benchmarks/results/kws_channels_<date>.json``.

Generated voices only: this is validation material, for choosing recipes. The real recordings are for
reporting only (``ssm-signal evaluate``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine, write_result  # noqa: E402
from ssm_signal.bundle import clip_scores, load_bundle  # noqa: E402
from ssm_signal.data import channel as ch  # noqa: E402
from ssm_signal.data import keywords as kw  # noqa: E402
from ssm_signal.data.speech_commands import SpeechCommands, speaker_of  # noqa: E402

SR = 16000


def _reverb(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return ch.Reverb(SR, rt60=(0.5, 0.5), drr_db=(0.0, 0.0))(x, g)


CHANNELS = {
    "clean": lambda x, g: x,
    "telephone_300_3400": lambda x, g: ch.band_limit(x, SR, 300.0, 3400.0),
    "lowpass_4k": lambda x, g: ch.band_limit(x, SR, 0.0, 4000.0),
    "reverb_rt60_0.5": _reverb,
    "mu_law_8bit": lambda x, g: ch.mu_law(x),
    "telephone_mu_law": lambda x, g: ch.mu_law(ch.band_limit(x, SR, 300.0, 3400.0)),
}


def engines_of(root: Path, files: list[str]) -> list[str]:
    """The engine of each clip, from the set's marker (its config and seed) and the speaker plan."""
    settings = json.loads((root / kw.MARKER).read_text())
    cfg = kw.KeywordSetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings["config"].items()})
    by_id = {s.id: s.engine for s in kw.plan_speakers(cfg, settings["seed"])}
    return [by_id.get(speaker_of(f), "noise") if "_nohash_" in f else "noise" for f in files]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, help="bundle directory (repeat for several)")
    p.add_argument("--root", default="data/keywords_robust")
    p.add_argument("--split", default="testing", choices=("validation", "testing", "training"))
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--name", default="kws_channels", help="result file name (before the date)")
    p.add_argument("--channels", nargs="+", default=list(CHANNELS), choices=list(CHANNELS))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)  # 1 on the shared 2-core machine: more threads than free cores spin
    root = Path(a.root)
    ds = SpeechCommands(root, subset=a.split, setup="default")
    items = [ds[i] for i in range(len(ds))]
    files = [str(f) for f in ds.paths]
    engines = engines_of(root, files)
    bundles = {m: load_bundle(m) for m in a.model}
    for m, b in bundles.items():
        if list(b.labels) != list(ds.labels):
            raise SystemExit(f"{m}: labels {b.labels} differ from the set's {ds.labels}")
    results: dict = {"root": str(root), "split": a.split, "clips": len(items), "models": {}, "machine": machine()}
    for name in a.channels:
        fn = CHANNELS[name]
        xs = torch.stack([fn(x, torch.Generator().manual_seed(i)) for i, (x, _) in enumerate(items)])
        ys = torch.tensor([y for _, y in items])
        for m, b in bundles.items():
            preds = []
            for s in range(0, len(xs), a.batch):
                out = b.frame_outputs(xs[s:s + a.batch, :, None])
                frames = torch.full((out.shape[0],), out.shape[1])
                preds.append(clip_scores(out, frames, b.config).argmax(-1))
            ok = (torch.cat(preds) == ys).tolist()
            row = results["models"].setdefault(m, {})
            row[name] = {"all": sum(ok) / len(ok)}
            for e in sorted(set(engines)):
                sel = [o for o, en in zip(ok, engines, strict=True) if en == e]
                row[name][e] = sum(sel) / len(sel)
            print(f"{name:20s} {m:40s} " + "  ".join(f"{k} {v:.3f}" for k, v in row[name].items()), flush=True)
    write_result(a.name, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
