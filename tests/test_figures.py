"""Figures: every figure is written as a readable PNG where it applies and skipped where it does not; the two maps the
authors plot (pixel importance, masked weights) are checked against hand computations (docs/method.md)."""
import json
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from bcrepro.report import figures as figs
from conftest import fake_metrics


# ---- fakes -----------------------------------------------------------------------------------------------------------
@dataclass
class FakePaperResult:
    error_pct: float
    compression_pruning: float
    compression_precision: float | None
    compression_max: float | None


FAKE_PAPER = {
    ("lenet300", "bc-gnj"): FakePaperResult(1.8, 28.6, 58.0, 632.0),
    ("lenet5", "bc-ghs"): FakePaperResult(1.0, 156.0, 419.0, 2050.0),
    ("lenet300", "dc"): FakePaperResult(1.6, 12.0, None, 40.0),  # no run: must not break the figure
}
FAKE_PAPER_ARCHITECTURES = {("lenet300", "bc-gnj"): [278, 98, 13], ("lenet5", "bc-ghs"): [5, 10, 76, 16]}
FAKE_ORIGINAL = {"lenet300": [784, 300, 100], "lenet5": [20, 50, 800, 500]}


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj))


def _history(n_epochs: int, group_totals: list[int], kl: bool) -> list[dict]:
    records = []
    for epoch in range(n_epochs):
        shrink = 1.0 - 0.2 * epoch
        records.append({
            "epoch": epoch, "loss": 1.0 / (epoch + 1), "cross_entropy": 0.5 / (epoch + 1), "kl": 0.1 if kl else 0.0,
            "kl_weight": min(1.0, epoch / 2) if kl else 0.0, "lr": 1e-3, "train_error_pct": 5.0 / (epoch + 1),
            "test_error_pct": 4.0 / (epoch + 1),
            "groups_kept": [[int(total * shrink), total] for total in group_totals], "seconds": 1.0,
        })
        if kl:  # each group layer's KL and its clamp's floor (the first layer's clamp holds 100 weights)
            records[-1]["kl_layers"] = [[1e4 * shrink + 200.0, 113.0 if i == 0 else 0.0]
                                        for i, _ in enumerate(group_totals)]
    return records


def _metrics(arch: str, method: str, architecture: list[int], curve) -> dict:
    return fake_metrics(arch, method, error_pct=1.7, error_pruned_pct=1.8, error_quantized_pct=1.9,
                        compression_pruning=20.0, compression_precision=50.0, compression_max=400.0,
                        architecture=architecture, threshold_curve=curve)


def _lenet300_gnj(run_dir: Path, rng: np.random.Generator) -> None:
    widths = [784, 300, 100, 10]
    thresholds = [0.0, -0.5, math.nan]  # layer 2 keeps every group
    statistics = [rng.normal(0.0, 2.0, size=n) for n in widths[:3]]
    kept = [s < t if not math.isnan(t) else np.ones(s.size, bool) for s, t in zip(statistics, thresholds)]
    kept.append(np.ones(10, bool))
    arrays = {"statistic_label": np.array("log α")}
    for i in range(3):
        arrays[f"statistic_{i}"] = statistics[i]
        arrays[f"threshold_{i}"] = np.array(thresholds[i])
        arrays[f"in_mask_{i}"] = kept[i]
        arrays[f"out_mask_{i}"] = kept[i + 1]
    arrays["weight_0"] = rng.normal(size=(300, 784)).astype(np.float32)
    arrays["weight_1"] = rng.normal(size=(100, 300)).astype(np.float32)
    np.savez(run_dir / "posterior.npz", **arrays)
    curve = [{"layer": i, "thresholds": [-2.0, -1.0, 0.0, 1.0, None], "error_pct": [9.0, 3.0, 1.8, 1.7, 1.6],
              "groups_kept": [10, 50, 200, 400, widths[i]], "chosen": None if i == 2 else thresholds[i]}
             for i in range(3)]
    metrics = _metrics("lenet300", "bc-gnj", [int(k.sum()) for k in kept[:3]], curve)
    metrics["frontier"] = [{"max_error_increase": b, "validation_error_pct": 1.6 + b, "test_error_pct": 1.7 + b,
                            "compression_pruning": 5.0 * (1 + 4 * b), "kept_weights": [1, 1, 1],
                            "architecture": [1, 1, 1]} for b in (0.0, 0.1, 0.5, 1.0)]
    _write_json(run_dir / "metrics.json", metrics)
    _write_json(run_dir / "history.json", _history(4, widths[:3], kl=True))


