"""The aggregated table: hand-written run directories in, means/stds and the paper's numbers out."""
import json
import math

import pandas as pd
import pytest

from bcrepro.report import paper
from bcrepro.report import table as tables
from conftest import LENET300_WEIGHTS, LENET5_WEIGHTS, write_cell



def write_run(root, arch, method, seed, speed=None, **overrides):
    """A metrics.json as `bcrepro compress` writes it, with the numbers a test cares about overridden (and one key
    the table ignores)."""
    return write_cell(root, arch, method, seed, speed=speed, **{"exponent_bits": 3, **overrides})


def row_of(table, arch, method):
    rows = table[(table["arch"] == arch) & (table["method"] == method)]
    assert len(rows) == 1, f"expected one row for ({arch}, {method}), found {len(rows)}"
    return rows.iloc[0]


@pytest.fixture
def runs_dir(tmp_path):
    root = tmp_path / "runs"
    # two seeds of LeNet-300-100 GNJ, numbers chosen to make mean and std easy by hand
    write_run(root, "lenet300", "bc-gnj", 0, error_pct=1.8, compression_pruning=9.0, compression_precision=30.0,
              compression_max=50.0, nonzero_weights=26620, architecture=[278, 98, 13])
    write_run(root, "lenet300", "bc-gnj", 1, error_pct=2.2, compression_pruning=11.0, compression_precision=40.0,
              compression_max=70.0, nonzero_weights=53240, architecture=[280, 101, 14])
    write_run(root, "lenet300", "dense", 0, error_pct=1.7, error_pruned_pct=1.7, error_quantized_pct=None,
              nonzero_weights=LENET300_WEIGHTS, compression_pruning=1.0, compression_precision=None,
              compression_max=1.0, bits=None, architecture=[784, 300, 100])
    write_run(root, "lenet5", "bc-ghs", 0, dataset="fashion_mnist", error_pct=1.25, total_weights=LENET5_WEIGHTS,
              nonzero_weights=2751, compression_pruning=150.0, compression_precision=400.0, compression_max=700.0,
              bits=[10, 10, 14, 13], architecture=[5, 10, 76, 16],
              speed=[
                  {"variant": "original", "device": "cpu", "batch": 64, "median_ms": 10.0, "iqr_ms": 1.0},
                  {"variant": "slim", "device": "cpu", "batch": 64, "median_ms": 5.0, "iqr_ms": 0.5},
                  {"variant": "original", "device": "cpu", "batch": 8192, "median_ms": 120.0, "iqr_ms": 3.0},
                  {"variant": "masked", "device": "cpu", "batch": 8192, "median_ms": 119.0, "iqr_ms": 3.0},
                  {"variant": "slim", "device": "cpu", "batch": 8192, "median_ms": 30.0, "iqr_ms": 1.0},
                  {"variant": "original", "device": "cuda", "batch": 8192, "median_ms": 2.0, "iqr_ms": 0.1},
              ])
    write_run(root, "lenet300", "l0-hc", 0)  # a method the paper does not have
    return root


def test_load_runs_reads_one_row_per_metrics_file(runs_dir):
    runs = tables.load_runs(runs_dir)
    assert len(runs) == 5
    assert list(runs.columns) == tables.RUN_COLUMNS
    gnj = runs[(runs["method"] == "bc-gnj")]
    assert list(gnj["seed"]) == [0, 1]
    assert list(gnj["bits"]) == ["8-9-14", "8-9-14"]
    assert list(gnj["architecture"]) == ["278-98-13", "280-101-14"]
    dense = runs[runs["method"] == "dense"].iloc[0]
    assert dense["bits"] == ""
    assert math.isnan(dense["compression_precision"]) and math.isnan(dense["error_quantized_pct"])


def test_load_runs_of_an_empty_directory_has_the_columns(tmp_path):
    runs = tables.load_runs(tmp_path)
    assert runs.empty and list(runs.columns) == tables.RUN_COLUMNS
    assert tables.comparison_table(runs).empty
    assert list(tables.comparison_table(runs).columns) == tables.TABLE_COLUMNS


