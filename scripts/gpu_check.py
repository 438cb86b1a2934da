"""The one check for a machine with a GPU, in minutes: library checks on the device, every (architecture, method) cell
trained, compressed and timed, each cell's step time with the paper config's projected hours, and the speed-ups of the
paper's learned architectures.

    python scripts/gpu_check.py --out gpu_check [--data-root data] [--jobs 4] [--skip paper]

From a checkout without installing, prefix ``PYTHONPATH=.``. Needs torch and numpy only: it imports neither MLflow,
Snakemake, pandas nor PyYAML and downloads nothing. The LeNets train on the real MNIST when its raw files are under
``--data-root`` (MNIST/raw/), else on synthetic data; VGG-16 always on synthetic CIFAR-shaped data. Everything it finds
is appended to ``<out>/results.jsonl`` as it goes (a run stopped by a time limit still leaves what it found), and a
summary is printed at the end. Exit status 0 when every check passed, 1 otherwise. ``--device cpu`` is a smoke run.

Steps (``--skip`` any of them):

1. ``library``: with TF32 off, every group layer's fused training step against autograd over its reference
   expressions (output, KL and every gradient, on the device), and every network's eval output on the device against
   the CPU's on the same weights.
2. ``cells``: per architecture the dense reference first, then every method, several cells at once (``--jobs`` worker
   processes), each through ``bcrepro.cells``: ``train_cell`` (from the dense ``model.pt`` where the method starts
   from it), ``compress_cell`` and ``speedup_cell`` on the device, at tiny budgets (``--epochs``); each job's log in
   ``<out>/runs/<arch>/<method>/<job>.log``. Checked: every job finished, finite losses, errors below chance, the
   slimmed network's error equal to the pruned one's, a sane ``speed.json``. Then ``cpu_compress``: for two cells,
   ``compress_cell`` on the CPU from the GPU-trained model, which must choose the same thresholds and architecture;
   ``cpu_speedup``: ``speedup_cell`` on the CPU of the same cells; and ``resume``: ``train_cell`` with
   ``max_minutes=0`` stops after one epoch (``bcrepro train``'s exit status 3), the same call finishes the run and a
   third has nothing to do.
3. ``times``: every cell's training step at its configured batch size (median over ``--time-steps`` steps through
   the library's loop, images per second), and ``projection``: the paper config's training time on one GPU, cells one
   after another and with ``--concurrency`` LeNet jobs sharing the GPU (measured by that many timing processes at
   once), and BC-GHS over dense per step.
4. ``paper``: the BC-GHS architectures of the paper's Table 2 (``bcrepro.report.paper``) cut out of a freshly built
   network (random groups kept, seed 0: speed does not depend on the weights), original, masked and slimmed timed by
   ``bcrepro.deploy.speed.measure`` at ``--paper-batch-sizes`` (eval mode, no gradients, warm-up, CUDA synchronised),
   with the ratio of multiply-adds (the theoretical speed-up); ``--memory-format channels_last`` times them NHWC,
   ``--compile torchscript`` as frozen TorchScript graphs.
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch

from bcrepro import data, models
from bcrepro.deploy.benchmarking import cut_network
from bcrepro.cells import compress_cell, speedup_cell, train_cell
from bcrepro.compress.masks import architecture
from bcrepro.deploy import slim, speed
from bcrepro.cells.pool import OK, TIME_LIMIT, logged_status, one_thread_pool
from bcrepro.methods import METHODS, get_method
from bcrepro.report.paper import paper_architecture
from bcrepro.runs import final_error_pct, load_dataset_for_run
from bcrepro.train import TrainConfig, error_rate, train

ARCHS = ("lenet300", "lenet5", "vgg16")
STEPS = ("library", "cells", "times", "paper")
CHANCE_ERROR_PCT = 90.0  # ten classes
TRAIN_IMAGES = {"lenet300": 55_000, "lenet5": 55_000, "vgg16": 45_000}  # the paper's training sets less validation
PAPER_SEEDS = 3


class Report:
    """Appends one JSON object per finding to ``results.jsonl`` and remembers whether anything failed."""

    def __init__(self, path: Path):
        self.path = path
        self.failed: list[str] = []

    def add(self, kind: str, ok: bool = True, **fields) -> dict:
        record = {"kind": kind, "ok": ok, "time": time.strftime("%H:%M:%S"), **fields}
        with self.path.open("a") as handle:
            handle.write(json.dumps(record, default=str) + "\n")
        if not ok:
            self.failed.append(f"{kind} {fields.get('cell', fields.get('name', ''))}: {fields.get('problems')}")
        print(f"[{record['time']}] {kind:<13} {'ok ' if ok else 'FAIL'} "
              f"{fields.get('cell', fields.get('name', ''))} {fields.get('summary', '')}", flush=True)
        return record


# ---- library: the group layers' fused step and every network's output on the device ----------------------------------
def layer_cases():
    from bcrepro.layers import Conv2dGroupHS, Conv2dGroupNJ, LinearGroupHS, LinearGroupNJ
    return {
        "LinearGroupNJ": (lambda: LinearGroupNJ(30, 7, clip_var=0.04), (16, 30)),
        "Conv2dGroupNJ": (lambda: Conv2dGroupNJ(3, 5, 3, padding=1), (4, 3, 9, 9)),
        "LinearGroupHS": (lambda: LinearGroupHS(30, 7), (16, 30)),
        "Conv2dGroupHS": (lambda: Conv2dGroupHS(3, 5, 3, padding=1), (4, 3, 9, 9)),
    }


def fused_against_reference(make, shape, device) -> dict:
    """Largest relative difference between the fused step and autograd over the reference expressions (same draw)."""
    torch.manual_seed(0)
    layer = make().to(device).train()
    if hasattr(layer, "z_mu") and not hasattr(layer, "sa_mu"):  # GNJ: keep z > 0 (the fused conv draws noise before z)
        with torch.no_grad():
            layer.z_mu.uniform_(1.0, 1.4)
    x = torch.randn(shape, device=device)
    results = []
    for fused in (False, True):
        layer.fused_step = fused
        layer.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_(True)
        torch.manual_seed(5)
        if device.type == "cuda":
            torch.cuda.manual_seed(5)
        out = layer(xi)
        kl = layer.kl_divergence()
        weights = torch.linspace(-1.0, 1.0, out.numel(), device=device).reshape(out.shape)
        ((out * weights).sum() + 0.3 * kl).backward()
        results.append({"out": out.detach(), "kl": kl.detach(), "x": xi.grad,
                        **{name: p.grad.clone() for name, p in layer.named_parameters() if p.grad is not None}})
    reference, fused = results
    worst = {}
    for key, value in reference.items():
        scale = float(value.abs().max()) or 1.0
        worst[key] = float((fused[key] - value).abs().max()) / scale
    return worst


def eval_on_both(arch: str, method: str, device) -> float:
    """Relative difference of a fresh network's eval outputs on ``device`` and on the CPU, same weights."""
    registered = get_method(method)
    params = registered.params_for(arch)
    torch.manual_seed(0)
    net = models.build(arch, registered.layer_factory(arch, params))
    if registered.attach is not None:
        registered.attach(net, params)
    net.eval()
    x = torch.randn(8, *net.input_shape)
    with torch.no_grad():
        on_cpu = net(x)
        on_device = net.to(device)(x.to(device)).cpu()
    return float((on_device - on_cpu).abs().max() / on_cpu.abs().max().clamp_min(1e-12))


