"""Configuration checks and the helpers the rules share. The cells, hyper-parameters and paths are decided here."""
import json
import re
import shlex
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from bcrepro import tracking
from bcrepro.data import dataset_for_arch
from bcrepro.methods import get_method
from bcrepro.methods.schedules import SHARED_DEFAULTS



def coerce_command_line_values():
    """``--config seeds=[0,1] download=false mlflow_uri=null`` reaches the Snakefile as strings; type them as YAML."""
    import yaml

    for key in ("seeds", "download", "mlflow_uri"):
        value = config.get(key)
        if isinstance(value, list):
            config[key] = [yaml.safe_load(v) if isinstance(v, str) else v for v in value]
        elif isinstance(value, str) and value.lower() in ("true", "false", "null", "none"):
            config[key] = yaml.safe_load(value.lower().replace("none", "null"))


coerce_command_line_values()
validate(config, "../schemas/config.schema.yaml")

# The rules write their paths out in full (results/runs/{arch}/{method}/seed{seed}/...), as Snakemake's linter asks;
# the helpers below build the same paths for lists of cells.
RUNS = "results/runs"
GPU_SLOTS = "results/gpu_slots"  # lock files by which CUDA jobs spread over a machine's GPUs (bcrepro.gpu_slots)
# Rough CPU minutes per epoch at the paper's batch size, for the cluster's time limit (doubled below for safety).
MINUTES_PER_EPOCH = {"lenet300": 0.3, "lenet5": 2.0, "vgg16": 3.0}


def configured_methods():
    """The methods of the table: ``dense`` (the original network) always comes first, as the reference."""
    return ["dense"] + [m for m in config["methods"] if m != "dense"]


def arch_runs(arch, method):
    """Whether the table has the cell (arch, method): ``arch_methods`` narrows an architecture's methods (the paper's
    VGG rows are BC only); dense always runs."""
    allowed = config["arch_methods"].get(arch)
    return method == "dense" or allowed is None or method in allowed


def cells(methods=None):
    """(arch, method, seed) of every run of the table, optionally only the given methods."""
    methods = configured_methods() if methods is None else methods
    return [(a, m, s) for a in config["archs"] for m in methods if arch_runs(a, m) for s in config["seeds"]]


def cell_params(arch, method):
    """Hyper-parameters of one (arch, method): the library's defaults updated by ``hyperparameters`` of the config."""
    overrides = config["hyperparameters"].get(method, {}).get(arch, {})
    return get_method(method).params_for(arch, overrides)


def check_cells():
    """Fail before any job when a method, architecture or hyper-parameter is unknown, or a hyper-parameter's value does
    not fit the type, range or per-layer length its method declares (``Method.params_for``), naming the config key.

    Every ``hyperparameters`` entry is checked against the registry, also for cells not run this time (``--config
    archs=[lenet300]`` keeps the LeNet-5 settings of config.yaml, and a typo there is still a typo).
    """
    for method in configured_methods():
        try:
            get_method(method)
        except ValueError as err:
            raise WorkflowError(f"config key 'methods': {err}") from None
    for method, per_arch in config["hyperparameters"].items():
        try:
            registered = get_method(method)
        except ValueError as err:
            raise WorkflowError(f"config key 'hyperparameters.{method}': {err}") from None
        for arch, overrides in per_arch.items():
            try:
                registered.params_for(arch, overrides)
            except ValueError as err:
                raise WorkflowError(f"config key 'hyperparameters.{method}.{arch}': {err}") from None
    for arch, methods in config["arch_methods"].items():
        for method in methods:
            try:
                get_method(method)
            except ValueError as err:
                raise WorkflowError(f"config key 'arch_methods.{arch}': {err}") from None
    for arch, method, _ in cells():
        try:
            cell_params(arch, method)
        except ValueError as err:
            raise WorkflowError(f"config keys archs, methods and arch_methods: {err}") from None


def own_reference(arch, method):
    """The ``references`` entry of the cell (arch, method): the dense settings of a reference of its own, which it
    starts from instead of the shared ``{arch}/dense/seed{seed}``; None where it starts from the shared one, or from
    none."""
    return config["references"].get(method, {}).get(arch)


