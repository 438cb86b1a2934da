#!/usr/bin/env bash
# The whole training pipeline on a GPU in minutes, from a checkout: `scripts/gpu_pipeline_check.sh [options]`.
# Needs torch, numpy and PyYAML (no MLflow, no Snakemake, no network); see scripts/gpu_pipeline_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHONPATH=. exec python scripts/gpu_pipeline_check.py "$@"
