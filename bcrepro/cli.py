"""The ``bcrepro`` command (also ``python -m bcrepro``). The workflow's rules call it; users can too.

    bcrepro train --arch lenet300 --method bc-gnj --dataset mnist --data-root data --seed 0 --out runs/gnj
    bcrepro compress --run runs/gnj
    bcrepro speedup --run runs/gnj
    bcrepro methods

Workflow verbs (each one Snakemake rule): ``stage`` (check or download a data set), ``mlflow-init`` (create the store
once), ``table`` and ``figures`` (aggregate ``results/runs``), ``mlflow-import`` (replay deferred runs into the store).
Run-level verbs log to MLflow with ``--mlflow-uri URI [--mlflow-mode direct|deferred]`` (``bcrepro.report.tracking``).

Errors (unknown names, bad parameters, missing data, a diverging loss) print one line naming the problem and exit
with status 1 (2 for command-line usage errors); no output file is left half-written. ``--max-minutes`` stops a
training run cleanly with status 3 after a checkpoint; the same command resumes it.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import torch
import yaml

from . import data, gpu_slots, models
from .atomic import write_atomically, write_json
from .compress import bitstream, pipeline
from .compress.evaluation import PrefixReusingErrorRate
from .compress.masks import propagate_masks
from .compress.thresholds import DEFAULT_FRONTIER_BUDGETS, monitor_groups_kept
from .deploy import cpu_memory, slim, speed
from .methods import METHODS, get_method
from .report import tracking
from .errors import UsageError
from .runs import (ARTEFACT_FILE, CHECKPOINT, COMPRESSED_FILE, HISTORY_FILE, METRICS_FILE, MLFLOW_MODEL_DIR, MODEL_FILE,
                   POSTERIOR_FILE, RUN_FILE, SLIM_FILE, SPEED_FILE, build_net, compressed_cells,
                   init_from_dense, load_dataset_for_run, load_trained)
from .train import TimeLimitReached, TrainConfig, TrainingDiverged, error_rate, train

log = logging.getLogger("bcrepro")

DEFAULT_EXPERIMENT = "bcrepro"


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but torch sees no CUDA device; use --device auto or cpu")
    if name not in ("cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def job_device(args) -> torch.device:
    """The device of a training or compression job: ``--device``, and with ``--gpu-slots DIR`` on a machine with
    several visible GPUs, the GPU of a slot claimed in ``DIR`` (``bcrepro.gpu_slots``), so that jobs running at once
    spread over the GPUs, at most ``--jobs-per-gpu`` on each."""
    device = resolve_device(args.device)
    if device.type != "cuda" or not getattr(args, "gpu_slots", None) or torch.cuda.device_count() < 2:
        return device
    index = gpu_slots.claim(Path(args.gpu_slots), gpu_slots.cuda_device_ids(), args.jobs_per_gpu)
    if index is None:
        return device
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def add_device_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    parser.add_argument("--gpu-slots", metavar="DIR",
                        help="with several GPUs, claim a slot of the least busy one in this shared folder (the "
                             "workflow passes results/gpu_slots); without it every job uses the first visible GPU")
    parser.add_argument("--jobs-per-gpu", type=int, default=1,
                        help="jobs that may share one GPU (with --gpu-slots); default 1")


def read_params_file(path: str | None) -> dict:
    """Hyper-parameter overrides from a YAML mapping (``key: value``)."""
    if path is None:
        return {}
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"--params file {path} does not exist") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UsageError(f"--params file {path} must hold a mapping of hyper-parameter names to values")
    return loaded


def read_params_json(text: str | None) -> dict:
    """Hyper-parameter overrides given inline as a JSON object (the workflow passes each cell's config this way)."""
    if not text:
        return {}
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(f"--params-json is not valid JSON ({err}): {text[:200]}") from None
    if not isinstance(loaded, dict):
        raise UsageError(f"--params-json must be a JSON object of hyper-parameter names to values, got {text[:200]}")
    return loaded


def scale_epochs(params: dict, scale: float) -> dict:
    """Multiply the epoch budget (and the KL warm-up, its start and iteration counts such as DNS's ``iter_stop`` with
    it) by ``scale``; at least one epoch."""
    if not scale > 0:
        raise UsageError(f"--epoch-scale must be > 0, got {scale}")
    if scale == 1.0:
        return params
    scaled = dict(params, epochs=max(1, round(params["epochs"] * scale)))
    for key in ("kl_warmup_epochs", "kl_warmup_start_epochs"):
        if key in params:
            scaled[key] = params[key] * scale
    if "iter_stop" in params:
        scaled["iter_stop"] = [max(1, round(n * scale)) for n in params["iter_stop"]]
    if "prune_iterations" in params:
        scaled["prune_iterations"] = [round(n * scale) for n in params["prune_iterations"]]
    if "quantize_iteration" in params:
        scaled["quantize_iteration"] = round(params["quantize_iteration"] * scale)
    return scaled


def cell_run(args, run: dict, out: Path) -> tracking.CellRun:
    """The MLflow run of this (arch, method, seed), opened or continued by this job."""
    mode = args.mlflow_mode or ("direct" if args.mlflow_uri else "off")
    if mode == "direct" and not args.mlflow_uri:
        raise UsageError("--mlflow-mode direct needs --mlflow-uri (e.g. sqlite:///results/mlflow.db)")
    cell = {key: run[key] for key in ("arch", "method", "seed", "dataset")}
    return tracking.CellRun(out, uri=args.mlflow_uri, experiment=args.mlflow_experiment, mode=mode,
                            rule=args.rule or args.verb, cell=cell)


def epoch_metrics(record: dict) -> dict:
    """The per-epoch values MLflow plots while a run trains (groups or weights kept as a fraction, per layer and
    overall)."""
    metrics = {key: record[key] for key in ("loss", "cross_entropy", "kl", "kl_weight", "lr", "train_error_pct",
                                            "test_error_pct", "seconds")}
    for i, (kl, floor) in enumerate(record.get("kl_layers") or []):
        metrics[f"kl.layer{i}"] = kl
        metrics[f"kl_floor.layer{i}"] = floor
    for unit in ("groups", "weights"):
        pairs = record.get(f"{unit}_kept") or []  # [kept, total] per layer
        for i, (kept, total) in enumerate(pairs):
            metrics[f"{unit}_kept_fraction.layer{i}"] = kept / total
        if pairs:
            metrics[f"{unit}_kept_fraction"] = sum(k for k, _ in pairs) / sum(t for _, t in pairs)
    return metrics


def check_schedule(method, params: dict, n_train: int) -> None:
    """Refuse a run whose iteration-counted schedule (DC's pruning and quantisation, DNS's end of surgery) would not
    happen within its optimiser steps: it would train, report and never say that its method did not run."""
    if method.scheduled_steps is None:
        return
    steps_per_epoch = math.ceil(n_train / params["batch_size"])
    total = params["epochs"] * steps_per_epoch
    late = {name: step for name, step in method.scheduled_steps(params).items() if step >= total}
    if late:
        scale = total / max(late.values()) * 0.9
        raise UsageError(
            f"{method.name}: this run has {total} optimiser steps ({params['epochs']} epochs of {steps_per_epoch} "
            f"at batch {params['batch_size']} on {n_train} training images), but its schedule acts at "
            + ", ".join(f"{name} = {step}" for name, step in late.items())
            + " (set for MNIST's 55,000 images at batch 64). Give more epochs, or scale the schedule, e.g. "
            f"--params-json with every iteration count times {scale:.3g}")


# Settings that only `compress` reads: a run may resume, or be declared again, under other values, which then replace
# the stored ones (training never reads them, so the trained network is the same).
COMPRESSION_ONLY_PARAMS = ("thresholds",)


def training_identity(run: dict) -> dict:
    """What makes two runs' training the same: ``run.json``'s identity, its params without compression-only ones."""
    identity = {k: run.get(k) for k in ("arch", "method", "dataset", "seed", "init")}
    identity["params"] = {k: v for k, v in (run.get("params") or {}).items() if k not in COMPRESSION_ONLY_PARAMS}
    return identity


def cmd_train(args) -> None:
    method = get_method(args.method)
    overrides = {**read_params_file(args.params), **read_params_json(args.params_json)}
    params = scale_epochs(method.params_for(args.arch, overrides), args.epoch_scale)
    if args.epochs is not None:
        params["epochs"] = args.epochs
    device = job_device(args)
    out = Path(args.out)
    run = {"arch": args.arch, "method": args.method, "dataset": args.dataset, "seed": args.seed,
           "data_root": args.data_root, "download": not args.no_download, "device": str(device),
           "init": args.init, "params": params}
    run_path = out / RUN_FILE
    if run_path.exists():
        previous = json.loads(run_path.read_text())
        old, new = training_identity(previous), training_identity(run)
        if old != new:
            differ = [k for k in old if k != "params" and old[k] != new[k]]
            old_params, new_params = old["params"], new["params"]
            differ += [f"params.{k} ({old_params.get(k)!r} there, {new_params.get(k)!r} here)"
                       for k in sorted(set(old_params) | set(new_params)) if old_params.get(k) != new_params.get(k)]
            raise UsageError(f"{out} holds a run of {previous['arch']}/{previous['method']}, seed "
                             f"{previous['seed']} with other settings: {', '.join(differ)}; use another --out or "
                             f"delete it")
        if (out / METRICS_FILE).exists() or (out / MODEL_FILE).exists():
            if previous.get("params") != params:  # only settings that compression reads differ
                write_json(dict(previous, params=params), run_path)
                log.info("%s is already trained; its compression settings are updated in %s (run `compress` again to "
                         "apply them)", out, RUN_FILE)
            else:
                log.info("%s is already trained; nothing to do (delete %s to retrain)", out, MODEL_FILE)
            return

    splits = load_dataset_for_run(run, device)
    check_schedule(method, params, len(splits.train_y))
    torch.manual_seed(args.seed)
    net = build_net(args.arch, args.method, params, splits)
    if args.init:
        init_from_dense(net, Path(args.init))
    elif method.starts_from(args.arch):
        log.warning("%s starts from a dense reference in the paper's table; training from scratch (no --init)",
                    args.method)
    if method.prepare is not None and not (out / CHECKPOINT).exists():
        method.prepare(net, params)
    config = TrainConfig.from_params(params, seed=args.seed)  # every setting checked before the first file
    out.mkdir(parents=True, exist_ok=True)
    write_json(run, run_path)
    log.info("training %s/%s on %s (%d train, %d validation, %d test) on %s: %s", args.arch, args.method,
             splits.name, len(splits.train_y), len(splits.val_y), len(splits.test_y), device, config)
    tic = time.perf_counter()
    time_limit = None if args.max_minutes is None else 60.0 * args.max_minutes
    with cell_run(args, run, out) as tracker:
        tracker.log_params({**{k: v for k, v in run.items() if k != "params"}, **params})
        tracker.log_dataset(splits.name, data.splits_digest(splits),
                            "synthetic" if run["dataset"] == "synthetic" else str(Path(run["data_root"]).resolve()))
        history = train(net, splits, config, out, device, groups_kept=monitor_groups_kept,
                        time_limit_s=time_limit, snapshot_epochs=set(args.snapshot_epochs or ()),
                        after_step=None if method.after_step is None else method.after_step(net, params),
                        on_epoch_end=lambda record: tracker.log_metrics(epoch_metrics(record), step=record["epoch"]))
        train_seconds = sum(record["seconds"] for record in history)
        torch.save(net.state_dict(), out / MODEL_FILE)
        write_json(history, out / HISTORY_FILE)
        write_json({**run, "train_seconds": train_seconds, "wall_seconds": time.perf_counter() - tic,
                    "mlflow_run_id": tracker.run_id}, run_path)
        tracker.log_metrics({"train_seconds": train_seconds})
        tracker.log_artifact(out / MODEL_FILE, "state_dicts")
        tracker.log_artifact(out / HISTORY_FILE)
    log.info("saved %s (%.1f s of training)", out / MODEL_FILE, train_seconds)


def parse_json_option(name: str, text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(f"{name} is not valid JSON ({err}): {text!r}") from None


def reference_validation_error(reference: Path, run: dict, splits: data.DataSplits, device: torch.device) -> float:
    """The dense reference's error (percent) on this run's validation split: the threshold budget is stated
    against it. The reference must have been trained on the same data with the same hold-out."""
    ref_run, ref_splits, ref_net = load_trained(reference, device)
    if ref_run["dataset"] != run["dataset"] or len(ref_splits.val_y) != len(splits.val_y) or not torch.equal(
            ref_splits.val_y, splits.val_y):
        raise UsageError(f"--reference-run {reference} was trained on {ref_run['dataset']} with "
                         f"{len(ref_splits.val_y)} validation images, this run on {run['dataset']} with "
                         f"{len(splits.val_y)}: the reference's validation error would be measured on other images")
    error = error_rate(ref_net, splits.val_x, splits.val_y)
    log.info("reference %s (%s): %.2f %% validation error", reference, ref_run["method"], error)
    return error


def cmd_compress(args) -> None:
    out = Path(args.run)
    device = job_device(args)
    run, splits, net = load_trained(out, device)
    thresholds = run["params"].get("thresholds")
    if args.thresholds_json is not None:
        thresholds = parse_json_option("--thresholds-json", args.thresholds_json)
    if args.reference_run is not None:
        thresholds = {**(thresholds or {}), "reference_error_pct": reference_validation_error(
            Path(args.reference_run), run, splits, device)}
    # the threshold search and curve evaluate hundreds of networks differing in one layer: reuse what they share
    validation = PrefixReusingErrorRate(splits.val_x, splits.val_y) if len(splits.val_y) else None
    result = pipeline.compress(net, thresholds, validation,
                                  lambda module: error_rate(module, splits.test_x, splits.test_y),
                                  frontier_budgets=(thresholds or {}).get("frontier",
                                                                          DEFAULT_FRONTIER_BUDGETS))
    precision = result.precision
    deployable = result.quantized_net if result.quantized_net is not None else result.pruned_net
    compressed_bytes = pipeline.save_compressed(
        out / COMPRESSED_FILE, deployable, result.masks,
        None if precision is None else precision.rounded_weights, None if precision is None else precision.bits)
    artefact = bitstream.encode_layers(result.encoded, [(m.out_mask.cpu().numpy(), m.in_mask.cpu().numpy())
                                                        for m in result.masks],
                                       biases=[layer.bias.detach().cpu().numpy()
                                               for layer in deployable.prunable_layers()])
    write_atomically(out / ARTEFACT_FILE, lambda handle: handle.write(artefact))
    slimmed = None
    try:
        slimmed = slim.slim_net(deployable, result.masks)
        slim.save_slim(slimmed, out / SLIM_FILE)
    except ValueError as err:  # a module slim_net cannot slim (it names it); the other outputs stand
        log.warning("no slimmed export for this run: %s", err)
    if net.group_layers():
        pipeline.save_posterior(out / POSTERIOR_FILE, net, result.thresholds, result.masks)
    with cell_run(args, run, out) as tracker:
        metrics = {
            "arch": run["arch"], "method": run["method"], "seed": run["seed"], "dataset": run["dataset"],
            **result.metrics,
            "compressed_bytes": compressed_bytes,
            "artefact_bytes": len(artefact),
            "compression_on_disk": 4 * result.metrics["total_weights"] / len(artefact),  # float32 original
            "mlflow_run_id": tracker.run_id or run.get("mlflow_run_id"),
            "train_seconds": run.get("train_seconds"),
        }
        write_json(metrics, out / METRICS_FILE)
        tracker.log_metrics({key: value for key, value in metrics.items() if isinstance(value, (int, float))
                             and not isinstance(value, bool) and key != "seed"})
        tracker.log_params({"thresholds.rule": metrics["thresholds"].get("rule"),
                            "architecture": "-".join(map(str, metrics["architecture"])),
                            "bits": "-".join(map(str, metrics["bits"] or [])) or "none"})
        for name in (METRICS_FILE, COMPRESSED_FILE, ARTEFACT_FILE, SLIM_FILE, POSTERIOR_FILE):
            if (out / name).exists():
                tracker.log_artifact(out / name, "compressed" if name != METRICS_FILE else None)
        if slimmed is not None:  # loadable with mlflow.pytorch.load_model("runs:/<id>/slim_model")
            tracker.log_pytorch_model(slimmed.cpu().eval(), out / MLFLOW_MODEL_DIR, MLFLOW_MODEL_DIR)
    if metrics["empty_layers"]:
        log.warning("layers %s keep no weight: the network's output no longer depends on its input, every rate is "
                    "infinite (null in %s) and the error is chance level", metrics["empty_layers"], METRICS_FILE)

    def rate(value) -> str:
        return "inf" if value is None else f"{value:.1f}x"

    quantized = metrics["error_quantized_pct"]
    log.info("wrote %s: error %.2f%% -> pruned %.2f%% -> quantized %s; architecture %s; bits %s; compression %s after "
             "pruning, %s after precision reduction, %s maximum (computed), %s on disk (%s, %d bytes)",
             out / METRICS_FILE, metrics["error_pct"], metrics["error_pruned_pct"],
             "n/a" if quantized is None else f"{quantized:.2f}%", "-".join(map(str, metrics["architecture"])),
             metrics["bits"], rate(metrics["compression_pruning"]),
             "n/a" if precision is None else rate(metrics["compression_precision"]),
             rate(metrics["compression_max"]), rate(metrics["compression_on_disk"]), ARTEFACT_FILE,
             metrics["artefact_bytes"])


def cmd_speedup(args) -> None:
    out = Path(args.run)
    metrics_path = out / METRICS_FILE
    if not metrics_path.exists():
        raise UsageError(f"{out} has no {METRICS_FILE}; run `bcrepro compress --run {out}` first")
    device = resolve_device(args.device)
    run, splits, net = load_trained(out, torch.device("cpu"))
    thresholds = json.loads(metrics_path.read_text())["thresholds"].get("thresholds")
    masks = propagate_masks(net, thresholds if net.group_layers() else None)
    single_weights = not get_method(run["method"]).group_sparse and run["method"] != "dense"
    stock_pooling = args.stock_pooling or speed.stock_pooling_for(device, args.compile)
    if device.type == "cpu" and not args.system_allocator and not cpu_memory.keep_freed_memory():
        log.warning("could not keep freed memory in the process (the C library is not glibc, or mallopt refused): "
                    "timing with the system allocator as it is (allocator: system)")
    modules = speed.variants(net, masks, single_weights, stock_pooling=stock_pooling)
    records = speed.measure(modules, splits.input_shape, args.batch_sizes, device,
                            repeats=args.repeats, warmup=args.warmup, threads=args.threads,
                            memory_format=args.memory_format, compiler=args.compile)
    write_json(records, out / SPEED_FILE)
    gains = speed.speedups(records)
    with cell_run(args, run, out) as tracker:
        tracker.log_metrics({f"speedup.{g['variant']}.{g['device']}.batch{g['batch']}": g["speedup"] for g in gains
                             if g["variant"] != "original"})
        tracker.log_metrics({f"flops_ratio.{g['variant']}": g["flops_ratio"] for g in gains
                             if g["variant"] != "original" and g["flops_ratio"] is not None})
        tracker.log_artifact(out / SPEED_FILE)
    for g in gains:
        if g["variant"] == "slim":
            fewer = "n/a" if g["flops_ratio"] is None else f"{g['flops_ratio']:.1f}x"
            log.info("slim vs original on %s at batch %d: %.2fx (%s fewer multiply-adds)", g["device"], g["batch"],
                     g["speedup"], fewer)


def cmd_stage(args) -> None:
    """Make sure a data set is there (downloading it when allowed) before any job needs it; write a stamp file."""
    splits = data.load_dataset(args.dataset, data_root=args.data_root, download=not args.no_download)
    stamp = {"dataset": args.dataset, "data_root": str(Path(args.data_root).resolve()),
             "train": len(splits.train_y), "test": len(splits.test_y), "input_shape": list(splits.input_shape),
             "preprocessing": splits.preprocessing}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(stamp, Path(args.out))
    log.info("%s is ready under %s: %d training and %d test images", args.dataset, args.data_root,
             stamp["train"], stamp["test"])


def cmd_mlflow_init(args) -> None:
    experiment_id = tracking.init_store(args.mlflow_uri, args.mlflow_experiment, Path(args.artifacts).resolve())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json({"uri": args.mlflow_uri, "experiment": args.mlflow_experiment, "experiment_id": experiment_id,
                "artifact_location": str(Path(args.artifacts).resolve())}, Path(args.out))
    log.info("MLflow store %s ready, experiment %r (id %s)", args.mlflow_uri, args.mlflow_experiment, experiment_id)


def cmd_mlflow_import(args) -> None:
    run_ids = tracking.import_deferred(Path(args.runs), args.mlflow_uri, args.mlflow_experiment,
                                       Path(args.artifacts).resolve())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json({"uri": args.mlflow_uri, "experiment": args.mlflow_experiment, "run_ids": run_ids}, Path(args.out))
    log.info("imported %d deferred run(s) into %s", len(run_ids), args.mlflow_uri)


def cmd_table(args) -> None:
    from .report import table  # pandas is only needed here
    runs = table.load_runs(Path(args.runs))
    if runs.empty:
        raise UsageError(f"no {METRICS_FILE} found under {args.runs} (expected {{arch}}/{{method}}/seed{{n}}/)")
    for path in table.write_tables(runs, Path(args.out)):
        log.info("wrote %s", path)


def cmd_figures(args) -> None:
    from .report import figures, table  # matplotlib, seaborn and pandas are only needed here
    runs_dir, figures_dir = Path(args.runs), Path(args.out)
    runs = table.load_runs(runs_dir)
    if runs.empty:
        raise UsageError(f"no {METRICS_FILE} found under {args.runs} (expected {{arch}}/{{method}}/seed{{n}}/)")
    written = figures.all_figures(runs, runs_dir, figures_dir)
    log.info("wrote %d figures under %s", len(written), figures_dir)
    for run_dir in compressed_cells(runs_dir):
        arch, method, seed = run_dir.relative_to(runs_dir).parts
        run_figures = figures_dir / "runs" / arch / method / seed
        if not (run_dir / RUN_FILE).exists() or not run_figures.is_dir():
            continue
        with cell_run(args, json.loads((run_dir / RUN_FILE).read_text()), run_dir) as tracker:
            tracker.log_artifact(run_figures, "figures")


def cmd_record(args) -> None:
    from .report import record  # matplotlib, seaborn and pandas are only needed here
    out = Path(args.out)
    if args.runs is not None:
        copied = record.copy_cells(Path(args.runs), out)
        log.info("copied %d files of %d cells into %s", len(copied), len({path.parent for path in copied}),
                 out / record.RUNS_DIR)
    written = record.regenerate(out)
    log.info("wrote %d tables and figures under %s", len(written), out)


def cmd_methods(args) -> None:
    for name, method in sorted(METHODS.items()):
        print(f"{name:10s} {method.description} (architectures: {', '.join(sorted(method.hyperparameters))})")


def add_tracking_args(parser: argparse.ArgumentParser, required_uri: bool = False) -> None:
    parser.add_argument("--mlflow-uri", required=required_uri,
                        help="tracking URI (sqlite:///results/mlflow.db or http://host:port); none = no tracking")
    parser.add_argument("--mlflow-experiment", default=DEFAULT_EXPERIMENT, help="experiment name; default bcrepro")
    if not required_uri:
        parser.add_argument("--mlflow-mode", choices=tracking.MODES,
                            help="direct (log live), deferred (write tracking.jsonl for mlflow-import) or off; "
                                 "default direct when --mlflow-uri is given, else off")
        parser.add_argument("--rule", help="name of the workflow rule running this job (an MLflow tag)")


def add_store_args(parser: argparse.ArgumentParser) -> None:
    """Options of the verbs that manage the MLflow store itself (the workflow's local rules)."""
    add_tracking_args(parser, required_uri=True)
    parser.add_argument("--artifacts", required=True, help="folder for the experiment's artifacts")
    parser.add_argument("--out", required=True, help="stamp file")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bcrepro", description=__doc__.split("\n")[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    verbs = parser.add_subparsers(dest="verb", required=True)

    p = verbs.add_parser("train", help="train one (arch, method, seed) cell")
    p.add_argument("--arch", required=True, choices=sorted(models.ARCHITECTURES))
    p.add_argument("--method", required=True, help=f"one of {sorted(METHODS)}")
    p.add_argument("--dataset", required=True, choices=sorted(data.DATASETS))
    p.add_argument("--data-root", default="data", help="where data sets live (torchvision layout); default data")
    p.add_argument("--no-download", action="store_true", help="never try to download missing data")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, help="override the configured number of epochs")
    add_device_args(p)
    p.add_argument("--init", help="a dense run's model.pt to start from")
    p.add_argument("--params", help="YAML file of hyper-parameter overrides for this method")
    p.add_argument("--params-json", help="hyper-parameter overrides as a JSON object (applied after --params)")
    p.add_argument("--epoch-scale", type=float, default=1.0,
                   help="multiply the configured epochs and KL warm-up by this (at least 1 epoch); default 1")
    p.add_argument("--max-minutes", type=float,
                   help="stop after the epoch that ends past this wall time, exit 3; rerunning resumes")
    p.add_argument("--snapshot-epochs", type=int, nargs="+", metavar="N",
                   help="also keep the network after these epochs in OUT/epoch<N>/, compressible like any run "
                        "(screens at a constant learning rate compare variants at equal epochs)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, model, history)")
    add_tracking_args(p)
    p.set_defaults(func=cmd_train)

    p = verbs.add_parser("compress", help="prune, reduce precision and account a trained run")
    p.add_argument("--run", required=True, help="a run directory written by `bcrepro train`")
    p.add_argument("--thresholds-json", metavar="JSON",
                   help="threshold rule instead of the run's, e.g. '{\"rule\": \"sparsest\"}' or "
                        "'{\"rule\": \"valley\"}'")
    p.add_argument("--reference-run", metavar="DIR",
                   help="a dense run of the same data: the threshold budget is stated against its validation error")
    add_device_args(p)
    add_tracking_args(p)
    p.set_defaults(func=cmd_compress)

    p = verbs.add_parser("speedup", help="time the original, masked and slimmed networks of a compressed run")
    p.add_argument("--run", required=True, help="a run directory after `bcrepro compress`")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64, 1024, 8192])
    p.add_argument("--repeats", type=int, default=100)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="CPU intra-op threads during the measurement")
    p.add_argument("--stock-pooling", action="store_true",
                   help="on CPU, time torch's max_pool2d as built instead of the exact strided rewrite "
                        "(bcrepro.pooling) that every variant gets by default; CUDA always times the modules as "
                        "built")
    p.add_argument("--memory-format", choices=sorted(speed.MEMORY_FORMATS), default="contiguous",
                   help="layout of image inputs and conv weights for every variant: contiguous (NCHW, default) or "
                        "channels_last (NHWC), which can speed up one variant more than another")
    p.add_argument("--compile", choices=speed.COMPILERS, default="none",
                   help="none (eager, default) or torchscript: every variant traced, frozen and optimised for "
                        "inference (oneDNN convs with pre-packed weights, conv + ReLU fused; torch's pooling), "
                        "checked against its eager outputs")
    p.add_argument("--system-allocator", action="store_true",
                   help="on CPU, leave glibc's malloc as it is (a fresh mmap, and its page faults, for every large "
                        "block in every pass) instead of keeping freed memory in the process "
                        "(bcrepro.deploy.cpu_memory)")
    add_tracking_args(p)
    p.set_defaults(func=cmd_speedup)

    p = verbs.add_parser("stage", help="check (or download) a data set before the jobs that need it")
    p.add_argument("--dataset", required=True, choices=sorted(data.DATASETS))
    p.add_argument("--data-root", default="data")
    p.add_argument("--no-download", action="store_true")
    p.add_argument("--out", required=True, help="stamp file written when the data set is ready")
    p.set_defaults(func=cmd_stage)

    p = verbs.add_parser("mlflow-init", help="create the MLflow store and experiment once, before any job logs")
    add_store_args(p)
    p.set_defaults(func=cmd_mlflow_init)

    p = verbs.add_parser("mlflow-import", help="replay deferred runs (tracking.jsonl) into the MLflow store")
    p.add_argument("--runs", required=True, help="folder holding the run directories")
    add_store_args(p)
    p.set_defaults(func=cmd_mlflow_import)

    p = verbs.add_parser("table", help="the comparison table and learned architectures beside the paper's")
    p.add_argument("--runs", required=True, help="folder holding {arch}/{method}/seed{n}/metrics.json")
    p.add_argument("--out", required=True, help="folder for table.{csv,md,tex} and architectures.{csv,md}")
    p.set_defaults(func=cmd_table)

    p = verbs.add_parser("figures", help="the seaborn figures of all runs (and each run's own, logged to MLflow)")
    p.add_argument("--runs", required=True)
    p.add_argument("--out", required=True, help="figures folder")
    add_tracking_args(p)
    p.set_defaults(func=cmd_figures)

    p = verbs.add_parser("record", help="copy the cells' small files into a committable record and regenerate its "
                                        "table and figures from them (no training)")
    p.add_argument("--runs", help="the workflow's runs folder (results/runs) to copy from; without it, only "
                                  "regenerate from the cells already in --out")
    p.add_argument("--out", required=True, help="the record folder, e.g. results/mnist")
    p.set_defaults(func=cmd_record)

    p = verbs.add_parser("methods", help="list the registered methods")
    p.set_defaults(func=cmd_methods)
    return parser


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    try:
        args.func(args)
    except TimeLimitReached as err:
        print(f"bcrepro {args.verb}: {err}", file=sys.stderr)
        return 3
    except (ValueError, data.DataNotFoundError, TrainingDiverged) as err:
        print(f"bcrepro {args.verb}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
