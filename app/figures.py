"""The replay view's figure: a sensor series, the model's score (or class posteriors), the threshold, the
labelled anomalies and the alarms, drawn from a :class:`~ssm_signal.streaming.replay.ReplayView`.

Drawn on matplotlib's Agg canvas through ``Figure`` directly (never pyplot: no GUI backend, no global state
shared between the demo's sessions). The docs' plot of a real stream is this figure too
(``benchmarks/bench_sensor_anomaly.py --plot``).
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from ssm_signal.streaming.replay import ReplayView

LABELLED = "#f4a6a6"
ALARM = "#c00000"
SCORE_FLOOR = 1e-2  # anomaly scores are drawn on a log axis; a stream's first frames score 0


def replay_figure(v: ReplayView, width: float = 11.0, height: float = 5.2) -> Figure:
    """Two panels over the series' whole duration: the channels, then the smoothed score (anomaly models, log
    axis) or posteriors (classifiers) with the threshold. Labelled anomalies shaded, alarms marked."""
    fig = Figure(figsize=(width, height), dpi=90)
    # fixed margins (tight_layout would measure every text on every redraw of a replay that is playing)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"left": 0.07, "right": 0.99, "top": 0.93,
                                                               "bottom": 0.1, "hspace": 0.08})
    for ax in (top, bottom):
        for a, b in v.labelled:
            ax.axvspan(a, b, color=LABELLED, alpha=0.6, lw=0)
        ax.grid(alpha=0.25)
    if len(v.times):
        lines = top.plot(v.times, v.x, lw=0.7)
        if len(v.channels) <= 10:
            top.legend(lines, v.channels, fontsize=7, ncol=min(len(v.channels), 5), loc="upper right")
    top.set_ylabel("channels")
    top.set_title(f"{v.name} ({v.speed:g}x real time)", fontsize=10)
    live = v.live
    if v.kind == "anomaly":
        if len(live.times):
            bottom.plot(live.times, np.maximum(live.values[:, 0], SCORE_FLOOR), lw=0.9, color="#1f4e9c",
                        label="score (smoothed)")
        bottom.set_yscale("log")
        bottom.axhline(float(v.threshold), color="k", ls="--", lw=0.9, label=f"threshold {float(v.threshold):.3g}")
        bottom.set_ylabel("anomaly score")
        alarm_y = [max(e.score, SCORE_FLOOR) for e in v.alarms]
    else:
        for i, label in enumerate(live.curve_labels):
            if len(live.times):
                bottom.plot(live.times, live.values[:, i], lw=0.9, label=label)
        thresholds = v.threshold.values() if isinstance(v.threshold, dict) else [v.threshold]
        bottom.axhline(min(thresholds), color="k", ls="--", lw=0.9, label="threshold")
        bottom.set_ylim(-0.02, 1.02)
        bottom.set_ylabel("posterior (smoothed)")
        alarm_y = [e.score for e in v.alarms]
    if v.alarms:
        t = [e.time_s for e in v.alarms]
        bottom.plot(t, alarm_y, "v", color=ALARM, ms=7, label=f"alarms ({len(v.alarms)})")
        top.vlines(t, 0, 1, transform=top.get_xaxis_transform(), color=ALARM, lw=0.6, alpha=0.5)
    if v.labelled:
        bottom.axvspan(0, 0, color=LABELLED, alpha=0.6, label="labelled anomaly")
    bottom.legend(fontsize=7, loc="upper left", ncol=4)
    bottom.set_xlabel("stream time (s)")
    bottom.set_xlim(0, max(v.total_s, 1e-9))
    return fig
