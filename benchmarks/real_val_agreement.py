"""Does the real-voice validation set rank keyword bundles as the real report set does?

    python benchmarks/real_val_agreement.py --pair NAME VAL_EVAL_DIR REPORT_EVAL_DIR [--pair ...] --out FILE.json

Each pair names one bundle and two `ssm-signal evaluate` output folders made at the SAME thresholds: one streamed
over `data/real_val` (benchmarks/fetch_real_validation.py), one over the report set `data/real` (``make evaluate``).
For each bundle it reads the FRR on real positives and the false accepts per hour on real speech of each folder,
and over the bundles the Spearman rank correlation of the two sets' figures: a validation set is worth choosing on
only as far as it orders recipes as people do. Nothing is chosen here; this measures the instrument.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import platform
import sys
from pathlib import Path

import numpy as np

SPEECH = {"val": "data/real_val/negatives/speech", "report": "data/real/negatives/speech"}
POSITIVES = {"val": "data/real_val/positives", "report": "data/real/positives"}


def ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given their mean rank."""
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        r[x == v] = r[x == v].mean()
    return r


def spearman(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Spearman's rho and its exact two-sided permutation p-value (every ordering of b; n <= 8)."""
    ra, rb = ranks(a), ranks(b)
    rho = float(np.corrcoef(ra, rb)[0, 1])
    perms = [float(np.corrcoef(ra, rb[list(p)])[0, 1]) for p in itertools.permutations(range(len(b)))]
    p = float(np.mean(np.abs(perms) >= abs(rho) - 1e-12))
    return rho, p


def figures(eval_dir: Path, which: str) -> dict:
    """FRR on the real positives and FA/h on real speech at the bundle's thresholds, from summary.json."""
    s = json.loads((eval_dir / "summary.json").read_text())
    pos = s["sets"][POSITIVES[which]]["at_bundle_thresholds"]
    sources = [p for p in s["negatives"]["at_bundle_thresholds"]["per_source"] if p["group"] == SPEECH[which]]
    hours = sum(p["hours"] for p in sources)
    fas = sum(p["false_accepts"] for p in sources)
    return {"frr": pos["frr"], "detected": pos["detected"], "clips": pos["clips"], "speech_hours": round(hours, 3),
            "false_accepts": fas, "fa_per_hour": round(fas / hours, 2), "model_version": s["model"]["version"]}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pair", nargs=3, action="append", required=True, metavar=("NAME", "VAL_DIR", "REPORT_DIR"))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    rows = []
    for name, val_dir, report_dir in args.pair:
        try:
            v, r = figures(Path(val_dir), "val"), figures(Path(report_dir), "report")
        except (OSError, ValueError, KeyError) as e:
            print(f"error: {name}: not an evaluation of the real validation and report sets "
                  f"({type(e).__name__}: {e})", file=sys.stderr)  # fmt: skip
            return 2
        if v["model_version"] != r["model_version"]:
            print(f"error: {name}: the two folders come from different bundle versions "
                  f"({v['model_version']} and {r['model_version']}): not the same thresholds", file=sys.stderr)  # fmt: skip
            return 2
        rows.append({"bundle": name, "val": v, "report": r})
    if len(rows) > 8:
        print("error: the exact permutation test takes at most 8 bundles", file=sys.stderr)
        return 2
    agreement = {}
    for key in ("frr", "fa_per_hour"):
        a = np.array([row["val"][key] for row in rows])
        b = np.array([row["report"][key] for row in rows])
        rho, p = spearman(a, b)
        agreement[key] = {"spearman": round(float(rho), 3), "p_value": round(float(p), 4), "bundles": len(rows)}
    doc = {"what": __doc__.split("\n\n")[0], "date": dt.date.today().isoformat(), "machine": platform.node(),
           "rows": rows, "agreement": agreement}  # fmt: skip
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    for row in rows:
        v, r = row["val"], row["report"]
        print(f"{row['bundle']:14s} val FRR {v['frr']:.3f} FA/h {v['fa_per_hour']:5.1f} | "
              f"report FRR {r['frr']:.3f} FA/h {r['fa_per_hour']:5.1f}")  # fmt: skip
    for key, a in agreement.items():
        print(f"Spearman ({key}): {a['spearman']:+.3f} (p {a['p_value']:.3f}, {a['bundles']} bundles)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