def test_two_seeds_give_mean_and_sample_std(runs_dir):
    row = row_of(tables.comparison_table(tables.load_runs(runs_dir)), "lenet300", "bc-gnj")
    assert row["n_seeds"] == 2 and row["dataset"] == "mnist"
    # by hand: mean (1.8 + 2.2) / 2 = 2.0; sample std sqrt((0.2^2 + 0.2^2) / 1) = 0.2 * sqrt(2)
    assert row["error_pct_mean"] == pytest.approx(2.0)
    assert row["error_pct_std"] == pytest.approx(0.2 * math.sqrt(2))
    assert row["compression_pruning_mean"] == pytest.approx(10.0)
    assert row["compression_pruning_std"] == pytest.approx(math.sqrt(2))
    assert row["compression_precision_mean"] == pytest.approx(35.0)
    assert row["compression_precision_std"] == pytest.approx(5 * math.sqrt(2))
    assert row["compression_max_mean"] == pytest.approx(60.0)
    assert row["nonzero_pct_mean"] == pytest.approx(15.0)  # 10 % and 20 % of the weights
    assert row["bits"] == "8-9-14"
    # paper Table 1: 1.8 % error, 9(36), 58
    assert row["paper_error_pct"] == 1.8 and row["paper_compression_pruning"] == 9
    # the paper's error is the compressed network's: ours after rounding (1.2 in both seeds), not the posterior mean's
    assert row["error_final_pct_mean"] == pytest.approx(1.2) and row["error_final_pct_std"] == pytest.approx(0.0)
    assert row["diff_error_pct"] == pytest.approx(1.2 - 1.8)
    assert row["diff_compression_pruning"] == pytest.approx(1.0)
    assert row["diff_compression_precision"] == pytest.approx(-1.0)


def test_dense_row_holds_the_original_error_and_nan_std(runs_dir):
    row = row_of(tables.comparison_table(tables.load_runs(runs_dir)), "lenet300", "dense")
    assert row["n_seeds"] == 1 and math.isnan(row["error_pct_std"])
    assert row["paper_error_pct"] == paper.ORIGINAL_ERROR_PCT["lenet300"] == 1.6
    assert row["paper_compression_pruning"] == 1.0
    assert math.isnan(row["compression_precision_mean"]) and math.isnan(row["diff_compression_precision"])
    assert row["error_final_pct_mean"] == pytest.approx(1.7)  # no rounding: the pruned error
    assert row["diff_error_pct"] == pytest.approx(0.1)
    assert row["nonzero_pct_mean"] == pytest.approx(100.0)


def test_speedup_is_original_over_slim_at_the_largest_batch(runs_dir):
    runs = tables.load_runs(runs_dir)
    ghs = runs[runs["method"] == "bc-ghs"].iloc[0]
    assert ghs["speedup_cpu"] == pytest.approx(120.0 / 30.0)
    assert math.isnan(ghs["speedup_cuda"])  # no slim timing on the GPU
    assert math.isnan(runs[runs["method"] == "dense"].iloc[0]["speedup_cpu"])  # no speed.json at all
    assert row_of(tables.comparison_table(runs), "lenet5", "bc-ghs")["speedup_cpu_mean"] == pytest.approx(4.0)


def test_lenet5_ghs_sits_beside_the_papers_156_419(runs_dir):
    runs = tables.load_runs(runs_dir)
    row = row_of(tables.comparison_table(runs), "lenet5", "bc-ghs")
    assert (row["paper_error_pct"], row["paper_compression_pruning"], row["paper_compression_precision"]) == \
        (1.0, 156, 419)
    assert row["paper_compression_max"] == 771 and row["paper_nonzero_pct"] == 0.6
    assert row["paper_bits"] == "10-10-14-13" and not row["paper_starred"]
    assert row["dataset"] == "fashion_mnist" and row["paper_dataset"] == "mnist"
    architectures = row_of(tables.architecture_table(runs), "lenet5", "bc-ghs")
    assert architectures["paper"] == "5-10-76-16"
    assert architectures["original"] == "20-50-800-500"
    assert architectures["measured"] == architectures["measured_mean"] == "5-10-76-16"


