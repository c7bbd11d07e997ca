"""The training run's figures: the confusion matrix and the learning curves, as matplotlib figures.

Drawn on matplotlib's Agg canvas through ``Figure`` directly, never pyplot, so no GUI backend is
touched; :func:`pipelines.tracking.log_figures` logs them to the run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure


def confusion_figure(confusion: np.ndarray, labels: Sequence[str] | None = None) -> Figure:
    """Confusion matrix (rows: true label, columns: predicted), coloured by row share, annotated with counts.

    confusion: (K, K) non-negative counts; labels: K names (None: class indices).
    """
    cm = np.asarray(confusion)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] == 0:
        raise ValueError(f"confusion matrix must be square (K, K), got shape {cm.shape}")
    if not np.isfinite(cm).all() or (cm < 0).any():
        raise ValueError("confusion matrix must hold finite non-negative counts")
    k = cm.shape[0]
    names = [str(i) for i in range(k)] if labels is None else [str(x) for x in labels]
    if len(names) != k:
        raise ValueError(f"{len(names)} labels for a {k}x{k} confusion matrix")
    rows = cm.sum(1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    side = min(16.0, 2.5 + 0.45 * k)
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true label")
    ax.set_xticks(range(k), names, rotation=45 if k > 4 else 0, ha="right" if k > 4 else "center")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    total = cm.sum()
    acc = float(np.trace(cm) / total) if total > 0 else float("nan")
    ax.set_title(f"confusion matrix: {int(total)} clips, accuracy {acc:.3f}")
    if k <= 25:  # counts stay legible up to about this many classes
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{cm[i, j]:g}", ha="center", va="center", fontsize=8,
                        color="white" if share[i, j] > 0.5 else "black")
    return fig


def curves_figure(curves: Mapping[str, Sequence[float]]) -> Figure | None:
    """Learning curves: losses on one panel, accuracies/AUROCs on another. None when there is nothing to plot.

    curves: metric name -> one value per validation epoch (``SignalTask.history``); an optional ``epoch``
    list gives the x positions (otherwise validation rounds 1, 2, ...).
    """
    from matplotlib.ticker import MaxNLocator

    series = {k: [float(v) for v in vals] for k, vals in curves.items() if k != "epoch" and len(vals) > 0}
    if not series:
        return None
    epochs = list(curves.get("epoch") or [])
    rounds = max(len(v) for v in series.values())
    if len(epochs) < rounds:
        epochs = []
    losses = {k: v for k, v in series.items() if "loss" in k}
    scores = {k: v for k, v in series.items() if k not in losses}
    panels = [(p, t) for p, t in ((losses, "loss"), (scores, "score")) if p]
    fig = Figure(figsize=(5.0 * len(panels), 3.8), layout="constrained")
    fig.suptitle("learning curves")
    for n, (panel, title) in enumerate(panels, 1):
        ax = fig.add_subplot(1, len(panels), n)
        for name, vals in sorted(panel.items()):
            # a series that started late (train_loss is missing before the first logged step) ends with the others
            x = epochs[-len(vals):] if epochs else list(range(rounds - len(vals) + 1, rounds + 1))
            ax.plot(x, vals, marker="o", markersize=3, label=name)
        if title == "score" and all(0.0 <= v <= 1.0 for vals in panel.values() for v in vals):
            ax.set_ylim(-0.02, 1.02)  # accuracies and AUROCs on their full scale
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch" if epochs else "validation round")
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
        ax.legend()
    return fig
