"""The ``ssm-signal`` command.

    ssm-signal fit --config configs/kws_default.yaml [--trainer.max_epochs 3 ...]
    ssm-signal generate-keywords [--root data/keywords] [--seed 0]
    ssm-signal --help
"""

from __future__ import annotations

import argparse
import logging
import sys

COMMANDS = {
    "fit": "train a model from a YAML config (LightningCLI; `ssm-signal fit --help`)",
    "generate-keywords": "generate the embedded keyword set with espeak-ng",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger("ssm_signal").addHandler(handler)  # Lightning configures its own loggers
    logging.getLogger("ssm_signal").setLevel(logging.INFO)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: ssm-signal COMMAND [options]\n\ncommands:")
        for name, doc in COMMANDS.items():
            print(f"  {name:<18} {doc}")
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "fit":
        from pipelines.train import run_fit

        run_fit(rest)
        return 0
    if cmd == "generate-keywords":
        from ssm_signal.data.keywords import generate_keyword_set

        p = argparse.ArgumentParser(prog="ssm-signal generate-keywords")
        p.add_argument("--root", default="data/keywords")
        p.add_argument("--seed", type=int, default=0)
        a = p.parse_args(rest)
        generate_keyword_set(a.root, seed=a.seed)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