def _lenet5_ghs(run_dir: Path, rng: np.random.Generator) -> None:
    # conv 1->20, conv 20->50, linear 800->500, linear 500->10; groups: filters of a conv, inputs of a linear layer
    group_sizes = [20, 50, 800, 500]
    in_sizes, out_sizes = [1, 20, 800, 500], [20, 50, 500, 10]
    arrays = {"statistic_label": np.array("−E[log z²]")}
    for i in range(4):
        arrays[f"statistic_{i}"] = rng.normal(size=group_sizes[i])
        arrays[f"threshold_{i}"] = np.array(0.5)
        arrays[f"in_mask_{i}"] = np.ones(in_sizes[i], bool)
        arrays[f"out_mask_{i}"] = np.ones(out_sizes[i], bool)
    arrays["weight_0"] = rng.normal(size=(20, 1, 5, 5)).astype(np.float32)
    arrays["weight_1"] = rng.normal(size=(50, 20, 5, 5)).astype(np.float32)
    np.savez(run_dir / "posterior.npz", **arrays)
    _write_json(run_dir / "metrics.json", _metrics("lenet5", "bc-ghs", [6, 11, 80, 15], None))
    _write_json(run_dir / "history.json", _history(3, group_sizes, kl=True))


def _dense(run_dir: Path) -> None:
    _write_json(run_dir / "metrics.json", _metrics("lenet300", "dense", [784, 300, 100], None))
    _write_json(run_dir / "history.json", _history(3, [], kl=False))


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory) -> Path:
    """results/runs-like tree: lenet300/bc-gnj/seed0, lenet5/bc-ghs/seed0, lenet300/dense/seed0."""
    root = tmp_path_factory.mktemp("runs")
    rng = np.random.default_rng(0)
    makers = {("lenet300", "bc-gnj"): lambda d: _lenet300_gnj(d, rng),
              ("lenet5", "bc-ghs"): lambda d: _lenet5_ghs(d, rng),
              ("lenet300", "dense"): _dense}
    for (arch, method), make in makers.items():
        run_dir = root / arch / method / "seed0"
        run_dir.mkdir(parents=True)
        make(run_dir)
    _write_json(root / "lenet5" / "bc-ghs" / "seed0" / "speed.json", SPEED_RECORDS)
    return root


# lenet5/bc-ghs/seed0/speed.json: slim 4x faster at batch 1, 10x at 64; 20x fewer multiply-adds
SPEED_RECORDS = [
    {"variant": v, "device": "cpu", "batch": b, "median_ms": ms, "iqr_ms": 0.1, "macs_per_example": macs}
    for b, times in ((1, (2.0, 2.1, 0.5)), (64, (50.0, 51.0, 5.0)))
    for v, ms, macs in zip(("original", "masked", "slim"), times, (2_000_000, 2_000_000, 100_000))
]


def _runs_frame() -> pd.DataFrame:
    rows = [
        ("lenet300", "bc-gnj", 0, 1.8, 27.0, 60.0, [278, 98, 13]),
        ("lenet300", "bc-gnj", 1, 1.9, 30.0, 55.0, "280-100-14"),
        ("lenet300", "dense", 0, 1.6, 1.0, None, "784-300-100"),
        ("lenet5", "bc-ghs", 0, 1.0, 150.0, 400.0, [5, 10, 76, 16]),
        ("lenet5", "bc-ghs", 1, 1.1, 160.0, None, [6, 11, 80, 15]),
    ]
    return pd.DataFrame(rows, columns=["arch", "method", "seed", "error_pct", "compression_pruning",
                                       "compression_precision", "architecture"])


def _assert_pngs(paths, expected_names) -> None:
    assert sorted(p.name for p in paths) == sorted(expected_names)
    for path in paths:
        assert path.exists() and path.stat().st_size > 5_000, path
        image = mpimg.imread(path)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100, (path, image.shape)


@pytest.fixture(scope="module")
def figures(runs_dir, tmp_path_factory) -> tuple[Path, list[Path]]:
    """Every figure of the fake runs, drawn once for the module (drawing is the slow part): (figures_dir, paths)."""
    figures_dir = tmp_path_factory.mktemp("figures")
    paths = figs.all_figures(_runs_frame(), runs_dir, figures_dir, paper=FAKE_PAPER,
                              paper_architectures=FAKE_PAPER_ARCHITECTURES, original=FAKE_ORIGINAL)
    return figures_dir, paths


def _written_under(figures, folder: str) -> list[Path]:
    figures_dir, paths = figures
    return [p for p in paths if p.parent == figures_dir / folder]


