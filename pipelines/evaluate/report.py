"""The evaluation's outputs: summary.json, det.parquet (every swept point) and det.png (the DET curves)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .metrics import Outcome


def det_rows(outcomes: dict[tuple[int, float], list[Outcome]], set_names: list[str], labels: list[str],
             groups: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per (positive set, window, threshold, keyword or "all", negatives group or "all")."""
    rows = []
    for (w, theta), per_set in outcomes.items():
        for name, o in zip(set_names, per_set, strict=True):
            frr = o.frr
            for g, mask in groups.items():
                h = float(o.hours[mask].sum())
                fa_k = o.fa_negative[mask].sum(0)
                rows.append((name, w, theta, "all", g, o.frr_pooled, int(o.clips.sum()), int(o.detected.sum()),
                             int(fa_k.sum()), fa_k.sum() / h if h else math.nan))
                if g == "all":
                    for k, lb in enumerate(labels):
                        rows.append((name, w, theta, lb, g, float(frr[k]), int(o.clips[k]), int(o.detected[k]),
                                     int(fa_k[k]), fa_k[k] / h if h else math.nan))
    return pd.DataFrame(rows, columns=["positives", "window", "threshold", "keyword", "negatives", "frr", "clips",
                                       "detected", "false_accepts", "fa_per_hour"])


def point(o: Outcome, labels: list[str]) -> dict:
    """What the positive streams gave at one setting, for the JSON summary."""
    d = o.delay[np.isfinite(o.delay)]
    return {
        "frr": _num(o.frr_pooled),
        "clips": int(o.clips.sum()),
        "detected": int(o.detected.sum()),
        "frr_per_keyword": {lb: _num(v) for lb, v in zip(labels, o.frr, strict=True) if o.clips[labels.index(lb)]},
        "delay_s": {"median": _num(np.median(d)) if len(d) else None, "p95": _num(np.percentile(d, 95)) if len(d) else None},
        "false_accepts_on_positive_streams": int(o.fa_positive.sum()),
        "nonkeyword_clips": {"clips": o.nonkeyword_clips, "fired": o.nonkeyword_fired,
                             "false_accepts": int(o.fa_nonkeyword.sum())},
    }


def negatives_point(o: Outcome, labels: list[str], names: list[str], groups: list[str]) -> dict:
    """What the negative sources gave at one setting: FA/h pooled, per source and per group, labels fired."""
    h = o.hours
    fa_src = o.fa_negative.sum(1)
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    return {
        "hours": float(h.sum()),
        "false_accepts": int(o.fa_negative.sum()),
        "fa_per_hour": _num(o.fa_per_hour_pooled),
        "labels_fired": {lb: int(n) for lb, n in zip(labels, o.fa_negative.sum(0), strict=True) if n},
        "per_source": [{"source": n, "group": g, "hours": float(hh), "false_accepts": int(f),
                        "fa_per_hour": _num(f / hh) if hh else None}
                       for n, g, hh, f in zip(names, groups, h, fa_src, strict=True)],
        "per_group": {g: {"hours": float(h[ix].sum()), "false_accepts": int(fa_src[ix].sum()),
                          "fa_per_hour": _num(fa_src[ix].sum() / h[ix].sum()) if h[ix].sum() else None}
                      for g, ix in by_group.items()},
    }


def _num(v) -> float | None:
    v = float(v)
    return None if math.isnan(v) else round(v, 6)


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_default) + "\n")
    tmp.replace(path)


