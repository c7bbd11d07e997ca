"""What a finished job reports: counts, throughput, accuracy or ROC-AUC; printed, and recorded in MLflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch

from pipelines.score.config import ScoreConfig
from pipelines.score.writer import PartWriter
from ssm_signal.bundle import Bundle


def summarize(df: pd.DataFrame, bundle: Bundle, wall: float, scored_now: int, writer: PartWriter) -> dict[str, Any]:
    ok = df[df["status"] == "ok"]
    s: dict[str, Any] = {
        "model": bundle.name, "model_version": bundle.version, "files": int(len(df)), "ok": int(len(ok)),
        "errors": int((df["status"] == "error").sum()), "scored_this_run": scored_now,
        "error_kinds": df.loc[df["status"] == "error", "error"].str.split(":").str[0].value_counts().to_dict(),
        "wall_s": wall, "audio_s_this_run": writer.seconds,
        "files_per_s": scored_now / wall if wall > 0 else None,
        "audio_s_per_s": writer.seconds / wall if wall > 0 else None,
        # excludes start-up (model load, workers spawning): the rate a long job runs at
        "steady_audio_s_per_s": (writer.seconds_after_first / (writer.last - writer.first)
                                 if writer.first is not None and writer.last > writer.first else None),
    }
    labelled = ok[ok["true_label"].notna()]
    if len(labelled) and bundle.config.head.kind == "classify":
        labels = set(bundle.labels)
        known = labelled[[v in labels for v in labelled["true_label"]]]
        s["accuracy"] = float((known["label"] == known["true_label"]).mean()) if len(known) else None
        s["labelled"] = int(len(known))
        cm = pd.crosstab(known["true_label"], known["label"]).reindex(index=bundle.labels, columns=bundle.labels,
                                                                     fill_value=0)
        s["confusion"] = {"labels": bundle.labels, "matrix": cm.to_numpy().tolist()}
    elif len(labelled) and bundle.config.head.kind == "anomaly":
        y = labelled["true_label"].isin(["1", "anomaly", "True", "true"]).astype(int).to_numpy()
        if 0 < y.sum() < len(y):
            from torchmetrics.functional.classification import binary_auroc

            from pipelines.evaluate.anomaly_metrics import unit_interval

            s["roc_auc"] = float(binary_auroc(unit_interval(torch.tensor(labelled["score"].to_numpy())),
                                              torch.tensor(y)))
    return s


def format_summary(s: dict[str, Any]) -> str:
    lines = [f"scored {s['files']} files: {s['ok']} ok, {s['errors']} errors "
             f"({', '.join(f'{n} {k}' for k, n in s['error_kinds'].items()) or 'none'})"]
    if s.get("audio_s_per_s"):
        lines.append(f"throughput this run: {s['files_per_s']:.1f} files/s, {s['audio_s_per_s']:.1f} s of signal per s")
    if s.get("accuracy") is not None:
        lines.append(f"accuracy: {s['accuracy']:.4f} over {s['labelled']} labelled files")
    if s.get("roc_auc") is not None:
        lines.append(f"ROC-AUC: {s['roc_auc']:.4f}")
    return "\n".join(lines)


def track(cfg: ScoreConfig, bundle: Bundle, summary: dict[str, Any], out: Path) -> None:
    """Record the scoring run in MLflow: model version, input spec, counts, throughput."""
    from pipelines.tracking import experiment_id, tracking_client

    client = tracking_client()
    run = client.create_run(experiment_id("scoring"), run_name=f"score-{bundle.name}")
    rid = run.info.run_id
    for k, v in {"model": bundle.name, "model_version": bundle.version, "model_uri": cfg.model,
                 "input": cfg.input, "output": str(out), "frames": cfg.frames}.items():
        client.log_param(rid, k, v)
    for k in ("files", "ok", "errors", "scored_this_run", "wall_s", "files_per_s", "audio_s_per_s",
              "accuracy", "roc_auc"):
        if summary.get(k) is not None:
            client.log_metric(rid, k, float(summary[k]))
    if cfg.log_output:
        client.log_artifact(rid, str(out))
    client.log_artifact(rid, str(out.with_suffix(".summary.json")))
    client.set_terminated(rid)