def library_checks(report: Report, device, archs) -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    for name, (make, shape) in layer_cases().items():
        worst = fused_against_reference(make, shape, device)
        bad = {k: v for k, v in worst.items() if not v <= 1e-4}
        report.add("library", ok=not bad, name=f"fused {name}", worst=worst, problems=bad or None,
                   summary=f"max relative difference {max(worst.values()):.1e}")
    for arch in archs:
        for method in methods_for(arch):
            diff = eval_on_both(arch, method, device)
            report.add("library", ok=diff <= 1e-4, name=f"eval {arch}/{method}", relative_difference=diff,
                       problems=None if diff <= 1e-4 else f"{device} and CPU outputs differ by {diff:.1e}",
                       summary=f"{device} vs cpu {diff:.1e}")


# ---- cells: train, compress and time every cell through bcrepro.cells ------------------------------------------------
def methods_for(arch: str) -> list[str]:
    """dense first, then every registered method with settings for ``arch`` (the workflow's cells)."""
    return ["dense"] + sorted(name for name, m in METHODS.items() if name != "dense" and arch in m.hyperparameters)


def has_mnist(data_root: Path) -> bool:
    return all((data_root / "MNIST" / "raw" / name).exists() for name in data.IDX_FILES)


def tiny_params(arch: str, method: str, epochs: int, validation: int) -> dict:
    """A method's settings shrunk to ``epochs`` epochs; iteration-counted schedules (DC, DNS) fit inside them."""
    defaults = get_method(method).params_for(arch)
    params = {"epochs": epochs, "validation_size": validation}
    if "kl_warmup_epochs" in defaults:
        params["kl_warmup_epochs"] = min(defaults["kl_warmup_epochs"], 1)
    if "kl_warmup_start_epochs" in defaults:
        params["kl_warmup_start_epochs"] = 0
    if "prune_iterations" in defaults:
        params.update(prune_iterations=[0, 5, 10], quantize_iteration=15)
    if "iter_stop" in defaults:
        params["iter_stop"] = [15] * len(defaults["iter_stop"])
    if isinstance(defaults.get("thresholds"), dict) and defaults["thresholds"].get("rule") == "auto":
        params["thresholds"] = {"rule": "auto", "max_error_increase": 1.0, "max_candidates": 4}
    if get_method(method).starts_from(arch):  # the one dense reference here saw the dense defaults' pixels
        params["preprocess"] = get_method("dense").params_for(arch)["preprocess"]
    return params