def test_method_unknown_to_the_paper_has_nan_paper_columns_and_sorts_last(runs_dir):
    runs = tables.load_runs(runs_dir)
    table = tables.comparison_table(runs)
    row = row_of(table, "lenet300", "l0-hc")
    for column in ["paper_error_pct", "paper_compression_pruning", "paper_compression_precision",
                   "paper_compression_max", "paper_nonzero_pct", "diff_error_pct", "diff_compression_pruning"]:
        assert math.isnan(row[column]), column
    assert row["paper_bits"] == "" and row["paper_dataset"] == ""
    assert row_of(tables.architecture_table(runs), "lenet300", "l0-hc")["paper"] == ""
    assert list(zip(table["arch"], table["method"])) == [
        ("lenet300", "dense"), ("lenet300", "bc-gnj"), ("lenet300", "l0-hc"), ("lenet5", "bc-ghs")]


def test_seeds_with_different_architectures_are_listed_and_averaged(runs_dir):
    row = row_of(tables.architecture_table(tables.load_runs(runs_dir)), "lenet300", "bc-gnj")
    assert row["n_seeds"] == 2
    assert row["measured"] == "278-98-13; 280-101-14"
    assert row["measured_mean"] == "279-100-14"  # 99.5 and 13.5 round half up
    assert row["original"] == "784-300-100" and row["paper"] == "278-98-13"


def test_malformed_metrics_json_names_the_file(tmp_path):
    run_dir = write_run(tmp_path, "lenet5", "dns", 0)
    (run_dir / "metrics.json").write_text('{"arch": "lenet5", ')
    with pytest.raises(ValueError, match=r"lenet5/dns/seed0/metrics\.json"):
        tables.load_runs(tmp_path)


def test_malformed_speed_json_names_the_file_and_the_record(tmp_path):
    write_run(tmp_path, "lenet5", "bc-ghs", 0, speed=[{"variant": "slim", "device": "cpu", "batch": 64}])
    with pytest.raises(ValueError, match=r"lenet5/bc-ghs/seed0/speed\.json: malformed record .*'slim'"):
        tables.load_runs(tmp_path)


def test_the_table_speedup_is_the_deploy_speedup_of_the_slim_model(runs_dir):
    from bcrepro.deploy.speed import speedups

    records = json.loads((runs_dir / "lenet5" / "bc-ghs" / "seed0" / "speed.json").read_text())
    at_8192 = [gain["speedup"] for gain in speedups(records)
               if (gain["variant"], gain["device"], gain["batch"]) == ("slim", "cpu", 8192)]
    ghs = tables.load_runs(runs_dir).set_index("method").loc["bc-ghs"]
    assert [ghs["speedup_cpu"]] == at_8192


def test_metrics_json_without_a_required_key_names_file_and_key(tmp_path):
    run_dir = write_run(tmp_path, "lenet5", "dns", 0)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    del metrics["compression_max"]
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(ValueError, match=r"seed0/metrics\.json lacks required key\(s\) \['compression_max'\]"):
        tables.load_runs(tmp_path)


def test_write_tables_writes_csv_md_and_tex_with_every_row(runs_dir, tmp_path):
    out = tmp_path / "results"
    paths = tables.write_tables(tables.load_runs(runs_dir), out)
    assert [p.name for p in paths] == ["table.csv", "table.md", "table.tex", "architectures.csv", "architectures.md"]
    assert all(p.exists() for p in paths)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]

    csv = pd.read_csv(out / "table.csv")
    assert len(csv) == 4 and {"paper_error_pct", "paper_compression_pruning", "n_seeds"} <= set(csv.columns)

    md = (out / "table.md").read_text()
    md_rows = [line for line in md.splitlines() if line.startswith("| lenet")]
    assert len(md_rows) == 4
    ghs = next(line for line in md_rows if "bc-ghs" in line)
    assert "| 156 |" in ghs and "| 419 |" in ghs and "| 771 |" in ghs and "10-10-14-13" in ghs
    assert "1.20 ± –" in ghs and "1.25" not in ghs  # the rounded network's error, one seed: no std
    gnj = next(line for line in md_rows if "bc-gnj" in line)
    assert "1.20 ± 0.00" in gnj and "2.00" not in gnj  # not the posterior mean's 1.8 and 2.2
    assert "best-case guess" in md and "MNIST" in md

    tex = (out / "table.tex").read_text()
    assert r"\begin{tabular}" in tex and r"\toprule" in tex and r"\bottomrule" in tex
    assert r"fashion\_mnist" in tex and "fashion_mnist" not in tex
    assert sum(line.endswith(r"\\") for line in tex.splitlines()) == 1 + 4  # header + rows

    architectures = (out / "architectures.md").read_text()
    assert "| lenet5 | bc-ghs | 1 | 20-50-800-500 | 5-10-76-16 | 5-10-76-16 | 5-10-76-16 |" in architectures


