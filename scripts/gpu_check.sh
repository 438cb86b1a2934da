#!/usr/bin/env bash
# The GPU check of issue 5 in one command, from a checkout: `scripts/gpu_check.sh [options of gpu_check.py]`.
# Needs torch and numpy only (no MLflow, no Snakemake, no data set, no network); see scripts/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHONPATH=. exec python scripts/gpu_check.py "$@"
