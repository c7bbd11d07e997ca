"""aeon's anomaly detectors on given series: the baseline half of ``bench_sensor_anomaly.py``.

    <bench-venv>/bin/python benchmarks/aeon_baselines.py JOBS.json STREAMS.npz SCORES.npz

Runs in the benchmark's own virtualenv (``make bench-sensor-env``: aeon, pyod, stumpy), never in the
project's: it imports numpy and aeon only, and the project never imports it. ``STREAMS.npz`` holds ``train``
(L, C), the normal series the detectors are fitted on, and ``series_<i>`` (L_i, C), the series to score;
``JOBS.json`` a list of {"key", "detector", "params", "mode"}, mode being

- ``semi``: ``fit`` on the training series, ``predict`` each series (aeon's semi-supervised use);
- ``unsupervised``: ``fit_predict`` each series on its own;
- ``seeded``: ``predict`` the end of the training series (its last ``seed`` samples) followed by the series,
  keeping the series' part (LeftSTAMPi: its left matrix profile starts from normal data, ``n_init_train`` = the
  seed's length).

A univariate-only detector given several channels is a failed job. Writes ``<key>/<i>`` (L_i,) float64
per job and series (undefined values, counted in ``<key>/<i>/undefined``, take the series' lowest score), and
``<key>/seconds``: the wall time the job took, or ``<key>/error`` where the detector failed on these data.
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import numpy as np


def detector(name: str, params: dict):
    from aeon.utils.discovery import all_estimators

    found = dict(all_estimators("series-anomaly-detector"))
    if name not in found:
        raise SystemExit(f"aeon has no series anomaly detector {name!r}; it has {sorted(found)}")
    return found[name](**params)


def score(job: dict, train: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(L, C) -> (L,) scores of one job on one series."""
    make = lambda **extra: detector(job["detector"], {**job["params"], **extra})  # noqa: E731
    if x.shape[1] > 1 and not make().get_tag("capability:multivariate"):
        raise ValueError(f"{job['detector']} takes one channel, these series have {x.shape[1]}")
    if job["mode"] == "semi":
        d = make()
        d.fit(train, axis=0)
        return np.asarray(d.predict(x, axis=0), np.float64)
    if job["mode"] == "seeded":
        seed = train[-job.get("seed", len(train)):]
        d = make(n_init_train=len(seed))
        return np.asarray(d.predict(np.concatenate([seed, x]), axis=0), np.float64)[len(seed):]
    return np.asarray(make().fit_predict(x, axis=0), np.float64)


def main(argv: list[str]) -> int:
    jobs_path, streams_path, out_path = argv
    jobs = json.loads(open(jobs_path).read())
    data = np.load(streams_path)
    train = data["train"].astype(np.float64)
    series = [data[f"series_{i}"].astype(np.float64) for i in range(sum(k.startswith("series_") for k in data))]
    out = {}
    warnings.filterwarnings("ignore")
    for job in jobs:
        t0 = time.perf_counter()
        try:
            scored = [score(job, train, x) for x in series]
        except Exception as e:  # a detector that cannot run on these data (pyod's CBLOF without a cluster split)
            out[f"{job['key']}/error"] = np.array(f"{type(e).__name__}: {e}")
            print(f"{job['key']}: failed: {type(e).__name__}: {e}", flush=True)
            continue
        for i, (x, s) in enumerate(zip(series, scored, strict=True)):
            if s.shape != (len(x),):
                raise SystemExit(f"{job['key']}: {s.shape} scores for a series of {len(x)} points")
            bad = ~np.isfinite(s)  # some detectors leave the edges undefined: counted, scored as the lowest
            out[f"{job['key']}/{i}"] = np.where(bad, np.min(s[~bad]) if (~bad).any() else 0.0, s)
            out[f"{job['key']}/{i}/undefined"] = np.array(int(bad.sum()))
        out[f"{job['key']}/seconds"] = np.array(time.perf_counter() - t0)
        print(f"{job['key']}: {out[job['key'] + '/seconds']:.1f} s", flush=True)
    np.savez(out_path, **out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
