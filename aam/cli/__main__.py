"""``aam <command>`` dispatcher (also ``python -m aam.cli <command>``, as torchrun uses)."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "simulate": ("aam.cli.simulate",
                 "Write the embedded simulated dataset (table, metadata, tree)."),
    "prepare": ("aam.cli.prepare", "Turn a BIOM/qza table + metadata + tree into prepared files."),
    "split": ("aam.cli.split", "Write train/val/test sample lists (holdout or k-fold)."),
    "pretrain": ("aam.cli.pretrain",
                 "Self-supervised pretraining on sample distances + masked nucleotides."),
    "train": ("aam.cli.train", "Fine-tune on a sample target with categorical fusion."),
    "predict": ("aam.cli.predict", "Predict a target for samples with a trained model."),
    "explain": ("aam.cli.explain", "Which ASVs drive a model's predictions (attributions)."),
    "rf-baseline": ("aam.cli.rf_baseline", "Random-forest baseline on the same splits."),
    "linear-baseline": ("aam.cli.linear", "Ridge / L2-logistic baseline on CLR abundances."),
    "compare": ("aam.cli.compare", "Compare every model against the forest and linear baselines."),
}


def _usage() -> str:
    lines = ["usage: aam <command> [options]", "", "commands:"]
    lines += [f"  {name:<16} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "Run 'aam <command> --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from aam import __version__

        print(f"aam {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"aam: unknown command '{command}'. Choose one of: {', '.join(COMMANDS)}.",
              file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
