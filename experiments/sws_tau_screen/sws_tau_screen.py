"""Screen SWS's prior weight ``tau`` on a data set: retrain from the dense reference under each ``tau`` and, every few
epochs, merge and snap a copy of the network (what compression does at the end) and measure it.

    python experiments/sws_tau_screen/sws_tau_screen.py --arch lenet300 --dataset mnist --taus 0.05 0.2 \
        --epochs 20 --every 2 --init results/runs/lenet300/dense/seed0/model.pt --out runs/sws_tau

SWS trains a Gaussian-mixture prior next to the weights; only after the weights have gathered tightly around the
mixture's means does snapping them to the means (and the zero component's weights to 0) cost little. Too small a
``tau`` never gathers them within the budget, too large a one pulls them to 0 before the data can hold them. Each
``tau`` is one ``bcrepro.cells.train_cell`` in its own folder (``<out>/tau<tau>``, checkpointed: the same command
resumes it) in a worker process with one thread, ``--jobs`` at once; it keeps its network every ``--every`` epochs
(``<out>/tau<tau>/epoch<N>/``). Each kept network not yet measured adds a row to ``<out>/screen.jsonl``: validation
error of the network as trained and as snapped, the fraction of weights kept, the non-zero means left after merging,
and the snapped network's test error (reported, never used for a choice). The table is printed and written to
``<out>/screen.md``.
"""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import torch

from bcrepro.cells import train_cell
from bcrepro.cells.pool import one_thread_pool
from bcrepro.methods.sws import finalize
from bcrepro.runs import MODEL_FILE, build_net, load_dataset_for_run
from bcrepro.train import error_rate

COLUMNS = ("tau", "epoch", "val_err_pct", "val_err_snapped_pct", "kept_pct", "nonzero_means", "test_err_snapped_pct")


def snapped_row(net, splits, params: dict, epoch: int) -> dict:
    """Measure the trained network and a merged-and-snapped copy of it."""
    snapped = copy.deepcopy(net)
    finalize(snapped, params)
    layers = snapped.prunable_layers()
    kept = sum(int(layer.mask.sum()) for layer in layers)
    total = sum(layer.mask.numel() for layer in layers)
    nonzero_means = len({float(v) for layer in layers for v in layer.weight[layer.mask.bool()].unique()})
    return {"tau": params["tau"], "epoch": epoch,
            "val_err_pct": error_rate(net, splits.val_x, splits.val_y),
            "val_err_snapped_pct": error_rate(snapped, splits.val_x, splits.val_y),
            "kept_pct": 100.0 * kept / total, "nonzero_means": nonzero_means,
            "test_err_snapped_pct": error_rate(snapped, splits.test_x, splits.test_y)}


def measured_epochs(rows_path: Path, tau: float) -> set[int]:
    if not rows_path.exists():
        return set()
    return {row["epoch"] for row in map(json.loads, rows_path.read_text().splitlines()) if row["tau"] == tau}


def screen_one(args: argparse.Namespace, tau: float) -> None:
    """Train (or resume) ``tau``'s run, then measure each of its kept networks that has no row yet."""
    out = Path(args.out) / f"tau{tau:g}"
    epochs = sorted({*range(args.every, args.epochs + 1, args.every), args.epochs})
    run = train_cell(out, arch=args.arch, method="sws", dataset=args.dataset, seed=args.seed,
                     data_root=args.data_root, download=False, params={"tau": tau, "epochs": args.epochs},
                     init=args.init, snapshot_epochs=epochs, device="cpu")
    rows = Path(args.out) / "screen.jsonl"
    done = measured_epochs(rows, tau)
    splits = load_dataset_for_run(run, torch.device("cpu"))
    for epoch in epochs:
        kept = out / f"epoch{epoch}" / MODEL_FILE
        if epoch in done:
            continue
        if not kept.exists():  # trained to past this epoch before the screen kept networks
            print(f"tau={tau:g}: no network kept after epoch {epoch} in {out}; not measured", flush=True)
            continue
        net = build_net(args.arch, "sws", run["params"], splits)
        net.load_state_dict(torch.load(kept, map_location="cpu", weights_only=True))
        row = snapped_row(net.eval(), splits, run["params"], epoch)
        with open(rows, "a") as stream:
            stream.write(json.dumps(row) + "\n")
        print(" ".join(f"{key}={row[key]:.4g}" for key in COLUMNS), flush=True)


def table(rows: list[dict]) -> str:
    lines = ["| tau | epoch | val err % | val err snapped % | kept % | non-zero means | test err snapped % |",
             "|---|---|---|---|---|---|---|"]
    latest = {(row["tau"], row["epoch"]): row for row in rows}  # a resumed epoch keeps its last measurement
    for tau, epoch in sorted(latest):
        row = latest[(tau, epoch)]
        lines.append(f"| {tau:g} | {epoch} | {row['val_err_pct']:.2f} | {row['val_err_snapped_pct']:.2f} | "
                     f"{row['kept_pct']:.2f} | {row['nonzero_means']} | {row['test_err_snapped_pct']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="lenet300", choices=["lenet300", "lenet5"])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--taus", type=float, nargs="+", required=True)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--every", type=int, default=2, help="snap and measure every this many epochs")
    parser.add_argument("--init", required=True, help="the dense reference's model.pt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if not Path(args.init).exists():
        parser.error(f"--init {args.init} does not exist (train the dense reference first)")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with one_thread_pool(args.jobs) as pool:
        for future in [pool.submit(screen_one, args, tau) for tau in args.taus]:
            future.result()
    rows = [json.loads(line) for line in (Path(args.out) / "screen.jsonl").read_text().splitlines()]
    text = table(rows)
    (Path(args.out) / "screen.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