def run_dir_checks(run: Path, method: str, device: str) -> list[str]:
    """What a finished, compressed and timed cell must satisfy."""
    problems = []
    history = json.loads((run / "history.json").read_text())
    if not all(math.isfinite(r["loss"]) for r in history):
        problems.append("non-finite loss in history.json")
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("error_pct", "error_pruned_pct", "error_quantized_pct"):
        value = metrics.get(key)
        if value is not None and not value < CHANCE_ERROR_PCT - 10:
            problems.append(f"{key} {value:.1f} % is not below chance")
    final = final_error_pct(metrics)
    if (run / "slim.pt").exists() and final is not None:
        splits = load_dataset_for_run(json.loads((run / "run.json").read_text()), torch.device("cpu"))
        slim_error = error_rate(slim.load_slim(run / "slim.pt").eval(), splits.test_x, splits.test_y)
        if abs(slim_error - final) > 0.011:  # one test image of 10,000 flipping on rounding is tolerated
            problems.append(f"slimmed network's error {slim_error:.2f} % differs from the pruned {final:.2f} %")
    speed_path = run / "speed.json"
    if method != "dense":
        if not speed_path.exists():
            problems.append("no speed.json")
        else:
            records = json.loads(speed_path.read_text())
            if not records or not all(r["median_ms"] > 0 and r["device"].startswith(device) for r in records):
                problems.append(f"speed.json has no records or a non-positive time on {device}: {records[:2]}")
    return problems