def test_starred_paper_figures_are_marked_in_markdown(tmp_path):
    write_run(tmp_path, "lenet5", "sws", 0, compression_precision=None, bits=[3])
    md = tables.comparison_markdown(tables.comparison_table(tables.load_runs(tmp_path)))
    assert "| 100* |" in md  # SWS's pruning-only 100x is the authors' best-case guess


def test_paper_has_table2_architectures():
    assert paper.PAPER_ARCHITECTURES[("lenet300", "bc-gnj")] == [278, 98, 13]
    assert paper.paper_architecture("lenet300", "bc-ghs") == [311, 86, 14]
    for method in ("bc-gnj", "bc-ghs"):
        assert len(paper.PAPER_ARCHITECTURES[("vgg16", method)]) == len(paper.ORIGINAL_ARCHITECTURE["vgg16"]) == 15
    for (arch, method), architecture in paper.PAPER_ARCHITECTURES.items():
        assert all(kept <= units for kept, units in zip(architecture, paper.ORIGINAL_ARCHITECTURE[arch], strict=True))


def test_paper_bits_have_one_width_or_one_per_layer():
    for (arch, method), row in paper.PAPER_RESULTS.items():
        assert row.bits is None or len(row.bits) in (1, len(paper.ORIGINAL_ARCHITECTURE[arch])), (arch, method)
    assert paper.paper_row("lenet300", "sws").bits == [3] and paper.paper_row("lenet300", "sws").starred
    assert paper.paper_row("lenet300", "dc").compression_pruning is None
    assert paper.paper_row("vgg16", "dc") is None


def test_paper_lenet300_gnj_rates_follow_from_its_table2_architecture():
    # docs/method.md: FC weights = kept inputs x kept inputs of the next layer (10 outputs at the end)
    kept = paper.paper_architecture("lenet300", "bc-gnj") + [10]
    layer_weights = [a * b for a, b in zip(kept[:-1], kept[1:])]
    row = paper.paper_row("lenet300", "bc-gnj")
    assert math.floor(LENET300_WEIGHTS / sum(layer_weights)) == row.compression_pruning == 9
    stored_bits = sum(n * b for n, b in zip(layer_weights, row.bits))
    assert math.floor(32 * LENET300_WEIGHTS / stored_bits) == row.compression_precision == 36


def test_baselines_sit_beside_their_own_papers_with_the_kind_of_rate(tmp_path):
    root = tmp_path / "runs"
    write_run(root, "lenet300", "dns", 0)
    write_run(root, "lenet5", "sws", 0, total_weights=LENET5_WEIGHTS)
    write_run(root, "lenet300", "bc-gnj", 0)
    table = tables.comparison_table(tables.load_runs(root))
    dns = row_of(table, "lenet300", "dns")
    # DNS, Guo et al. 2016: 1.99 % error, 1.8 % kept, 56x as a parameter ratio (not storage)
    assert (dns["own_error_pct"], dns["own_nonzero_pct"], dns["own_rate"], dns["own_rate_kind"]) == \
        (1.99, 1.8, 56, "parameters")
    assert dns["paper_compression_pruning"] == 28  # the BC paper's figure for DNS is a different number
    sws = row_of(table, "lenet5", "sws")
    assert (sws["own_error_pct"], sws["own_rate"], sws["own_rate_kind"]) == (0.97, 162, "storage")
    gnj = row_of(table, "lenet300", "bc-gnj")  # BC's own paper is Table 1 itself: no second entry
    assert gnj["own_paper"] == "" and math.isnan(gnj["own_rate"])
    markdown = tables.comparison_markdown(table)
    assert "1.99, 1.8, 56 (parameters; Guo et al. 2016" in markdown
    latex = tables.comparison_latex(table)
    header = next(line for line in latex.splitlines() if line.startswith(r"\begin{tabular}"))
    body = next(line for line in latex.splitlines() if line.startswith("lenet300 & dns"))
    assert len(header.split("{")[2].rstrip("}")) == body.count(" & ") + 1  # one column spec per cell