# ---- the authors' maps, by hand --------------------------------------------------------------------------------------
def test_pixel_importance_is_one_minus_clipped_alpha_in_row_major_pixels():
    statistic = np.full(784, 3.0)  # alpha = e^3 > 1: unimportant
    statistic[0] = -np.inf  # alpha = 0: fully important
    statistic[28] = math.log(0.25)  # pixel (row 1, column 0)
    statistic[783] = math.log(0.5)
    statistic[5] = 800.0  # exp overflows to inf: still importance 0, no warning
    expected = np.zeros((28, 28))
    expected[0, 0], expected[1, 0], expected[27, 27] = 1.0, 0.75, 0.5
    np.testing.assert_allclose(figs.pixel_importance_map(statistic), expected, atol=1e-12)


def test_pixel_importance_refuses_a_layer_without_784_inputs():
    with pytest.raises(ValueError, match="784"):
        figs.pixel_importance_map(np.zeros(300))


def test_masked_weight_map_is_the_transpose_with_pruned_inputs_and_outputs_zeroed():
    weight = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # [out=2, in=3]
    in_mask, out_mask = np.array([True, False, True]), np.array([False, True])
    expected = np.array([[0.0, 4.0], [0.0, 0.0], [0.0, 6.0]])  # [in, out]
    np.testing.assert_array_equal(figs.masked_weight_map(weight, in_mask, out_mask), expected)
    with pytest.raises(ValueError, match="masks"):
        figs.masked_weight_map(weight, out_mask, in_mask)


def test_nan_threshold_keeps_every_group():
    statistic = np.array([-1.0, 0.0, 2.0])
    assert figs.groups_kept(statistic, math.nan) == 3
    assert figs.groups_kept(statistic, 0.0) == 1  # kept iff strictly below


def test_architecture_strings_and_lists_parse_alike():
    assert figs.parse_architecture("278-98-13") == figs.parse_architecture([278, 98, 13]) == [278, 98, 13]
    assert figs.parse_architecture(None) is None and figs.parse_architecture(float("nan")) is None


# ---- per-run figures -------------------------------------------------------------------------------------------------
def test_lenet300_gnj_run_gets_every_per_run_figure(figures):
    _assert_pngs(_written_under(figures, "runs/lenet300/bc-gnj/seed0"), figs.RUN_FIGURES)


def test_each_run_figure_file_is_drawn_by_the_function_named_for_it():
    assert figs.RUN_FIGURES == {
        "group_statistics.png": figs.group_statistic_histograms, "threshold_curve.png": figs.threshold_curves,
        "training.png": figs.training_curves, "weights.png": figs.first_layer_weights,
        "pixel_importance.png": figs.pixel_importance, "frontier.png": figs.frontier,
        "kl_layers.png": figs.kl_layers}


def test_kl_by_layer_compares_histories_and_skips_those_without_per_layer_kl(tmp_path):
    with_kl = [{"epoch": e, "kl_layers": [[100.0 / e, 10.0], [50.0 / e, 0.0]]} for e in (1, 2, 3)]
    without = [{"epoch": e, "kl": 1.0} for e in (1, 2, 3)]
    assert figs.kl_by_layer({"old run": without}, tmp_path / "none.png", "t") == []
    assert not (tmp_path / "none.png").exists()
    written = figs.kl_by_layer({"clamped": with_kl, "old run": without}, tmp_path / "kl.png", "t", ["fc1", "fc2"])
    _assert_pngs(written, ["kl.png"])


def test_every_method_of_the_table_has_its_own_colour_in_the_table_order():
    from bcrepro.report import table

    assert list(figs.METHOD_COLOURS) == table.METHOD_ORDER
    assert len(set(figs.METHOD_COLOURS.values())) == len(table.METHOD_ORDER)
    assert figs.method_colour("l0-hc") not in figs.METHOD_COLOURS.values()  # a method beyond the table: a spare


def test_conv_net_has_no_pixel_importance_or_weight_maps(runs_dir, figures, tmp_path):
    run_dir = runs_dir / "lenet5" / "bc-ghs" / "seed0"
    assert figs.pixel_importance(run_dir, tmp_path / "p.png") == []
    assert figs.first_layer_weights(run_dir, tmp_path / "w.png") == []
    assert figs.threshold_curves(run_dir, tmp_path / "t.png") == []  # threshold_curve is null
    assert figs.frontier(run_dir, tmp_path / "f.png") == []  # no frontier in metrics.json
    _assert_pngs(_written_under(figures, "runs/lenet5/bc-ghs/seed0"), ["group_statistics.png", "training.png",
                                                                          "kl_layers.png"])