def run_cell(arch: str, method: str, seed_root: Path, args, dataset: str, device: str) -> dict:
    """One cell, in a worker process: train, compress and (except dense) time it on ``device``, then check it."""
    run = seed_root / arch / method
    run.mkdir(parents=True, exist_ok=True)
    init = str(seed_root / arch / "dense" / "model.pt") if get_method(method).starts_from(arch) else None
    jobs = [("train", train_cell, dict(arch=arch, method=method, dataset=dataset, seed=0, data_root=args.data_root,
                                       download=False, params=tiny_params(arch, method, args.epochs, args.validation),
                                       init=init, device=device)),
            ("compress", compress_cell, dict(device=device))]
    if method != "dense":
        jobs.append(("speedup", speedup_cell, dict(device=device, **speed_options(args))))
    problems, seconds = [], {}
    for name, job, options in jobs:
        tic = time.perf_counter()
        status, why = logged_status(run / f"{name}.log", job, run, **options)
        seconds[name] = round(time.perf_counter() - tic, 1)
        if status != OK:
            problems.append(f"{name} failed (exit status {status}): {why}")
            break
    if not problems:
        problems += run_dir_checks(run, method, device)
    summary = ""
    if (run / "metrics.json").exists():
        metrics = json.loads((run / "metrics.json").read_text())
        summary = (f"error {metrics['error_pct']:.2f} % pruned {metrics['error_pruned_pct']} % "
                   f"architecture {'-'.join(map(str, metrics['architecture']))} {seconds}")
    return {"cell": f"{arch}/{method}", "ok": not problems, "problems": problems or None, "seconds": seconds,
            "summary": summary}


def speed_options(args) -> dict:
    return {"batch_sizes": args.speed_batch_sizes, "repeats": args.speed_repeats, "warmup": 2}


def cpu_compress_check(report: Report, arch: str, method: str, seed_root: Path, args) -> None:
    """compress (and speedup) on the CPU from the GPU-trained model: same thresholds and architecture."""
    gpu_run = seed_root / arch / method
    cpu_run = seed_root / "cpu" / arch / method
    if not (gpu_run / "metrics.json").exists():
        report.add("cpu_compress", ok=False, cell=f"{arch}/{method}", problems="the GPU cell has no metrics.json")
        return
    shutil.rmtree(cpu_run, ignore_errors=True)
    cpu_run.mkdir(parents=True)
    for name in ("run.json", "model.pt", "history.json"):
        shutil.copy2(gpu_run / name, cpu_run / name)
    status, why = logged_status(cpu_run / "compress.log", compress_cell, cpu_run, device="cpu")
    problems = [] if status == OK else [f"compress on the CPU failed: {why}"]
    if not problems:
        on_gpu, on_cpu = (json.loads((r / "metrics.json").read_text()) for r in (gpu_run, cpu_run))
        for key in ("architecture", "kept_weights", "bits"):
            if on_gpu[key] != on_cpu[key]:
                problems.append(f"{key}: {on_gpu[key]} on the GPU, {on_cpu[key]} on the CPU")
        gpu_t = on_gpu["thresholds"].get("thresholds")
        cpu_t = on_cpu["thresholds"].get("thresholds")
        if gpu_t is not None and cpu_t is not None and any(  # None: a layer without a threshold (DC, DNS)
                (a is None) != (b is None) or (a is not None and abs(a - b) > 1e-4 * max(1.0, abs(a)))
                for a, b in zip(gpu_t, cpu_t)):
            problems.append(f"thresholds {gpu_t} on the GPU, {cpu_t} on the CPU")
        for key in ("error_pct", "error_pruned_pct"):
            if on_gpu[key] is not None and abs(on_gpu[key] - on_cpu[key]) > 0.05:
                problems.append(f"{key}: {on_gpu[key]} on the GPU, {on_cpu[key]} on the CPU")
    report.add("cpu_compress", ok=not problems, cell=f"{arch}/{method}", problems=problems or None,
               summary="same thresholds, architecture and errors" if not problems else "")
    status, why = logged_status(cpu_run / "speedup.log", speedup_cell, cpu_run, device="cpu", **speed_options(args))
    report.add("cpu_speedup", ok=status == OK, cell=f"{arch}/{method}", problems=None if status == OK else why)


