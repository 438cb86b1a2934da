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