def test_dense_run_has_only_training_curves(runs_dir, figures, tmp_path):
    run_dir = runs_dir / "lenet300" / "dense" / "seed0"
    assert figs.group_statistic_histograms(run_dir, tmp_path / "h.png") == []
    assert figs.first_layer_weights(run_dir, tmp_path / "w.png") == []
    assert figs.pixel_importance(run_dir, tmp_path / "p.png") == []
    _assert_pngs(_written_under(figures, "runs/lenet300/dense/seed0"), ["training.png"])


# ---- aggregate figures -----------------------------------------------------------------------------------------------
def test_aggregate_figures_one_per_architecture(figures):
    _assert_pngs(_written_under(figures, "."), ["error_vs_compression_lenet300.png", "error_vs_compression_lenet5.png",
                                                "architecture_lenet300.png", "architecture_lenet5.png", "speedup.png"])


def test_speedup_measurements_are_the_slim_ratios_of_each_speed_json(runs_dir):
    frame = figs.speedup_measurements(runs_dir)
    assert frame[["arch", "method", "seed", "device", "batch"]].values.tolist() == [
        ["lenet5", "bc-ghs", "seed0", "cpu", 1], ["lenet5", "bc-ghs", "seed0", "cpu", 64]]
    assert frame["speedup"].tolist() == [4.0, 10.0] and frame["flops_ratio"].tolist() == [20.0, 20.0]


def test_speedup_measurements_name_the_layout_and_compiler_each_file_was_timed_with(tmp_path):
    channels_last = [dict(record, memory_format="channels_last", compiled="torchscript") for record in SPEED_RECORDS]
    for method, records in (("bc-ghs", SPEED_RECORDS), ("bc-gnj", channels_last)):
        (tmp_path / "lenet5" / method / "seed0").mkdir(parents=True)
        _write_json(tmp_path / "lenet5" / method / "seed0" / "speed.json", records)
    frame = figs.speedup_measurements(tmp_path)
    layouts = frame.groupby("method")["memory_format"].unique().map(list).to_dict()
    assert layouts == {"bc-ghs": ["contiguous"], "bc-gnj": ["channels_last"]}  # files without the key: contiguous
    compilers = frame.groupby("method")["compiled"].unique().map(list).to_dict()
    assert compilers == {"bc-ghs": ["none"], "bc-gnj": ["torchscript"]}  # files without the key: eager


def test_figures_are_closed_and_no_temporary_file_is_left(figures):
    figures_dir, paths = figures
    assert plt.get_fignums() == [], "a figure was left open"
    assert sorted(figures_dir.rglob("*.png")) == sorted(paths), "only the returned PNGs, no temporary files"


def test_a_figure_is_written_as_a_palette_png_that_looks_like_the_rendered_one(tmp_path):
    """The saved file against matplotlib's own RGBA rendering of the same figure: few colours, same picture."""
    def draw():
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.imshow(np.linspace(-1, 1, 400).reshape(20, 20), cmap="seismic")
        ax.plot([0, 19], [0, 19], color="#ff7f0e")
        ax.set_title("a map and a line")
        return fig

    reference = tmp_path / "reference.png"
    draw().savefig(reference, dpi=figs.DPI, format="png")
    plt.close("all")
    saved = figs.save_figure(draw(), tmp_path / "saved.png")
    from PIL import Image

    with Image.open(saved) as image:
        assert image.mode == "P" and len(image.getcolors(maxcolors=1024)) <= figs.PALETTE_COLOURS
    expected, got = mpimg.imread(reference)[..., :3], mpimg.imread(saved)[..., :3]
    assert got.shape == expected.shape
    difference = np.abs(got - expected)
    assert difference.mean() < 1 / 255 and np.quantile(difference, 0.999) < 24 / 255
    assert saved.stat().st_size < reference.stat().st_size


def test_group_statistics_compared_overlays_runs_with_a_posterior_and_skips_the_others(runs_dir, tmp_path):
    gnj, dense = runs_dir / "lenet300" / "bc-gnj" / "seed0", runs_dir / "lenet300" / "dense" / "seed0"
    assert figs.group_statistics_compared({"dense": dense}, tmp_path / "none.png", "t") == []
    written = figs.group_statistics_compared({"a": gnj, "b": gnj, "dense": dense}, tmp_path / "cmp.png", "t")
    _assert_pngs(written, ["cmp.png"])