def resume_check(report: Report, seed_root: Path, args, dataset: str, device: str) -> None:
    """A two-epoch run with a time limit of 0 minutes: stopped after epoch 1, finished by the second call, left alone
    by the third."""
    run = seed_root / "resume" / "lenet300-bc-gnj"
    shutil.rmtree(run, ignore_errors=True)
    options = dict(arch="lenet300", method="bc-gnj", dataset=dataset, seed=0, data_root=args.data_root,
                   download=False, params=tiny_params("lenet300", "bc-gnj", args.epochs, args.validation),
                   max_minutes=0, device=device)
    codes, model_stamps = [], []
    for attempt in range(3):
        status, _ = logged_status(run / f"attempt{attempt}.log", train_cell, run, **options)
        codes.append(status)
        model_stamps.append((run / "model.pt").stat().st_mtime_ns if (run / "model.pt").exists() else None)
    history = json.loads((run / "history.json").read_text()) if (run / "history.json").exists() else []
    # bcrepro train's exit statuses: 3 = stopped by the time limit; with 2 epochs: stop, finish, nothing to do
    expected = [TIME_LIMIT if attempt < args.epochs - 1 else OK for attempt in range(3)]
    problems = []
    if codes != expected:
        problems.append(f"exit statuses {codes}, expected {expected}")
    if codes[-1] == OK and [r["epoch"] for r in history] != list(range(1, args.epochs + 1)):
        problems.append(f"history has epochs {[r['epoch'] for r in history]}, expected 1..{args.epochs}")
    if model_stamps[-1] != model_stamps[-2]:
        problems.append("the third call trained again (model.pt rewritten)")
    report.add("resume", ok=not problems, cell="lenet300/bc-gnj", codes=codes, problems=problems or None,
               summary=f"exit statuses {codes}")


def cell_checks(report: Report, args, archs, device: torch.device, out: Path) -> None:
    seed_root = out / "runs"
    dataset_for = {arch: ("mnist" if arch != "vgg16" and has_mnist(Path(args.data_root)) else "synthetic")
                   for arch in archs}
    selected = {arch: [m for m in methods_for(arch) if m == "dense" or not args.methods or m in args.methods]
                for arch in archs}
    with one_thread_pool(args.jobs) as pool:
        for stage in ("dense", "methods"):  # the dense references first: methods start from them
            futures = [pool.submit(run_cell, arch, m, seed_root, args, dataset_for[arch], device.type)
                       for arch in archs for m in selected[arch] if (m == "dense") == (stage == "dense")]
            for future in futures:
                report.add("cell", **future.result())
    checked = [(a, m) for a, m in (("lenet5", "bc-ghs"), ("lenet300", "dc")) if a in archs and m in selected[a]]
    for arch, method in checked:
        cpu_compress_check(report, arch, method, seed_root, args)
    if "lenet300" in archs:
        resume_check(report, seed_root, args, dataset_for["lenet300"], device.type)


# ---- times: step times and the projection ----------------------------------------------------------------------------
def step_time(arch: str, method: str, device, steps: int, workdir: Path) -> dict:
    """Median seconds per training step at the cell's configured batch size, through the library's loop on synthetic
    data held on the device (the second of two epochs of ``steps`` steps; the device synchronised at each step)."""
    registered = get_method(method)
    params = registered.params_for(arch)
    batch = params["batch_size"]
    shape = data.synthetic_shape_for_arch(arch)
    splits = data.load_dataset("synthetic", device=device, synthetic_shape=shape, synthetic_train=steps * batch,
                               synthetic_test=64)
    torch.manual_seed(0)
    net = models.build(arch, registered.layer_factory(arch, params))
    if registered.attach is not None:
        registered.attach(net, params)
    if registered.prepare is not None:
        registered.prepare(net, params)
    config = TrainConfig.from_params(dict(params, epochs=2, kl_warmup_epochs=min(1, params["kl_warmup_epochs"]),
                                          kl_warmup_start_epochs=0), seed=0)
    stamps: list[float] = []
    method_step = None if registered.after_step is None else registered.after_step(net, params)

    def after_step(global_step: int) -> None:
        if method_step is not None:
            method_step(global_step)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        stamps.append(time.perf_counter())

    out = workdir / f"{arch}-{method}"
    shutil.rmtree(out, ignore_errors=True)  # a rerun must time fresh steps, not resume a finished checkpoint
    train(net, splits, config, out, device, after_step=after_step)
    second = stamps[steps:]
    gaps = [b - a for a, b in zip(second, second[1:])]
    per_step = statistics.median(gaps) if gaps else float("nan")
    return {"arch": arch, "method": method, "batch": batch, "seconds_per_step": per_step, "steps_timed": len(gaps),
            "images_per_second": batch / per_step, "paper_epochs": params["epochs"],
            "paper_hours_per_seed": per_step * math.ceil(TRAIN_IMAGES[arch] / batch) * params["epochs"] / 3600}