def _default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def plot_det(df: pd.DataFrame, configured: dict[str, tuple[float, float]], window: int, path: Path,
             title: str) -> None:
    """DET curves (FRR against FA/h, log scale; 0 FA/h drawn at half the resolution), one panel per positive
    set: at the bundle's smoothing ``window``, against every negatives group on its own and against all of
    them pooled (bold); the pooled curve of the other windows dashed; the bundle's operating point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(df["positives"]))
    fig, axes = plt.subplots(1, len(sets), figsize=(6 * len(sets), 4.8), squeeze=False)
    for ax, name in zip(axes[0], sets, strict=True):
        sub = df[(df["positives"] == name) & (df["keyword"] == "all")]
        floor = _floor(sub)
        for g, grp in sub[sub["window"] == window].groupby("negatives", sort=False):
            grp = grp.sort_values("threshold")
            pooled = g == "all"
            ax.plot(np.maximum(grp["fa_per_hour"], floor), grp["frr"], lw=2.2 if pooled else 1.1,
                    color="k" if pooled else None, label=f"{'all negatives' if pooled else g} (smoothing {window})")
        for w, grp in sub[(sub["negatives"] == "all") & (sub["window"] != window)].groupby("window"):
            grp = grp.sort_values("threshold")
            ax.plot(np.maximum(grp["fa_per_hour"], floor), grp["frr"], "k--", lw=0.8, alpha=0.5,
                    label=f"all negatives (smoothing {w})")
        if name in configured:
            fa, frr = configured[name]
            ax.plot([max(fa, floor)], [frr], "r*", ms=13, label="bundle's thresholds, all negatives")
        for target in (0.5, 0.1):
            ax.axvline(target, color="r", ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("false accepts per hour")
        ax.set_ylabel("false-reject rate")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"positives: {name}", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6.5, loc="lower left")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _floor(sub: pd.DataFrame) -> float:
    """Half of one false accept per the negatives' hours: where a point with none is drawn on a log axis."""
    pos = sub[(sub["false_accepts"] > 0) & (sub["fa_per_hour"] > 0)]
    if pos.empty:
        return 0.01
    per_fa = float((pos["fa_per_hour"] / pos["false_accepts"]).min())
    return per_fa / 2


def format_summary(s: dict) -> str:
    """The summary as a few lines for the terminal."""
    lines = [f"model {s['model']['name']} {s['model']['version']}"]
    c = s.get("calibration")
    if c and s.get("kind") == "anomaly":
        lines.append(f"calibrated at {c['target_fa_per_hour']} false alarms/h on {c['normal_hours']:.2f} h of "
                     f"{c.get('split', 'train')} series: threshold {c['threshold']:.4g}, new version {c['version']} in "
                     f"{c['path']}")
    elif c:
        lines.append(f"calibrated at {c['target_fa_per_hour']} FA/h on {c['negative_hours']:.2f} h of negatives and "
                     f"{c['positive_clips']} clips: smoothing {c['chosen']['window']} frames, new version "
                     f"{c['version']} in {c['path']}")
    for name, st in s["sets"].items():
        p = st["at_bundle_thresholds"]
        if s.get("kind") == "anomaly":
            lines.append(f"{name}: precision {_fmt(p['precision'])}, recall {_fmt(p['recall'])} "
                         f"({p['detected']}/{p['intervals']} anomalies), {_fmt(p['false_alarms_per_hour'])} false "
                         f"alarms/h, delay median {_fmt(p['delay_s']['median'])} s")
            ucr = st["ucr_rule"]
            lines.append(f"  point ROC-AUC {_fmt(st['roc_auc'])}, PR-AUC {_fmt(st['pr_auc'])}; UCR rule (top score "
                         f"within 100 samples of the anomaly) {ucr['solved']}/{ucr['series']} series")
            if st.get("recall_by_kind"):
                lines.append("  recall by kind: " + ", ".join(
                    f"{k} {v['detected']}/{v['intervals']}" for k, v in st["recall_by_kind"].items()))
            continue
        n = s["negatives"]["at_bundle_thresholds"]
        groups = ", ".join(f"{g} {_fmt(v['fa_per_hour'])}" for g, v in n["per_group"].items())
        lines.append(f"{name}: FRR {_fmt(p['frr'])} ({p['clips'] - p['detected']} of {p['clips']} missed), "
                     f"{_fmt(n['fa_per_hour'])} FA/h over {n['hours']:.2f} h ({groups}), delay median "
                     f"{_fmt(p['delay_s']['median'])} s, p95 {_fmt(p['delay_s']['p95'])} s")
        for target, ops in st["operating_points"].items():
            parts = [("all negatives", ops["pooled"])] + list(ops["per_negatives"].items())
            lines.append(f"  FRR at <= {target} FA/h: " + "; ".join(
                f"{g} {'not reached' if op is None else _fmt(op['frr'])}" for g, op in parts))
    if s["skipped"]["count"]:
        lines.append(f"skipped {s['skipped']['count']}: {s['skipped']['by_reason']}")
    t = s["timing"]
    lines.append(f"{t['audio_hours']:.2f} h streamed in {t['seconds']:.0f} s")
    return "\n".join(lines)


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3g}"
