"""Pin the word spans of the twenty keywords in recorded game dialogue: ssm_signal/data/dialogue_spans.csv.

Each line of :mod:`ssm_signal.data.dialogue`'s sources is force-aligned against its own text with pocketsphinx
(the en-us acoustic model and CMU dictionary that ship in its wheel), and every Speech Commands word in it gets a
row: source, clip, speaker, word, start_s, end_s (seconds in the line's audio). The real validation set
(``fetch_real_validation.py``) reads the table and never aligns, so pocketsphinx is no dependency of the project:
this script needs it (``pip install pocketsphinx==5.1.1``).

A line is left out, and counted in the summary, when a word of it is not in the dictionary (a name such as
"Evaristo" would be forced onto some stretch of audio and shift its neighbours), when the alignment fails, or when
a keyword's span is shorter than 0.08 s or longer than 1.0 s (a word the alignment squeezed or stretched).

    python benchmarks/align_dialogue.py --cache data/dialogue      # writes the table, prints the summary
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ssm_signal.data import dialogue  # noqa: E402
from ssm_signal.data.speech_commands import CORE_WORDS  # noqa: E402

RATE = 16000
SHORTEST_S, LONGEST_S = 0.08, 1.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default=str(dialogue.DEFAULT_CACHE), help="where the packages are unpacked")
    ap.add_argument("--out", default=str(dialogue.SPANS))
    args = ap.parse_args(argv)
    try:
        from pocketsphinx import Decoder, get_model_path
    except ImportError:
        print("align_dialogue: needs pocketsphinx (pip install pocketsphinx==5.1.1)", file=sys.stderr)
        return 2
    decoder = Decoder(samprate=RATE, loglevel="ERROR")
    vocabulary = {ln.split()[0] for ln in Path(get_model_path("en-us/cmudict-en-us.dict")).read_text().splitlines()
                  if ln.strip()}
    keywords = set(CORE_WORDS)
    rows, dropped = [], collections.Counter()
    for source in sorted(dialogue.PACKAGES):
        folder = dialogue.fetch(source, args.cache)
        for line in dialogue.lines(source, folder):
            ws = dialogue.words(line.text)
            if not keywords & set(ws):
                continue
            if not all(w in vocabulary for w in ws):
                dropped["a word not in the dictionary"] += 1
                continue
            wave = dialogue.read_line(source, folder, line.clip, RATE).numpy()
            pcm = (np.clip(wave, -1, 1) * 32767).astype(np.int16)
            decoder.set_align_text(" ".join(ws))
            decoder.start_utt()
            decoder.process_raw(pcm.tobytes(), full_utt=True)
            decoder.end_utt()
            segs = [s for s in (decoder.seg() or []) if s.word not in ("<s>", "</s>", "<sil>", "[NOISE]")]
            said = [s.word.split("(")[0] for s in segs]
            if said != ws:
                dropped["the alignment failed"] += 1
                continue
            for s in segs:
                word = s.word.split("(")[0]
                if word not in keywords:
                    continue
                start, end = s.start_frame / 100, (s.end_frame + 1) / 100
                if not SHORTEST_S <= end - start <= LONGEST_S:
                    dropped["a keyword span too short or too long"] += 1
                    continue
                rows.append({"source": source, "clip": line.clip, "speaker": line.speaker, "word": word,
                             "start_s": f"{start:.2f}", "end_s": f"{end:.2f}"})
    out = Path(args.out)
    tmp = out.with_suffix(".partial")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["source", "clip", "speaker", "word", "start_s", "end_s"])
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, out)
    summary = {"spans": len(rows), "per_word": dict(collections.Counter(r["word"] for r in rows).most_common()),
               "speakers": {src: len({r["speaker"] for r in rows if r["source"] == src}) for src in dialogue.PACKAGES},
               "dropped": dict(dropped)}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
