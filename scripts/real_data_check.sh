#!/usr/bin/env bash
# Real-data check on Fashion-MNIST: train and compress several (arch, method, epochs[, params]) cells in parallel,
# then print the summary table. Works from a checkout without installing (PYTHONPATH=.), on CPU or GPU.
#
#   scripts/real_data_check.sh OUT_DIR DEVICE DATA_ROOT MAX_MINUTES CELL [CELL ...]
#   CELL = arch:method:epochs[:params.yaml]      e.g. lenet5:bc-ghs:60  lenet5:bc-ghs:60:config/ghs_printed.yaml
#
# Each cell runs `bcrepro train ... --max-minutes MAX_MINUTES` then `bcrepro compress`; logs go to OUT_DIR/NAME.log.
set -uo pipefail
out=$1 device=$2 data_root=$3 max_minutes=$4
shift 4
export PYTHONPATH="${PYTHONPATH:-}:$(pwd)" PYTHONUNBUFFERED=1
mkdir -p "$out"
for cell in "$@"; do
  IFS=: read -r arch method epochs params <<<"$cell"
  name="$arch-$method${params:+-$(basename "$params" .yaml)}"
  (
    python -m bcrepro train --arch "$arch" --method "$method" --dataset fashion_mnist --data-root "$data_root" \
      --seed 0 --epochs "$epochs" --device "$device" --max-minutes "$max_minutes" ${params:+--params "$params"} \
      --out "$out/$name" && python -m bcrepro compress --run "$out/$name" --device "$device"
    echo "exit status $? for $name"
  ) >"$out/$name.log" 2>&1 &
done
wait
python scripts/summarize_runs.py "$out" --json "$out/summary.json"