def concurrent_step_time(n: int, steps: int, device: torch.device, workdir: Path) -> float | None:
    """Median seconds per LeNet-5 BC-GHS step while ``n`` processes train at once on the device."""
    if n <= 1:
        return None
    with one_thread_pool(n) as pool:
        futures = [pool.submit(step_time, "lenet5", "bc-ghs", device, steps, workdir / f"concurrent{i}")
                   for i in range(n)]
        times = [future.result()["seconds_per_step"] for future in futures]
    return statistics.median(times)


def projection(report: Report, times: list[dict], concurrent: float | None, n: int) -> None:
    lenet = sum(t["paper_hours_per_seed"] for t in times if t["arch"] != "vgg16") * PAPER_SEEDS
    vgg = sum(t["paper_hours_per_seed"] for t in times if t["arch"] == "vgg16") * PAPER_SEEDS
    per_step = {(t["arch"], t["method"]): t["seconds_per_step"] for t in times}
    alone = per_step.get(("lenet5", "bc-ghs"))
    record = {"serial_hours": lenet + vgg, "lenet_hours": lenet, "vgg_hours": vgg, "concurrency": n,
              "bc_ghs_over_dense": {arch: per_step[(arch, "bc-ghs")] / per_step[(arch, "dense")]
                                    for arch, _ in per_step if (arch, "bc-ghs") in per_step
                                    and (arch, "dense") in per_step}}
    if concurrent and alone:
        gain = n * alone / concurrent  # throughput of n jobs sharing the GPU over one job alone
        record.update(concurrency_throughput_gain=gain, concurrent_hours=lenet / gain + vgg)
    summary = f"paper config on one GPU: {record['serial_hours']:.1f} h serial"
    if "concurrent_hours" in record:
        summary += (f", {record['concurrent_hours']:.1f} h with {n} LeNet jobs at once "
                    f"({record['concurrency_throughput_gain']:.1f}x LeNet throughput)")
    summary += "; BC-GHS over dense per step: " + ", ".join(
        f"{arch} {ratio:.2f}x" for arch, ratio in record["bc_ghs_over_dense"].items())
    report.add("projection", name="paper config", summary=summary, **record)


def time_checks(report: Report, args, archs, device: torch.device, out: Path) -> None:
    times = []
    for arch in archs:
        for method in methods_for(arch):
            record = step_time(arch, method, device, args.time_steps, out / "timing")
            times.append(record)
            report.add("step_time", cell=f"{arch}/{method}", ok=math.isfinite(record["seconds_per_step"]),
                       summary=f"{1e3 * record['seconds_per_step']:.2f} ms/step at batch {record['batch']}, "
                               f"{record['images_per_second']:.0f} images/s, "
                               f"{record['paper_hours_per_seed']:.2f} h per seed at the paper budget", **record)
    concurrent = (concurrent_step_time(args.concurrency, args.time_steps, device, out / "timing")
                  if "lenet5" in archs else None)
    projection(report, times, concurrent, args.concurrency)


