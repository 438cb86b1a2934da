"""VGG-16 with Bayesian group layers on real images, offline: Fashion-MNIST made CIFAR-shaped, on CPU or GPU.

    python experiments/vgg_real_data_check/vgg_real_data_check.py --data-root DIR [--out vgg_real_check]
        [--train-size 12800] [--dense-epochs 3] [--bc-epochs 2] [--methods bc-ghs bc-gnj] [--device cpu] [--threads 2]

CIFAR-10 cannot be downloaded on the development machines, and the tests train VGG-16 on synthetic data only, which
says nothing about whether BC-GNJ/BC-GHS VGG-16 stay finite and accurate on real images (third-party attempts report
NaN losses). This script runs the pipeline of the paper's VGG rows on the one real image set these machines have,
Fashion-MNIST (Debian's ``dataset-fashion-mnist``; ``--data-root`` is the folder holding ``FashionMNIST/raw``):

1. the images are zero-padded from 28 x 28 to 32 x 32 and repeated over three channels (``cifar_shaped``): VGG-16's
   input shape, with the background (0 in the unit range) as padding; ``--train-size`` images of the training split
   are kept (a validation split of ``--validation-size`` is held out before);
2. a dense VGG-16 trains with the registry's VGG recipe (SGD, cosine schedule, augmentation), ``--dense-epochs``;
3. each BC method starts from it (``bcrepro.runs.init_from_dense``), trains ``--bc-epochs`` with the registry's VGG
   settings, the KL warm-up shortened to ``--kl-warmup-epochs``, then is compressed as ``bcrepro compress`` does
   (its threshold rule on the validation split, or ``--threshold-rule valley``) and slimmed; the slimmed network
   must give the pruned network's outputs on test images;
4. original, masked and slimmed networks are timed on the device (``bcrepro.deploy.speed.measure``).

A run killed after a method's training resumes from its checkpoints with the same ``--out`` (and ``--dense-model
OUT/dense/model.pt``). It prints per epoch the loss, KL and errors (the training loop's progress lines) and finally
one line per method, and writes everything to ``OUT/summary.json``. The budgets are far below the paper's (200 + 100
epochs on CIFAR-10): its figures show stability and the pipeline on real data, not the paper's errors or compression
rates. The KL is scaled by the size of the training subset, so a subset prunes harder than the full set would.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from bcrepro import data
from bcrepro.compress.evaluation import PrefixReusingErrorRate
from bcrepro.compress.pipeline import compress
from bcrepro.compress.thresholds import monitor_groups_kept
from bcrepro.deploy import speed
from bcrepro.methods import get_method
from bcrepro.runs import DATA_SEED, build_net, init_from_dense
from bcrepro.train import TrainConfig, error_rate, train

CIFAR_SIDE = 32
CIFAR_CHANNELS = 3


def cifar_shaped(splits: data.DataSplits, train_size: int | None = None, seed: int = 0) -> data.DataSplits:
    """``splits`` of one-channel images up to 32 x 32, zero-padded (centred) to 32 x 32 and repeated over three
    channels; with ``train_size``, that many training images drawn without replacement (seeded)."""
    channels, height, width = splits.input_shape
    if channels != 1 or height > CIFAR_SIDE or width > CIFAR_SIDE:
        raise ValueError(f"cifar_shaped needs one-channel images of at most {CIFAR_SIDE} x {CIFAR_SIDE}, got "
                         f"{splits.name} of shape {splits.input_shape}")
    top, left = (CIFAR_SIDE - height) // 2, (CIFAR_SIDE - width) // 2
    padding = (left, CIFAR_SIDE - width - left, top, CIFAR_SIDE - height - top)

    def reshape(x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, padding).expand(-1, CIFAR_CHANNELS, -1, -1).contiguous()

    train_x, train_y = splits.train_x, splits.train_y
    if train_size is not None:
        if not 0 < train_size <= len(train_y):
            raise ValueError(f"train_size must be in 1..{len(train_y)} (the training split), got {train_size}")
        chosen = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(seed))[:train_size]
        train_x, train_y = train_x[chosen.to(train_x.device)], train_y[chosen.to(train_y.device)]
    return data.DataSplits(reshape(train_x), train_y, reshape(splits.val_x), splits.val_y, reshape(splits.test_x),
                           splits.test_y, input_shape=(CIFAR_CHANNELS, CIFAR_SIDE, CIFAR_SIDE),
                           num_classes=splits.num_classes, name=f"{splits.name} as {CIFAR_CHANNELS}x{CIFAR_SIDE}x"
                           f"{CIFAR_SIDE}", preprocessing=f"{splits.preprocessing}; zero-padded to {CIFAR_SIDE} x "
                           f"{CIFAR_SIDE}, repeated over {CIFAR_CHANNELS} channels")


def train_on_splits(method_name: str, splits: data.DataSplits, epochs: int, out: Path, device: torch.device,
                    init: Path | None = None, kl_warmup_epochs: float | None = None, seed: int = 0):
    """Train ``method_name`` VGG-16 with the registry's VGG settings for ``epochs`` on ``splits`` (images no named
    data set gives, hence the training loop itself rather than ``bcrepro.cells.train_cell``); returns (net, params,
    history)."""
    method = get_method(method_name)
    params = method.params_for("vgg16")
    params["epochs"] = epochs
    if kl_warmup_epochs is not None and params.get("kl_warmup_epochs"):
        params["kl_warmup_epochs"] = kl_warmup_epochs
    torch.manual_seed(seed)
    net = build_net("vgg16", method_name, params, splits)
    if init is not None:
        init_from_dense(net, init)
    if method.prepare is not None:
        method.prepare(net, params)
    history = train(net, splits, TrainConfig.from_params(params, seed=seed), out, device,
                    groups_kept=monitor_groups_kept,
                    after_step=None if method.after_step is None else method.after_step(net, params))
    torch.save(net.state_dict(), out / "model.pt")
    return net.eval(), params, history


@torch.no_grad()
def compress_and_time(net, params: dict, splits: data.DataSplits, device: torch.device, batch_sizes: list[int],
                      repeats: int, threads: int | None) -> dict:
    """``bcrepro compress``'s pruning and accounting, the slimmed network checked against the masked (pruned) one on
    test images (None when there is no slimmed network), and the speed of original, masked and slim."""
    result = compress(net, params.get("thresholds"),
                                  PrefixReusingErrorRate(splits.val_x, splits.val_y),
                                  lambda module: error_rate(module, splits.test_x, splits.test_y),
                                  curve_points=0)  # no threshold curve: half of compress's evaluations, unused here
    modules = speed.variants(net, result.masks)  # no "slim" when a conv keeps no filter (the net is a constant)
    probe = splits.test_x[:256]
    slim_gap = (float((modules["slim"](probe) - modules["masked"](probe)).abs().max()) if "slim" in modules
                else None)
    records = speed.measure(modules, net.input_shape, batch_sizes, device, repeats=repeats, threads=threads)
    keys = ("error_pct", "error_pruned_pct", "error_quantized_pct", "architecture", "compression_pruning",
            "compression_precision", "compression_max", "bits")
    return {**{key: result.metrics.get(key) for key in keys}, "slim_max_abs_difference": slim_gap,
            "speedups": speed.speedups(records), "speed_records": records}


def dense_test_error(path: Path, splits: data.DataSplits, device: torch.device) -> float:
    net = build_net("vgg16", "dense", get_method("dense").params_for("vgg16"), splits)
    net.load_state_dict(torch.load(path, map_location=device, weights_only=True))
    return error_rate(net.to(device), splits.test_x, splits.test_y)


def summary_line(name: str, history: list[dict], compressed: dict | None) -> str:
    last = history[-1]
    finite = all(math.isfinite(record["loss"]) for record in history)
    line = (f"{name}: {len(history)} epochs, loss {last['loss']:.4g} (all finite: {finite}), train error "
            f"{last['train_error_pct']:.2f} %, test error {last['test_error_pct']:.2f} %")
    if compressed is not None:
        by_batch = {r["batch"]: r["speedup"] for r in compressed["speedups"] if r["variant"] == "slim"}
        architecture = "-".join(map(str, compressed["architecture"]))
        rate = compressed["compression_pruning"]  # None: a layer keeps nothing, the rate is infinite
        line += (f"; pruned {compressed['error_pruned_pct']:.2f} %, architecture {architecture}, compression "
                 f"{'inf' if rate is None else f'{rate:.1f}'}x (pruning); slim vs pruned max |diff| "
                 f"{compressed['slim_max_abs_difference']}; slim speed-up "
                 + ", ".join(f"{value:.2f}x at batch {batch}" for batch, value in sorted(by_batch.items())))
    return line


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root", required=True, help="folder holding FashionMNIST/raw (IDX files)")
    parser.add_argument("--dataset", default="fashion_mnist", help="fashion_mnist, mnist, or synthetic (a smoke run)")
    parser.add_argument("--out", default="vgg_real_check")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for training and timing")
    parser.add_argument("--train-size", type=int, default=12_800, help="training images kept (default 100 batches)")
    parser.add_argument("--validation-size", type=int, default=1_000)
    parser.add_argument("--dense-epochs", type=int, default=3)
    parser.add_argument("--dense-model", type=Path, default=None,
                        help="a dense VGG-16 model.pt (an earlier run's OUT/dense/model.pt) to start from instead of "
                             "training one; use the same --train-size, --validation-size and data")
    parser.add_argument("--bc-epochs", type=int, default=2)
    parser.add_argument("--kl-warmup-epochs", type=float, default=1.0)
    parser.add_argument("--threshold-rule", choices=["registry", "valley"], default="registry",
                        help="registry: the method's own (auto, on the validation split: hundreds of VGG evaluations, "
                             "about an hour on two CPU cores); valley: Otsu's split of each layer's statistic, no "
                             "evaluation")
    parser.add_argument("--methods", nargs="*", default=["bc-ghs", "bc-gnj"], help="none: the dense network only")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    out = Path(args.out)
    splits = cifar_shaped(data.load_dataset(args.dataset, data_root=args.data_root, download=False, device=device,
                                            validation_size=args.validation_size, seed=DATA_SEED),
                          args.train_size, seed=DATA_SEED)
    logging.info("%s: %s", splits.name, splits.sizes)
    summary = {"dataset": splits.name, "sizes": splits.sizes, "args": vars(args)}
    if args.dense_model is None:
        _, _, dense_history = train_on_splits("dense", splits, args.dense_epochs, out / "dense", device)
        summary["dense"] = {"history": dense_history}
        lines = [summary_line("dense", dense_history, None)]
        dense_model = out / "dense" / "model.pt"
    else:
        dense_model, lines = args.dense_model, [f"dense: from {args.dense_model}, test error "
                                                f"{dense_test_error(args.dense_model, splits, device):.2f} %"]
    for method in args.methods:
        net, params, history = train_on_splits(method, splits, args.bc_epochs, out / method, device,
                                               init=dense_model, kl_warmup_epochs=args.kl_warmup_epochs)
        if args.threshold_rule != "registry":
            params["thresholds"] = {"rule": args.threshold_rule}
        compressed = compress_and_time(net, params, splits, device, args.batch_sizes, args.repeats, args.threads)
        summary[method] = {"history": history, **compressed}
        lines.append(summary_line(method, history, compressed))
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print("\n".join(lines))
    return summary


if __name__ == "__main__":
    main()