def reference_params(arch, method):
    """Hyper-parameters of the own reference of (arch, method): the dense cell's (``cell_params(arch, "dense")``)
    updated by its ``references`` entry."""
    own = own_reference(arch, method)
    if own is None:
        raise WorkflowError(f"{arch}/{method} has no reference of its own (config key 'references.{method}.{arch}'); "
                            f"it starts from {RUNS}/{arch}/dense/seed<n>/")
    dense = config["hyperparameters"].get("dense", {}).get(arch, {})
    return get_method("dense").params_for(arch, {**dense, **own})


def check_references():
    """Fail before any job when a ``references`` entry names an unknown method, a method that does not start from a
    dense reference on that architecture, a dense hyper-parameter the registry refuses, or other pixels
    (``preprocess``) than its method's cell trains on, naming the config key. Every entry is checked, as in
    ``check_cells``, also for cells not run this time."""
    for method, per_arch in config["references"].items():
        try:
            registered = get_method(method)
        except ValueError as err:
            raise WorkflowError(f"config key 'references.{method}': {err}") from None
        for arch in per_arch:
            key = f"references.{method}.{arch}"
            if not registered.starts_from(arch):
                raise WorkflowError(f"config key '{key}': method {method!r} does not start from a dense reference on "
                                    f"{arch!r}, so it has none to replace; remove the entry")
            try:
                reference = reference_params(arch, method)
                own = cell_params(arch, method)
            except ValueError as err:
                raise WorkflowError(f"config key '{key}': {err}") from None
            if reference["preprocess"] != own["preprocess"]:
                raise WorkflowError(
                    f"config key '{key}': the reference's preprocess {reference['preprocess']!r} differs from the "
                    f"{method} cell's {own['preprocess']!r}, and the reference must see the pixels the method trains "
                    f"on: set the same preprocess in '{key}' and 'hyperparameters.{method}.{arch}'")


check_cells()
check_references()

wildcard_constraints:
    arch="|".join(config["archs"]),
    method="|".join(map(re.escape, configured_methods())),
    seed=r"\d+",
    dataset=r"[a-z0-9_]+",


def dataset(arch):
    """The data set ``arch`` trains on: the config's ``datasets`` where it names one, else the paper's pairing."""
    return config["datasets"].get(arch) or dataset_for_arch(arch)


def mlflow_uri():
    return config["mlflow_uri"] or tracking.sqlite_uri(Path("results/mlflow.db").resolve())


def tracking_args(rule_name):
    """The CLI options that make a job log to the cell's MLflow run."""
    return (f"--mlflow-uri {shlex.quote(mlflow_uri())} --mlflow-experiment {shlex.quote(config['mlflow_experiment'])} "
            f"--mlflow-mode {config['mlflow_mode']} --rule {rule_name}")


def uses_gpu(device):
    """A job asks for a GPU when its configured device is CUDA (or auto on a machine that has one)."""
    if device == "cuda":
        return 1
    if device == "auto":
        import torch

        return int(torch.cuda.is_available())
    return 0


def runtime_minutes(arch, epochs):
    """Minutes a training job of ``epochs`` may take (a cluster's time limit): twice the rough CPU estimate, at least
    15."""
    epochs = epochs * config["epoch_scale"]
    return int(max(15, 2 * epochs * MINUTES_PER_EPOCH[arch]))


def train_runtime(wildcards):
    return runtime_minutes(wildcards.arch, cell_params(wildcards.arch, wildcards.get("method", "dense"))["epochs"])


def reference_runtime(wildcards):
    return runtime_minutes(wildcards.arch, reference_params(wildcards.arch, wildcards.method)["epochs"])


def run_files(name, methods=None):
    return [f"{RUNS}/{a}/{m}/seed{s}/{name}" for a, m, s in cells(methods)]


def compressed_methods():
    """Every method but the dense reference: their speed-ups are measured (slimmed; CSR too for single-weight
    pruning)."""
    return [m for m in configured_methods() if m != "dense"]


def store_input(wildcards):
    """Direct logging needs the store created once beforehand (concurrent creation races in MLflow's migrations)."""
    return ["results/mlflow/store.json"] if config["mlflow_mode"] == "direct" else []


TABLE_FILES = [f"results/{name}" for name in
               ("table.csv", "table.md", "table.tex", "architectures.csv", "architectures.md")]


