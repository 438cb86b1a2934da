"""MLflow tracking for the pipeline: one MLflow run per cell (arch, method, seed), opened by the train job and
continued by the compress, speed-up and figures jobs, each a separate process.

    uri = sqlite_uri("results/mlflow.db")
    init_store(uri, "bcrepro", "results/mlartifacts")          # once, by one process (the init_mlflow rule)
    with CellRun("results/runs/lenet300/bc-gnj/seed0", uri=uri, experiment="bcrepro", mode="direct",
                 rule="train", cell={"arch": "lenet300", "method": "bc-gnj", "seed": 0, "dataset": "mnist"}) as run:
        run.log_params(hparams)
        run.log_metrics({"train/loss": loss, "val/error": err}, step=epoch)
        run.log_artifact("results/runs/lenet300/bc-gnj/seed0/model.pt")

Modes (see ``docs/workflow.md``, "MLflow"), one sink each in ``sinks``:

- ``direct``: every job logs live to the store at ``uri`` (SQLite on a local disk, or an ``http://`` server). The
  store must exist before the jobs start: several processes creating one SQLite file at once crash in MLflow's
  schema migrations, so jobs never create it; ``init_store`` does, once.
- ``deferred``: jobs never touch MLflow (SQLite on NFS/Lustre is unsafe); each appends its events as JSON lines to
  ``<run_dir>/tracking.jsonl``, and one local process calls ``import_deferred`` to replay them into the store.
- ``off``: nothing is logged.

The run dir's ``tracking.json`` remembers which MLflow run belongs to it, so later jobs (and later imports) continue
that run. MLflow's rule that a param never changes value is softened: a job that logs a different value for an
existing param does not fail; the new value is kept as the tag ``param_changed.<key>`` and a warning is logged, while
the param keeps the value of the job that logged it first (the training job, whose model the later jobs read).

The modules: ``store`` (URIs, clients, ``init_store``, ``find_runs``, the run dir's ``tracking.json``), ``writer``
(MLflow's limits and the writes to one run, shared by the direct mode and the import), ``sinks`` (the three modes),
``deferred`` (the events file and its import), ``cell_run`` (``CellRun`` and the tags of a cell's run).

MLflow is imported lazily, inside functions, so this package imports without it as long as tracking is off or
deferred.
"""
from .cell_run import CELL_KEYS, CellRun, cell_tags, flatten_params, git_commit, job_id, run_name
from .deferred import EVENTS_FILE, import_deferred
from .sinks import MODES
from .store import (DEFAULT_STORE, EXPERIMENT_TAGS, STATE_FILE, default_uri, find_runs, init_store, normalize_uri,
                    read_state, sqlite_uri)
from .writer import METRICS_PER_BATCH, PARAM_VALUE_MAX, PARAMS_TAGS_PER_BATCH, TAG_VALUE_MAX

__all__ = ["CELL_KEYS", "DEFAULT_STORE", "EVENTS_FILE", "EXPERIMENT_TAGS", "METRICS_PER_BATCH", "MODES",
           "PARAMS_TAGS_PER_BATCH", "PARAM_VALUE_MAX", "STATE_FILE", "TAG_VALUE_MAX", "CellRun", "cell_tags",
           "default_uri", "find_runs", "flatten_params", "git_commit", "import_deferred", "init_store", "job_id",
           "normalize_uri", "read_state", "run_name", "sqlite_uri"]
