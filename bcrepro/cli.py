"""The ``bcrepro`` command (also ``python -m bcrepro``). The workflow's rules call it; users can too.

    bcrepro train --arch lenet300 --method bc-gnj --dataset mnist --data-root data --seed 0 --out runs/gnj
    bcrepro compress --run runs/gnj
    bcrepro methods

Errors (unknown names, bad parameters, missing data, a diverging loss) print one line naming the problem and exit
with status 1 (2 for command-line usage errors); no output file is left half-written. ``--max-minutes`` stops a
training run cleanly with status 3 after a checkpoint; the same command resumes it.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch
import yaml

from . import compression, data, models, slim
from .methods import METHODS, get_method
from .train import TimeLimitReached, TrainConfig, TrainingDiverged, error_rate, train, write_json

log = logging.getLogger("bcrepro")

RUN_FILE = "run.json"
MODEL_FILE = "model.pt"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
COMPRESSED_FILE = "compressed.npz"
SLIM_FILE = "slim.pt"
# The validation hold-out (and synthetic data) do not depend on the training seed: every run sees the same split.
DATA_SEED = 0


class UsageError(ValueError):
    """A problem with what the user asked for (names, files, parameters)."""


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for but torch sees no CUDA device; use --device auto or cpu")
    if name not in ("cpu", "cuda"):
        raise UsageError(f"--device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


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


def build_net(arch: str, method_name: str, params: dict, splits: data.DataSplits) -> models.Net:
    method = get_method(method_name)
    net = models.build(arch, method.layer_factory(arch, params), num_classes=splits.num_classes)
    if tuple(net.input_shape) != tuple(splits.input_shape):
        raise UsageError(f"architecture {arch} expects inputs of shape {net.input_shape} but dataset "
                         f"{splits.name} has {splits.input_shape}")
    return net


def load_dataset_for_run(run: dict, device: torch.device) -> data.DataSplits:
    return data.load_dataset(run["dataset"], data_root=run["data_root"], download=run["download"], device=device,
                             validation_size=run["params"]["validation_size"], seed=DATA_SEED,
                             synthetic_shape=data.synthetic_shape_for_arch(run["arch"]))


def init_from_dense(net: models.Net, path: Path) -> None:
    """Start from a trained dense reference: its weights and biases become the means of every layer."""
    if not path.exists():
        raise UsageError(f"--init {path} does not exist (expected a dense run's {MODEL_FILE})")
    state = torch.load(path, map_location="cpu", weights_only=True)
    dense = models.build(net.arch, num_classes=net.num_classes)
    try:
        dense.load_state_dict(state)
    except RuntimeError as err:
        raise UsageError(f"--init {path} is not a dense {net.arch} state dict: {err}") from None
    net_state = net.state_dict()
    # Batch-norm and any other non-prunable state has the same names in both nets.
    net.load_state_dict({**net_state, **{k: v for k, v in state.items() if k in net_state}})
    with torch.no_grad():
        for target, source in zip(net.prunable_layers(), dense.prunable_layers()):
            bayesian = hasattr(target, "weight_mu")
            (target.weight_mu if bayesian else target.weight).copy_(source.weight)
            (target.bias_mu if bayesian else target.bias).copy_(source.bias)


def cmd_train(args) -> None:
    method = get_method(args.method)
    overrides = read_params_file(args.params)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    params = method.params_for(args.arch, overrides)
    device = resolve_device(args.device)
    out = Path(args.out)
    run = {"arch": args.arch, "method": args.method, "dataset": args.dataset, "seed": args.seed,
           "data_root": args.data_root, "download": not args.no_download, "device": str(device),
           "init": args.init, "params": params}
    run_path = out / RUN_FILE
    if run_path.exists():
        previous = json.loads(run_path.read_text())
        same = {k: previous.get(k) for k in ("arch", "method", "dataset", "seed", "params", "init")}
        if same != {k: run[k] for k in same}:
            raise UsageError(f"{out} holds a different run ({previous['arch']}/{previous['method']}, seed "
                             f"{previous['seed']}); use another --out or delete it")
        if (out / METRICS_FILE).exists() or (out / MODEL_FILE).exists():
            log.info("%s is already trained; nothing to do (delete %s to retrain)", out, MODEL_FILE)
            return

    splits = load_dataset_for_run(run, device)
    torch.manual_seed(args.seed)
    net = build_net(args.arch, args.method, params, splits)
    if args.init:
        init_from_dense(net, Path(args.init))
    out.mkdir(parents=True, exist_ok=True)
    write_json(run, run_path)
    config = TrainConfig.from_params(params, seed=args.seed)
    log.info("training %s/%s on %s (%d train, %d validation, %d test) on %s: %s", args.arch, args.method,
             splits.name, len(splits.train_y), len(splits.val_y), len(splits.test_y), device, config)
    tic = time.perf_counter()
    time_limit = None if args.max_minutes is None else 60.0 * args.max_minutes
    history = train(net, splits, config, out, device, groups_kept=compression.monitor_groups_kept,
                    time_limit_s=time_limit)
    train_seconds = sum(record["seconds"] for record in history)
    torch.save(net.state_dict(), out / MODEL_FILE)
    write_json(history, out / HISTORY_FILE)
    write_json({**run, "train_seconds": train_seconds, "wall_seconds": time.perf_counter() - tic}, run_path)
    log.info("saved %s (%.1f s of training)", out / MODEL_FILE, train_seconds)


def cmd_compress(args) -> None:
    out = Path(args.run)
    run_path, model_path = out / RUN_FILE, out / MODEL_FILE
    if not run_path.exists() or not model_path.exists():
        raise UsageError(f"{out} is not a finished training run (needs {RUN_FILE} and {MODEL_FILE}); "
                         f"run `bcrepro train ... --out {out}` first")
    run = json.loads(run_path.read_text())
    device = resolve_device(args.device)
    splits = load_dataset_for_run(run, device)
    net = build_net(run["arch"], run["method"], run["params"], splits)
    net.load_state_dict(torch.load(model_path, map_location="cpu", weights_only=True))
    net.to(device).eval()
    validation = (lambda module: error_rate(module, splits.val_x, splits.val_y)) if len(splits.val_y) else None
    result = compression.compress(net, run["params"].get("thresholds"), validation,
                                  lambda module: error_rate(module, splits.test_x, splits.test_y))
    precision = result.precision
    deployable = result.quantized_net if result.quantized_net is not None else result.pruned_net
    compressed_bytes = compression.save_compressed(
        out / COMPRESSED_FILE, deployable, result.masks,
        None if precision is None else precision.rounded_weights, None if precision is None else precision.bits)
    try:
        slim.save_slim(slim.slim_net(deployable, result.masks), out / SLIM_FILE)
    except ValueError as err:  # a pruned batch-normed channel before a padded conv (VGG): a later issue
        log.warning("no slimmed export for this run: %s", err)
    metrics = {
        "arch": run["arch"], "method": run["method"], "seed": run["seed"], "dataset": run["dataset"],
        **result.metrics,
        "compressed_bytes": compressed_bytes,
        "mlflow_run_id": run.get("mlflow_run_id"),
        "train_seconds": run.get("train_seconds"),
    }
    write_json(metrics, out / METRICS_FILE)
    precision_rate = metrics["compression_precision"]
    log.info("wrote %s: error %.2f%% -> pruned %.2f%% -> quantized %s; architecture %s; bits %s; "
             "compression %.1fx after pruning, %s after precision reduction", out / METRICS_FILE,
             metrics["error_pct"], metrics["error_pruned_pct"],
             "n/a" if metrics["error_quantized_pct"] is None else f"{metrics['error_quantized_pct']:.2f}%",
             "-".join(map(str, metrics["architecture"])), metrics["bits"], metrics["compression_pruning"],
             "n/a" if precision_rate is None else f"{precision_rate:.1f}x")


def cmd_methods(args) -> None:
    for name, method in sorted(METHODS.items()):
        print(f"{name:10s} {method.description} (architectures: {', '.join(sorted(method.hyperparameters))})")


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
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--init", help="a dense run's model.pt to start from")
    p.add_argument("--params", help="YAML file of hyper-parameter overrides for this method")
    p.add_argument("--max-minutes", type=float,
                   help="stop after the epoch that ends past this wall time, exit 3; rerunning resumes")
    p.add_argument("--out", required=True, help="run directory (checkpoints, model, history)")
    p.set_defaults(func=cmd_train)

    p = verbs.add_parser("compress", help="prune, reduce precision and account a trained run")
    p.add_argument("--run", required=True, help="a run directory written by `bcrepro train`")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_compress)

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
    except (UsageError, ValueError, data.DataNotFoundError, TrainingDiverged) as err:
        print(f"bcrepro {args.verb}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