def figure_files():
    per_arch = [f"results/figures/{kind}_{arch}.png" for kind in ("error_vs_compression", "architecture")
                for arch in config["archs"]]
    per_run = [f"results/figures/runs/{a}/{m}/seed{s}/training.png" for a, m, s in cells()]
    speed = ["results/figures/speedup.png"] if cells(compressed_methods()) else []
    return per_arch + per_run + speed


def final_targets():
    targets = TABLE_FILES + figure_files() + run_files("speed.json", compressed_methods())
    if config["mlflow_mode"] == "deferred":
        targets.append("results/mlflow/imported.json")
    return targets


def runs_root(wildcards):
    """The folder of every run folder, which the table and figures read."""
    return RUNS


def run_folder(wildcards, output):
    """The run folder of a job's cell: the folder of its first output."""
    return str(Path(output[0]).parent)


def params_json(arch, method, params):
    """``params`` of a (arch, method) job for its --params-json. The settings every method shares are left out where
    they are at their shared defaults (``SHARED_DEFAULTS``: ``preprocess``, ``kl_images``) and the method's default is
    the same, so the library fills them in again: a setting added since a run was made then leaves the job's command,
    and Snakemake's params trigger, as they were, instead of declaring every finished run out of date. A method whose
    own default differs (Sparse VD's centred pixels) has it stated either way."""
    defaults = get_method(method).hyperparameters[arch]
    stated = {k: v for k, v in params.items()
              if not (k in SHARED_DEFAULTS and v == SHARED_DEFAULTS[k] == defaults.get(k))}
    return json.dumps(stated, sort_keys=True)


def train_params(wildcards):
    """The cell's hyper-parameters (``cell_params``) for its job's --params-json."""
    method = wildcards.get("method", "dense")
    return params_json(wildcards.arch, method, cell_params(wildcards.arch, method))


def reference_params_json(wildcards):
    """The own reference's hyper-parameters (``reference_params``) for its job's --params-json, as a dense cell's."""
    return params_json(wildcards.arch, "dense", reference_params(wildcards.arch, wildcards.method))


def data_inputs(wildcards):
    """What every training job reads first: the data set's staging stamp, and the MLflow store in direct mode."""
    return {"data": f"results/data/{dataset(wildcards.arch)}.json", "store": store_input(wildcards)}


def reference_model(arch, method, seed):
    """The dense reference the cell (arch, method, seed) starts from: its own where ``references`` gives it one
    (``pretrain_own``), else the shared one (``pretrain``)."""
    if own_reference(arch, method) is not None:
        return f"{RUNS}/{arch}/{method}/seed{seed}/reference/model.pt"
    return f"{RUNS}/{arch}/dense/seed{seed}/model.pt"


def reference_methods():
    """The methods with an own reference on some architecture (``references``), in the table or only in a study."""
    return sorted(config["references"])


def train_inputs(wildcards):
    inputs = data_inputs(wildcards)
    method = wildcards.get("method", "dense")
    if get_method(method).starts_from(wildcards.arch):
        inputs["init"] = reference_model(wildcards.arch, method, wildcards.seed)
    return inputs


def time_limit_option(wildcards):
    """--max-minutes when train_max_minutes is set: the job stops after a checkpoint, and a rerun resumes it."""
    minutes = config["train_max_minutes"]
    return "" if minutes is None else f"--max-minutes {minutes}"


def init_option(wildcards, input):
    return f"--init {shlex.quote(input.init)}" if "init" in input.keys() else ""


def compress_inputs(wildcards):
    """The trained model, and the dense reference's where the threshold rule states its budget against it."""
    run = f"{RUNS}/{wildcards.arch}/{wildcards.method}/seed{wildcards.seed}"
    inputs = {"model": f"{run}/model.pt"}
    thresholds = cell_params(wildcards.arch, wildcards.method).get("thresholds")
    if wildcards.method != "dense" and isinstance(thresholds, dict) and thresholds.get("rule") == "sparsest":
        inputs["reference"] = f"{RUNS}/{wildcards.arch}/dense/seed{wildcards.seed}/model.pt"
    return inputs


def reference_option(wildcards, input):
    return f"--reference-run {shlex.quote(str(Path(input.reference).parent))}" if "reference" in input.keys() else ""
