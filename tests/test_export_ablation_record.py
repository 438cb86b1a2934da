"""experiments/bc_ablation/export_ablation_record.py: the exported table holds every row of ablation.jsonl, not only
those of the ablation script's last invocation (which is what its own ablation.md holds)."""
import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "bc_ablation" / "export_ablation_record.py"


def load_script():
    spec = importlib.util.spec_from_file_location("export_ablation_record", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(variant, rate):
    return {"arch": "lenet5", "method": "bc-ghs", "variant": variant, "rule": "sparsest", "epochs": 100,
            "error_unpruned_pct": 0.8, "error_pruned_pct": 0.9, "error_rounded_pct": 1.0, "architecture": "9-16-234-36",
            "kept_weights": [1, 2, 3, 4], "compression_pruning": rate, "compression_precision": 4 * rate,
            "validation_error_pct": 1.1}


def test_the_table_is_rebuilt_from_every_row_of_every_invocation(tmp_path):
    ablation, out = tmp_path / "ablation", tmp_path / "record"
    ablation.mkdir()
    first, second = row("constant", 34.1), row("constant-clip-forward", 15.5)
    (ablation / "ablation.jsonl").write_text(json.dumps(first) + "\n" + json.dumps(second) + "\n")
    (ablation / "ablation.md").write_text("| only the last invocation's rows |\n")
    script = load_script()
    written = script.export(ablation, out)
    table = (out / "ablation.md").read_text()
    assert "| lenet5 | bc-ghs | constant | sparsest | 100 |" in table and "| 34.1x | 136.4x |" in table
    assert "| constant-clip-forward | sparsest |" in table and "| 15.5x | 62.0x |" in table
    assert "only the last invocation" not in table
    assert (out / "ablation.jsonl").read_text() == (ablation / "ablation.jsonl").read_text()
    assert {p.name for p in written} == {"ablation.jsonl", "ablation.md"}


def _net(folder: Path, kl_scale: float, rng) -> None:
    """A trained net's files as the ablation leaves them: history with per-layer KL, one rule with its posterior."""
    import numpy as np

    folder.mkdir(parents=True)
    history = [{"epoch": e, "train_error_pct": 2.0, "test_error_pct": 1.0, "kl_weight": 1.0, "groups_kept": [],
                "kl_layers": [[kl_scale * 1e3 / e, 0.0], [kl_scale * 1e5 / e, 400.0]]} for e in (1, 2, 3)]
    (folder / "history.json").write_text(json.dumps(history))
    (folder / "run.json").write_text(json.dumps({"arch": "lenet5", "method": "bc-ghs", "seed": 0}))
    rule = folder / "rules" / "sparsest"
    rule.mkdir(parents=True)
    (rule / "metrics.json").write_text(json.dumps({"arch": "lenet5", "method": "bc-ghs", "seed": 0}))
    np.savez(rule / "posterior.npz", statistic_0=rng.normal(3, 1, 20), threshold_0=np.array(3.0),
             statistic_1=rng.normal(4, 2, 800), threshold_1=np.array(np.nan))


def test_variants_are_drawn_beside_the_records_default(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    ablation, out, cells = tmp_path / "ablation", tmp_path / "record", tmp_path / "cells"
    _net(ablation / "lenet5" / "bc-ghs" / "clip-first-layer" / "epoch100", 1.0, rng)
    _net(ablation / "lenet5" / "bc-ghs" / "clip-fc1-at-1" / "epoch100", 2.0, rng)
    (cells / "bc-ghs" / "seed0").mkdir(parents=True)
    np.savez(cells / "bc-ghs" / "seed0" / "posterior.npz", statistic_0=rng.normal(3, 1, 20),
             threshold_0=np.array(2.5), statistic_1=rng.normal(5, 2, 800), threshold_1=np.array(4.0))
    script = load_script()
    written = script.export(ablation, out) + script.compare(ablation, out, cells)
    names = sorted(p.relative_to(out).as_posix() for p in written if p.suffix in (".png", ".npz"))
    assert "bc-ghs_kl_by_layer.png" in names and "bc-ghs_group_statistics.png" in names
    assert "lenet5/bc-ghs/clip-first-layer/epoch100/kl_layers.png" in names
    assert "lenet5/bc-ghs/clip-fc1-at-1/epoch100/rules/sparsest/posterior.npz" in names
