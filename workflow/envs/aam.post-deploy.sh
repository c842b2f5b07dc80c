#!/usr/bin/env bash
# Runs once inside each new conda environment made from aam.yaml (snakemake --use-conda /
# --software-deployment-method conda): installs the aam package itself, which is on no package
# index yet, from this repository. AAM_SOURCE is set by workflow/rules/common.smk to the
# repository root (the folder above workflow/); the install is editable, so the rules run the
# repository's current code. Dependencies come from aam.yaml, so pip installs nothing else.
set -euo pipefail
source="${AAM_SOURCE:?AAM_SOURCE is not set: run snakemake on this repository's workflow/Snakefile}"
python -m pip install --no-deps --no-build-isolation --editable "$source"
aam --version
