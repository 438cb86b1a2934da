"""experiments/bc_ablation/bc_ablation.py end to end on synthetic data at toy budgets: every (method, variant)
trained, every rule compressed from the same trained net, one table row each."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "bc_ablation" / "bc_ablation.py"


@pytest.mark.slow
def test_ablation_trains_each_variant_and_compresses_it_under_each_rule(tmp_path):
    out = tmp_path / "ablation"
    argv = [sys.executable, str(SCRIPT), "--arch", "lenet300", "--methods", "bc-gnj",
            "--variants", "constant", "constant-from-dense", "--rules", "auto", "sparsest@0.5", "--epochs", "2",
            "--dense-epochs", "1", "--dataset", "synthetic", "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [json.loads(line) for line in (out / "ablation.jsonl").read_text().splitlines()]
    assert [(r["variant"], r["rule"]) for r in rows] == [("constant", "auto"), ("constant", "sparsest@0.5"),
                                                        ("constant-from-dense", "auto"),
                                                        ("constant-from-dense", "sparsest@0.5")]
    assert all(r["epochs"] == 2 for r in rows)
    run = json.loads((out / "lenet300" / "bc-gnj" / "constant" / "run.json").read_text())
    assert run["params"]["lr_schedule"] == "constant"
    sparsest = json.loads((out / "lenet300" / "bc-gnj" / "constant" / "rules" / "sparsest_at_0.5" /
                           "metrics.json").read_text())["thresholds"]
    assert sparsest["rule"] == "sparsest" and sparsest["max_error_increase"] == 0.5
    assert sparsest["reference_error_pct"] is not None  # the dense reference gave the budget
    assert "| lenet300 | bc-gnj | constant-from-dense | sparsest@0.5 | 2 |" in done.stdout
    assert "epoch    2/2" in (out / "lenet300" / "bc-gnj" / "constant.train.log").read_text()
    # a second call retrains nothing and compresses nothing again
    outputs = sorted(out.rglob("model.pt")) + sorted(out.rglob("metrics.json"))
    stamps = [path.stat().st_mtime_ns for path in outputs]
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert [path.stat().st_mtime_ns for path in outputs] == stamps


@pytest.mark.slow
def test_a_run_stopped_by_its_time_limit_is_compressed_from_its_last_checkpoint(tmp_path):
    out = tmp_path / "ablation"
    argv = [sys.executable, str(SCRIPT), "--arch", "lenet300", "--methods", "bc-ghs",
            "--variants", "constant-clip-forward", "--rules", "sparsest", "--epochs", "3", "--reference", "none",
            "--max-minutes", "0", "--use-checkpoints", "--dataset", "synthetic", "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "training stopped with status 3" in done.stdout
    (row,) = [json.loads(line) for line in (out / "ablation.jsonl").read_text().splitlines()]
    assert row["epochs"] == 1 and row["variant"] == "constant-clip-forward" and row["rule"] == "sparsest"
    run = out / "lenet300" / "bc-ghs" / "constant-clip-forward"
    assert json.loads((run / "run.json").read_text())["params"]["clip_mode"] == "forward"
    metrics = json.loads((run / "epoch1" / "rules" / "sparsest" / "metrics.json").read_text())
    assert metrics["thresholds"]["reference_error_pct"] is None
    assert not (out / "lenet300" / "dense").exists()  # --reference none trains no dense net
    # --compress-only trains nothing more: the same snapshot, a rule added, no frontier
    stamp = (run / "checkpoint.pt").stat().st_mtime_ns
    argv[argv.index("sparsest")] = "valley"
    again = subprocess.run(argv + ["--compress-only", "--frontier"], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert (run / "checkpoint.pt").stat().st_mtime_ns == stamp
    valley = json.loads((run / "epoch1" / "rules" / "valley" / "metrics.json").read_text())
    assert valley["thresholds"]["rule"] == "valley" and valley["frontier"] is None


@pytest.mark.slow
def test_variants_compare_at_an_equal_epoch_from_kept_networks_under_a_stated_reference(tmp_path):
    out = tmp_path / "ablation"
    common = [sys.executable, str(SCRIPT), "--arch", "lenet300", "--methods", "bc-gnj", "--variants", "constant",
              "--rules", "sparsest", "--dataset", "synthetic", "--out", str(out)]
    done = subprocess.run(common + ["--epochs", "2", "--snapshot-epochs", "1", "--reference", "none", "--frontier"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    run = out / "lenet300" / "bc-gnj" / "constant"
    assert len(json.loads((run / "epoch1" / "history.json").read_text())) == 1
    done = subprocess.run(common + ["--compress-only", "--at-epoch", "1", "--reference-error", "12.5", "--frontier"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    row = json.loads((out / "ablation.jsonl").read_text().splitlines()[-1])
    assert row["epochs"] == 1  # the network kept after epoch 1, not the 2-epoch run
    thresholds = json.loads((run / "epoch1" / "rules" / "sparsest" / "metrics.json").read_text())["thresholds"]
    assert thresholds["reference_error_pct"] == 12.5
    assert not (out / "lenet300" / "dense").exists()
