"""experiments/bc_ablation/export_ablation_record.py: the exported table holds every row of ablation.jsonl, not only
those of the ablation script's last invocation (which is what its own ablation.md holds), and every row the record
already held: a record grows across machines."""
import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "bc_ablation" / "export_ablation_record.py"


def load_script():
    spec = importlib.util.spec_from_file_location("export_ablation_record", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(variant, rate, epochs=100):
    return {"arch": "lenet5", "method": "bc-ghs", "variant": variant, "rule": "sparsest", "epochs": epochs,
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


def test_the_records_rows_stay_and_a_net_measured_again_is_replaced(tmp_path):
    ablation, out = tmp_path / "ablation", tmp_path / "record"
    ablation.mkdir()
    out.mkdir()
    earlier = [row("constant-no-clip", 57.4, 75), row("clip-first-layer", 60.9), row("clip-first-layer", 50.0, 75)]
    (out / "ablation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in earlier))
    # this machine's folder: a new variant, and the default's epoch-75 net compressed again
    new = [row("clip-first-layer-no-warmup", 48.4), row("clip-first-layer", 57.1, 75)]
    (ablation / "ablation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in new))
    load_script().export(ablation, out)
    rows = [json.loads(line) for line in (out / "ablation.jsonl").read_text().splitlines()]
    assert [(r["variant"], r["epochs"], r["compression_pruning"]) for r in rows] == [
        ("constant-no-clip", 75, 57.4), ("clip-first-layer", 100, 60.9), ("clip-first-layer", 75, 57.1),
        ("clip-first-layer-no-warmup", 100, 48.4)]
    table = (out / "ablation.md").read_text()
    assert "| 57.4x |" in table and "| 48.4x |" in table and "| 50.0x |" not in table


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


def test_variants_are_drawn_beside_the_records_default(tmp_path, monkeypatch):
    import numpy as np

    rng = np.random.default_rng(0)
    ablation, out, cells = tmp_path / "ablation", tmp_path / "record", tmp_path / "cells"
    _net(out / "lenet5" / "bc-ghs" / "constant-no-clip" / "epoch75", 1.5, rng)  # exported on another machine
    _net(ablation / "lenet5" / "bc-ghs" / "clip-first-layer" / "epoch100", 1.0, rng)
    _net(ablation / "lenet5" / "bc-ghs" / "clip-fc1-at-1" / "epoch100", 2.0, rng)
    (cells / "bc-ghs" / "seed0").mkdir(parents=True)
    np.savez(cells / "bc-ghs" / "seed0" / "posterior.npz", statistic_0=rng.normal(3, 1, 20),
             threshold_0=np.array(2.5), statistic_1=rng.normal(5, 2, 800), threshold_1=np.array(4.0))
    script = load_script()
    drawn = {}
    real_kl_by_layer = script.figures.kl_by_layer

    def kl_by_layer(histories, path, title):
        drawn[path.name] = sorted(histories)
        return real_kl_by_layer(histories, path, title)

    monkeypatch.setattr(script.figures, "kl_by_layer", kl_by_layer)
    written = script.export(ablation, out) + script.compare(out, cells)
    assert drawn["bc-ghs_kl_by_layer.png"] == ["clip-fc1-at-1/epoch100", "clip-first-layer/epoch100",
                                               "constant-no-clip/epoch75"]
    names = sorted(p.relative_to(out).as_posix() for p in written if p.suffix in (".png", ".npz"))
    assert "bc-ghs_kl_by_layer.png" in names and "bc-ghs_group_statistics.png" in names
    assert "lenet5/bc-ghs/clip-first-layer/epoch100/kl_layers.png" in names
    assert "lenet5/bc-ghs/clip-fc1-at-1/epoch100/rules/sparsest/posterior.npz" in names