# ---- paper: the speed-ups of the paper's learned architectures -------------------------------------------------------
def paper_speedups(report: Report, args, archs, device: torch.device) -> None:
    for arch in archs:
        kept = paper_architecture(arch, "bc-ghs")
        net, masks = cut_network(arch, kept)
        modules = speed.variants(net, masks, stock_pooling=speed.stock_pooling_for(device, args.compile))
        records = speed.measure(modules, net.input_shape, args.paper_batch_sizes, device,
                                repeats=args.paper_repeats, warmup=10, threads=args.threads,
                                memory_format=args.memory_format, compiler=args.compile)
        gains = speed.speedups(records)
        slim_gains = [g for g in gains if g["variant"] == "slim"]
        cut = architecture(net, masks)
        ok = cut == kept and bool(slim_gains) and all(g["speedup"] > 0 for g in slim_gains)
        summary = f"{'-'.join(map(str, cut))}: slim over original " + ", ".join(
            f"{g['speedup']:.2f}x at batch {g['batch']}" for g in slim_gains)
        if slim_gains:
            summary += f" ({slim_gains[0]['flops_ratio']:.1f}x fewer multiply-adds)"
        report.add("paper_speed", ok=ok, cell=f"{arch}/bc-ghs", architecture=cut, records=records, speedups=gains,
                   problems=None if ok else f"cut to {cut}, paper {kept}", summary=summary)


# ---- main ------------------------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_check", help="folder for results.jsonl and the runs")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cuda or cpu (smoke test)")
    parser.add_argument("--data-root", default="data", help="real MNIST is used when <data-root>/MNIST/raw has it")
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    parser.add_argument("--methods", nargs="+", help="only these methods (dense always runs); default all")
    parser.add_argument("--skip", nargs="*", default=[], choices=STEPS)
    parser.add_argument("--epochs", type=int, default=2, help="epochs of every cell (at least 2: resume check)")
    parser.add_argument("--validation", type=int, default=1000, help="validation images of every cell")
    parser.add_argument("--jobs", type=int, default=4, help="cells trained at once")
    parser.add_argument("--speed-batch-sizes", type=int, nargs="+", default=[1, 64, 1024],
                        help="batch sizes of the cells' speedup")
    parser.add_argument("--speed-repeats", type=int, default=10, help="repeats of the cells' speedup")
    parser.add_argument("--time-steps", type=int, default=30, help="steps per epoch of the step-time measurement")
    parser.add_argument("--concurrency", type=int, default=4, help="LeNet jobs sharing the GPU in the projection")
    parser.add_argument("--paper-batch-sizes", type=int, nargs="+", default=[1, 64, 1024, 8192])
    parser.add_argument("--paper-repeats", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of the paper step's timing on cpu")
    parser.add_argument("--memory-format", choices=sorted(speed.MEMORY_FORMATS), default="contiguous",
                        help="layout of the paper step's inputs and conv weights (bcrepro speedup --memory-format)")
    parser.add_argument("--compile", choices=speed.COMPILERS, default="none",
                        help="how the paper step's networks run: eager, or frozen TorchScript (bcrepro speedup "
                             "--compile)")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the resume check stops after the first)")
    if args.time_steps < 3:
        parser.error("--time-steps must be at least 3 (steps of the second epoch are timed against each other)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: --device cuda but torch sees no CUDA device; use --device cpu for a smoke run")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    args.data_root = str(Path(args.data_root).resolve())
    report = Report(out / "results.jsonl")
    report.add("start", name=str(device), summary=f"torch {torch.__version__}, "
               f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}",
               torch=torch.__version__, args=vars(args))
    archs = args.archs
    if "library" not in args.skip:
        library_checks(report, device, archs)
    if "cells" not in args.skip:
        cell_checks(report, args, archs, device, out)
    if "times" not in args.skip:
        time_checks(report, args, archs, device, out)
    if "paper" not in args.skip:
        paper_speedups(report, args, archs, device)
    print(f"\n{len(report.failed)} check(s) failed" + "".join(f"\n  {line}" for line in report.failed))
    report.add("end", ok=not report.failed, name="summary", failed=report.failed)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