def test_own_paper_rates_agree_with_their_kept_fractions():
    # A parameter ratio is 1 / kept fraction; per-layer kept % weighted by layer size gives the overall one.
    layer_sizes = {"lenet300": [235200, 30000, 1000], "lenet5": [500, 25000, 400000, 5000]}
    for (arch, method), row in paper.OWN_PAPER_RESULTS.items():
        if row.rate_kind == "parameters":
            assert 100.0 / row.rate == pytest.approx(row.nonzero_pct, rel=0.08), (arch, method)
        if row.kept_pct is not None:
            sizes = layer_sizes[arch]
            overall = sum(k * n for k, n in zip(row.kept_pct, sizes)) / sum(sizes)
            assert overall == pytest.approx(row.nonzero_pct, rel=0.2, abs=0.3), (arch, method)


def test_the_table_reads_the_compression_at_the_papers_error_off_the_frontier(tmp_path):
    root = tmp_path / "runs"
    point = lambda test, rate: {"max_error_increase": 0.0, "validation_error_pct": 1.0, "test_error_pct": test,
                                "compression_pruning": rate, "kept_weights": [1], "architecture": [1]}
    # the paper's BC-GNJ LeNet-300-100: 1.8 % error; points at or under it: 7x and 9x, so 9x; 20x is at 2.4 %
    write_run(root, "lenet300", "bc-gnj", 0, frontier=[point(1.6, 7.0), point(1.8, 9.0), point(2.4, 20.0)])
    write_run(root, "lenet300", "bc-gnj", 1, frontier=[point(1.9, 12.0), point(1.7, 5.0)])  # 5x
    write_run(root, "lenet300", "dense", 0, frontier=None)
    table = tables.comparison_table(tables.load_runs(root))
    assert row_of(table, "lenet300", "bc-gnj")["compression_at_paper_error_mean"] == pytest.approx((9 + 5) / 2)
    assert math.isnan(row_of(table, "lenet300", "dense")["compression_at_paper_error_mean"])


def test_a_cell_that_compression_broke_is_flagged_in_the_table(tmp_path):
    """A net trained to 7.75 % error that scores 40.75 % after compression is not a compression result, whatever its
    rates; the rule is the final error against the trained one, so metrics files without the flag are judged too."""
    root = tmp_path / "runs"
    write_run(root, "lenet300", "sws", 0, error_pct=7.75, error_pruned_pct=40.75, error_quantized_pct=40.75)
    write_run(root, "lenet300", "sws", 1, error_pct=2.0, error_pruned_pct=2.5, error_quantized_pct=2.9)  # +0.9
    write_run(root, "lenet300", "dc", 0, error_pct=1.7, error_pruned_pct=1.8, error_quantized_pct=None)
    table = tables.comparison_table(tables.load_runs(root))
    assert row_of(table, "lenet300", "sws")["n_collapsed"] == 1
    assert row_of(table, "lenet300", "dc")["n_collapsed"] == 0
    written = tables.write_tables(tables.load_runs(root), tmp_path / "out")
    markdown = next(p for p in written if p.name == "table.md").read_text()
    sws_line = next(line for line in markdown.splitlines() if line.startswith("| lenet300 | sws"))
    dc_line = next(line for line in markdown.splitlines() if line.startswith("| lenet300 | dc"))
    assert "(! 1 collapsed)" in sws_line and "collapsed" not in dc_line


def test_compression_error_jump_is_the_final_error_over_the_trained_one():
    from bcrepro.runs import COLLAPSE_MARGIN_PCT, compression_error_jump
    assert compression_error_jump({"error_pct": 7.75, "error_pruned_pct": 41.0, "error_quantized_pct": 40.75}) == 33.0
    assert compression_error_jump({"error_pct": 1.0, "error_pruned_pct": 1.5, "error_quantized_pct": None}) == 0.5
    assert COLLAPSE_MARGIN_PCT == 1.0
