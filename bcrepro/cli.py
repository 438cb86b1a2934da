"""The ``bcrepro`` command (also ``python -m bcrepro``). The workflow's rules call it; users can too.

    bcrepro train --arch lenet300 --method bc-gnj --dataset mnist --data-root data --seed 0 --out runs/gnj
    bcrepro compress --run runs/gnj
    bcrepro extend --run runs/gnj --epochs 300 --out runs/gnj-300
    bcrepro speedup --run runs/gnj
    bcrepro methods

Workflow verbs (each one Snakemake rule): ``stage`` (check or download a data set), ``mlflow-init`` (create the store
once), ``table`` and ``figures`` (aggregate ``results/runs``), ``mlflow-import`` (replay deferred runs into the store),
``search`` and ``search-report`` (a hyper-parameter study with Optuna, ``bcrepro.search``).
Run-level verbs log to MLflow with ``--mlflow-uri URI [--mlflow-mode direct|deferred]`` (``bcrepro.tracking``).

Errors (unknown names, bad parameters, missing data, a diverging loss) print one line naming the problem and exit
with status 1 (2 for command-line usage errors); no output file is left half-written. ``--max-minutes`` stops a
training run cleanly with status 3 after a checkpoint; the same command resumes it.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import yaml

from . import data, models, tracking
from .atomic import write_json
from .cells import Tracking, compress_cell, extend_cell, open_cell_run, speedup_cell, train_cell
from .cells.options import DEFAULT_EXPERIMENT
from .cells.timing import DEFAULT_BATCH_SIZES
from .deploy import speed
from .errors import UsageError
from .methods import METHODS
from .runs import METRICS_FILE, REFERENCE_DIR, RUN_FILE, compressed_cells
from .cells.pool import FAILED, OK, TIME_LIMIT, USER_ERRORS
from .train import TimeLimitReached

log = logging.getLogger("bcrepro")


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


def parse_json_option(name: str, text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(f"{name} is not valid JSON ({err}): {text!r}") from None


def tracking_options(args) -> Tracking:
    return Tracking(uri=args.mlflow_uri, experiment=args.mlflow_experiment, mode=args.mlflow_mode, rule=args.rule)


def cmd_train(args) -> None:
    params = {**read_params_file(args.params), **read_params_json(args.params_json)}
    train_cell(args.out, arch=args.arch, method=args.method, dataset=args.dataset, seed=args.seed,
               data_root=args.data_root, download=not args.no_download, params=params, init=args.init,
               epochs=args.epochs, epoch_scale=args.epoch_scale, max_minutes=args.max_minutes,
               snapshot_epochs=args.snapshot_epochs or (), device=args.device, gpu_slots=args.gpu_slots,
               jobs_per_gpu=args.jobs_per_gpu, tracking=tracking_options(args))


def cmd_extend(args) -> None:
    extend_cell(args.run, args.out, epochs=args.epochs, data_root=args.data_root,
                download=False if args.no_download else None, max_minutes=args.max_minutes,
                snapshot_epochs=args.snapshot_epochs or (), device=args.device, gpu_slots=args.gpu_slots,
                jobs_per_gpu=args.jobs_per_gpu, tracking=tracking_options(args))


def cmd_compress(args) -> None:
    thresholds = None
    if args.thresholds_json is not None:
        thresholds = parse_json_option("--thresholds-json", args.thresholds_json)
    compress_cell(args.run, thresholds=thresholds, reference_run=args.reference_run, device=args.device,
                  gpu_slots=args.gpu_slots, jobs_per_gpu=args.jobs_per_gpu, tracking=tracking_options(args))


def cmd_speedup(args) -> None:
    speedup_cell(args.run, device=args.device, batch_sizes=args.batch_sizes, repeats=args.repeats,
                 warmup=args.warmup, threads=args.threads, stock_pooling=args.stock_pooling,
                 memory_format=args.memory_format, compiler=args.compile, system_allocator=args.system_allocator,
                 tracking=tracking_options(args))


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
        with open_cell_run(tracking_options(args), json.loads((run_dir / RUN_FILE).read_text()), run_dir,
                           "figures") as tracker:
            tracker.log_artifact(run_figures, "figures")


def cmd_record(args) -> None:
    from .report import record  # matplotlib, seaborn and pandas are only needed here
    out = Path(args.out)
    if args.runs is not None:
        copied = record.copy_cells(Path(args.runs), out)
        cells = {path.parent.parent if path.parent.name == REFERENCE_DIR else path.parent for path in copied}
        log.info("copied %d files of %d cells into %s", len(copied), len(cells), out / record.RUNS_DIR)
    written = record.regenerate(out)
    log.info("wrote %d tables and figures under %s", len(written), out)


def cmd_methods(args) -> None:
    for name, method in sorted(METHODS.items()):
        print(f"{name:10s} {method.description} (architectures: {', '.join(sorted(method.hyperparameters))})")


def cmd_search(args) -> None:
    """One worker of a hyper-parameter study (``bcrepro.search``); the workflow's ``search_worker`` jobs run it:

        bcrepro search --study sws_lenet5 --storage sqlite:///results/search/sws_lenet5/study.db --arch lenet5 \\
            --method sws --dataset mnist --init results/runs/lenet5/dense/seed0/model.pt --epochs 30 \\
            --params-json '{"batch_size": 256}' --space-file space.yaml --max-validation-error-pct 1.2 \\
            --trials 16 --out results/search/sws_lenet5/trials
    """
    from . import search  # optuna is only needed here

    settings = search.TrialSettings(
        method=args.method, arch=args.arch, dataset=args.dataset, seed=args.seed, epochs=args.epochs,
        params=read_params_json(args.params_json), data_root=args.data_root, download=not args.no_download,
        init=args.init, reference=args.reference_run, device=args.device, tracking=tracking_options(args),
        budget=search.Budget(args.max_validation_error_pct, args.max_error_increase))
    summary = search.run_search(args.study, args.storage, settings, search.read_space(args.space_json,
                                                                                     args.space_file),
                                args.trials, args.out, heartbeat=args.heartbeat)
    if args.stamp:
        write_json(summary, Path(args.stamp))


def cmd_search_report(args) -> None:
    """A study's table and best configuration; the workflow's ``search_report`` rule runs it:

        bcrepro search-report --study sws_lenet5 --storage sqlite:///results/search/sws_lenet5/study.db \\
            --out results/search/sws_lenet5
    """
    from . import search  # optuna is only needed here

    for path in search.write_report(args.study, args.storage, args.out):
        log.info("wrote %s", path)


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

    p = verbs.add_parser("extend", help="train a finished run on to more epochs, into a new run directory (the "
                                        "longer run, when its learning rate does not depend on the run's length)")
    p.add_argument("--run", required=True, help="a finished run directory (its checkpoint.pt is where it goes on)")
    p.add_argument("--epochs", type=int, required=True, help="the longer run's epochs")
    p.add_argument("--out", required=True, help="the longer run's directory; rerunning resumes it")
    p.add_argument("--data-root", help="where data sets live (default: the run's)")
    p.add_argument("--no-download", action="store_true", help="never try to download missing data")
    p.add_argument("--max-minutes", type=float,
                   help="stop after the epoch that ends past this wall time, exit 3; rerunning resumes")
    p.add_argument("--snapshot-epochs", type=int, nargs="+", metavar="N",
                   help="also keep the network after these epochs in OUT/epoch<N>/")
    add_device_args(p)
    add_tracking_args(p)
    p.set_defaults(func=cmd_extend)

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
    p.add_argument("--batch-sizes", type=int, nargs="+", default=list(DEFAULT_BATCH_SIZES))
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

    p = verbs.add_parser("search", help="one worker of an Optuna study of a method's hyper-parameters: the fewest "
                                        "kept weights within a validation-error budget (resumable; run several)")
    p.add_argument("--study", required=True, help="the study's name in the storage")
    p.add_argument("--storage", required=True,
                   help="Optuna storage URL shared by the workers, e.g. sqlite:///results/search/NAME/study.db")
    p.add_argument("--arch", required=True, choices=sorted(models.ARCHITECTURES))
    p.add_argument("--method", required=True, help=f"one of {sorted(METHODS)}")
    p.add_argument("--dataset", required=True, choices=sorted(data.DATASETS))
    p.add_argument("--data-root", default="data")
    p.add_argument("--no-download", action="store_true")
    p.add_argument("--seed", type=int, default=0, help="training seed of every trial (and of the dense reference)")
    p.add_argument("--epochs", type=int, help="epochs of every trial (default: the method's)")
    p.add_argument("--init", help="a dense run's model.pt every trial starts from")
    p.add_argument("--reference-run", metavar="DIR",
                   help="the dense run the budget's --max-error-increase is stated against (default: --init's folder)")
    p.add_argument("--params-json", help="hyper-parameters fixed for every trial, as a JSON object")
    space = p.add_mutually_exclusive_group(required=True)
    space.add_argument("--space-json", help="the search space as a JSON object (docs/workflow.md)")
    space.add_argument("--space-file", help="the search space in a YAML or JSON file")
    p.add_argument("--max-validation-error-pct", type=float,
                   help="budget: the compressed network's validation error at most this (percent)")
    p.add_argument("--max-error-increase", type=float,
                   help="budget: at most this many points over the dense reference's validation error")
    p.add_argument("--trials", type=int, required=True,
                   help="the study's total of finished trials (not this worker's share); rerun to resume")
    p.add_argument("--heartbeat", type=float, default=30.0,
                   help="seconds between a running trial's heartbeats; a trial silent for 4 of them is taken as "
                        "interrupted and tried again (default 30)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--out", required=True, help="folder of the trials' run directories (trial0000/, ...)")
    p.add_argument("--stamp", help="write this worker's summary (JSON) here when the study is complete")
    add_tracking_args(p)
    p.set_defaults(func=cmd_search)

    p = verbs.add_parser("search-report", help="a study's table (study.csv, study.md) and best.json")
    p.add_argument("--study", required=True)
    p.add_argument("--storage", required=True)
    p.add_argument("--out", required=True, help="folder for study.csv, study.md and best.json")
    p.set_defaults(func=cmd_search_report)
    return parser


def main(argv=None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    try:
        args.func(args)
    except TimeLimitReached as err:
        print(f"bcrepro {args.verb}: {err}", file=sys.stderr)
        return TIME_LIMIT
    except USER_ERRORS as err:
        print(f"bcrepro {args.verb}: error: {err}", file=sys.stderr)
        return FAILED
    return OK


if __name__ == "__main__":
    sys.exit(main())
