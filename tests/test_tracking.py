"""MLflow tracking: one run per cell across the train -> compress jobs, live (direct) or replayed from files
(deferred), and a store that survives eight jobs writing at once."""
import json
import multiprocessing
import os
import subprocess
import sys

import pytest

from bcrepro import tracking
from bcrepro.tracking import CellRun, find_runs, import_deferred, init_store, sqlite_uri
from bcrepro.tracking.writer import MlflowWriter
from conftest import REPO

mlflow = pytest.importorskip("mlflow")

CELL = {"arch": "lenet300", "method": "bc-gnj", "seed": 0, "dataset": "mnist"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One initialised SQLite store for the module (creating one costs seconds of migrations); each test gets its
    own experiment in it."""
    root = tmp_path_factory.mktemp("store")
    uri = sqlite_uri(root / "results" / "mlflow.db")
    init_store(uri, "bootstrap", root / "results" / "mlartifacts")
    return uri, root


@pytest.fixture
def experiment(store, request):
    uri, root = store
    name = request.node.name
    init_store(uri, name, root / "results" / "mlartifacts" / name)
    return name


@pytest.fixture(autouse=True)
def local_job(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("PBS_JOBID", raising=False)


def client_for(uri):
    return mlflow.MlflowClient(tracking_uri=uri)


def artifact_paths(client, run_id, path=None):
    """Every file under a run's artifacts, as paths relative to the artifact root."""
    found = []
    for info in client.list_artifacts(run_id, path):
        found.extend(artifact_paths(client, run_id, info.path) if info.is_dir else [info.path])
    return sorted(found)


def steps(client, run_id, key):
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)]


def train_then_compress(run_dir, *, uri, experiment, mode, monkeypatch):
    """What the train and compress jobs of one cell log, in two CellRuns as two jobs would."""
    model = run_dir / "model.pt"
    compressed = run_dir / "compressed"
    monkeypatch.setenv("SLURM_JOB_ID", "111")
    with CellRun(run_dir, uri=uri, experiment=experiment, mode=mode, rule="train", cell=CELL) as run:
        run.log_params({"lr": 0.001, "prior": {"kind": "gnj", "scale": 1}, "layers": [300, 100], "note": None,
                        "long": "x" * 7000})
        for epoch in range(3):
            run.log_metrics({"train/loss": 1.0 / (epoch + 1), "val/error": 0.5 - 0.1 * epoch}, step=epoch)
        model.write_bytes(b"weights")
        run.log_artifact(model, artifact_path="checkpoints")
        train_id = run.run_id
    monkeypatch.setenv("SLURM_JOB_ID", "222")
    with CellRun(run_dir, uri=uri, experiment=experiment, mode=mode, rule="compress", cell=CELL) as run:
        run.log_params({"lr": 0.001, "compress": {"bits": 8}})
        run.log_metrics({"error_pct": 1.8, "gone": None, "nan": float("nan"), "name": "x"})
        compressed.mkdir()
        (compressed / "weights.npz").write_bytes(b"npz")
        (compressed / "masks.npz").write_bytes(b"masks")
        run.log_artifact(compressed)
        compress_id = run.run_id
    return train_id, compress_id


def assert_cell_logged(uri, runs, run_id):
    """The train and compress jobs' params, tags, metric histories and artifacts, all in the run ``run_id``."""
    client = client_for(uri)
    row = runs.set_index("run_id").loc[run_id]
    assert row.status == "FINISHED"
    assert row["tags.mlflow.runName"] == "lenet300/bc-gnj/seed0"
    assert {key: row[f"tags.{key}"] for key in ("arch", "method", "seed", "dataset", "rule")} == {
        "arch": "lenet300", "method": "bc-gnj", "seed": "0", "dataset": "mnist", "rule": "compress"}
    assert (row["tags.train.job_id"], row["tags.compress.job_id"], row["tags.job_id"]) == ("111", "222", "222")
    assert row["tags.git_commit"]
    assert (row["params.lr"], row["params.prior.kind"], row["params.layers"], row["params.note"]) == (
        "0.001", "gnj", "[300, 100]", "None")
    assert row["params.compress.bits"] == "8"
    assert len(row["params.long"]) == tracking.PARAM_VALUE_MAX
    assert steps(client, run_id, "train/loss") == [(0, 1.0), (1, 0.5), (2, 1.0 / 3)]
    assert [step for step, _ in steps(client, run_id, "val/error")] == [0, 1, 2]
    assert steps(client, run_id, "error_pct") == [(0, 1.8)]
    assert not {"metrics.gone", "metrics.nan", "metrics.name"} & set(runs.columns)  # not numbers: dropped
    assert artifact_paths(client, run_id) == ["checkpoints/model.pt", "compressed/masks.npz",
                                              "compressed/weights.npz"]


def test_init_store_creates_the_database_and_experiment_once(tmp_path):
    db = tmp_path / "results" / "mlflow.db"
    artifacts = tmp_path / "results" / "mlartifacts"
    uri = sqlite_uri(db)
    assert uri == f"sqlite:///{db}" and uri.startswith("sqlite:////")

    first = init_store(uri, "bc", artifacts)
    assert db.is_file()
    assert init_store(uri, "bc", artifacts) == first
    experiment = client_for(uri).get_experiment(first)
    assert experiment.name == "bc"
    assert experiment.artifact_location == artifacts.resolve().as_uri()
    # MLflow 3's UI opens the experiment as model training, not in its GenAI view
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_init_store_tags_an_experiment_made_before_the_tag(tmp_path):
    uri = sqlite_uri(tmp_path / "mlflow.db")
    old = init_store(uri, "bc", tmp_path / "artifacts")
    client_for(uri).delete_experiment_tag(old, "mlflow.experimentKind")
    assert "mlflow.experimentKind" not in client_for(uri).get_experiment(old).tags
    assert init_store(uri, "bc", tmp_path / "artifacts") == old
    assert client_for(uri).get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"


def test_direct_jobs_of_one_cell_continue_one_run(store, experiment, tmp_path, monkeypatch):
    uri, _ = store
    run_dir = tmp_path / "runs" / "lenet300" / "bc-gnj" / "seed0"
    train_id, compress_id = train_then_compress(run_dir, uri=uri, experiment=experiment, mode="direct",
                                                monkeypatch=monkeypatch)

    assert train_id == compress_id
    state = json.loads((run_dir / tracking.STATE_FILE).read_text())
    assert state == {"run_id": train_id, "uri": uri, "experiment": experiment, "mode": "direct",
                     "imported_lines": 0}
    assert not (run_dir / tracking.EVENTS_FILE).exists()
    runs = find_runs(uri, experiment)
    assert runs.run_id.tolist() == [train_id]
    assert_cell_logged(uri, runs, train_id)


def test_changed_param_is_kept_as_a_tag_and_does_not_fail_the_job(store, experiment, tmp_path):
    uri, _ = store
    for rule, lr in (("train", 0.1), ("compress", 0.2)):
        with CellRun(tmp_path, uri=uri, experiment=experiment, mode="direct", rule=rule, cell=CELL) as run:
            run.log_params({"lr": lr})
    row = find_runs(uri, experiment).iloc[0]
    assert (row.status, row["params.lr"], row["tags.param_changed.lr"]) == ("FINISHED", "0.1", "0.2")


@pytest.mark.parametrize("mode", ["direct", "deferred"])
def test_exception_in_a_job_marks_the_run_failed_and_propagates(store, experiment, tmp_path, mode):
    uri, root = store
    with pytest.raises(RuntimeError, match="diverged"):
        with CellRun(tmp_path / "cell", uri=uri, experiment=experiment, mode=mode, rule="train", cell=CELL) as run:
            run.log_metrics({"loss": 1.0}, step=0)
            raise RuntimeError("loss diverged")
    if mode == "deferred":
        import_deferred(tmp_path, uri, experiment, root / "results" / "mlartifacts" / experiment)
    runs = find_runs(uri, experiment)
    assert list(runs.status) == ["FAILED"]
    assert runs["metrics.loss"].tolist() == [1.0]


def test_deferred_jobs_write_only_files_and_one_import_replays_them(tmp_path, monkeypatch):
    db = tmp_path / "results" / "mlflow.db"
    uri, artifacts = sqlite_uri(db), tmp_path / "results" / "mlartifacts"
    runs_dir = tmp_path / "results" / "runs"
    cells = [runs_dir / "lenet300" / "bc-gnj" / "seed0", runs_dir / "lenet300" / "bc-gnj" / "seed1"]
    for run_dir in cells:
        ids = train_then_compress(run_dir, uri=uri, experiment="bc", mode="deferred", monkeypatch=monkeypatch)
        assert ids == (None, None)
    assert not db.exists() and not (tmp_path / "mlruns").exists()
    assert not (cells[0] / tracking.STATE_FILE).exists()

    run_ids = import_deferred(runs_dir, uri, "bc", artifacts)
    assert len(set(run_ids)) == 2
    client = client_for(uri)
    by_dir = {run_dir: json.loads((run_dir / tracking.STATE_FILE).read_text())["run_id"] for run_dir in cells}
    assert sorted(by_dir.values()) == sorted(run_ids)
    runs = find_runs(uri, "bc")
    assert sorted(runs.status) == ["FINISHED", "FINISHED"]
    for run_id in run_ids:
        assert_cell_logged(uri, runs, run_id)
    # Each metric keeps the time its job logged it, not the time of the import.
    events = [json.loads(line) for line in (cells[0] / tracking.EVENTS_FILE).read_text().splitlines()]
    logged = sorted(event["time"] for event in events if event["event"] == "metrics" and event["step"] < 3
                    and "train/loss" in event["metrics"])
    assert sorted(m.timestamp for m in client.get_metric_history(by_dir[cells[0]], "train/loss")) == logged
    start = next(event["time"] for event in events if event["event"] == "start")
    assert client.get_run(by_dir[cells[0]]).info.start_time == start

    # A second import adds nothing: it does not even write.
    written = []
    with monkeypatch.context() as spy:
        for name in ("log_params", "set_tags", "log_metrics", "log_artifact"):
            spy.setattr(MlflowWriter, name, lambda self, *args, name=name: written.append(name))
        assert import_deferred(runs_dir, uri, "bc", artifacts) == run_ids
    assert written == []
    assert len(find_runs(uri, "bc")) == 2
    assert len(client.get_metric_history(by_dir[cells[0]], "train/loss")) == 3
    assert len(client.get_metric_history(by_dir[cells[0]], "error_pct")) == 1

    # A later job's events go into the same run at the next import; only cells[0] had one, so only it changes.
    monkeypatch.setenv("SLURM_JOB_ID", "333")
    with CellRun(cells[0], uri=uri, experiment="bc", mode="deferred", rule="figures", cell=CELL) as run:
        run.log_metrics({"train/loss": 0.1}, step=3)
    assert import_deferred(runs_dir, uri, "bc", artifacts) == run_ids
    assert [m.step for m in client.get_metric_history(by_dir[cells[0]], "train/loss")].count(3) == 1
    assert len(client.get_metric_history(by_dir[cells[0]], "train/loss")) == 4
    assert len(client.get_metric_history(by_dir[cells[1]], "train/loss")) == 3
    row = find_runs(uri, "bc").set_index("run_id").loc[by_dir[cells[0]]]
    assert (row.status, row["tags.rule"], row["tags.figures.job_id"], row["tags.train.job_id"]) == (
        "FINISHED", "figures", "333", "111")


def test_deferred_import_skips_a_line_torn_by_a_killed_job(store, experiment, tmp_path):
    uri, root = store
    run_dir = tmp_path / "cell"
    with CellRun(run_dir, uri=None, experiment=experiment, mode="deferred", rule="train", cell=CELL) as run:
        run.log_metrics({"loss": 1.0}, step=0)
    with open(run_dir / tracking.EVENTS_FILE, "a") as stream:
        stream.write('{"event": "metrics", "time": 1, "st')  # killed mid-line
    (run_id,) = import_deferred(tmp_path, uri, experiment, root / "results" / "mlartifacts" / experiment)
    with CellRun(run_dir, uri=None, experiment=experiment, mode="deferred", rule="compress", cell=CELL) as run:
        run.log_metrics({"loss": 0.5}, step=1)
    assert import_deferred(tmp_path, uri, experiment, root / "results" / "mlartifacts" / experiment) == [run_id]
    assert steps(client_for(uri), run_id, "loss") == [(0, 1.0), (1, 0.5)]
    row = find_runs(uri, experiment).iloc[0]
    assert (row.status, row["tags.rule"]) == ("FINISHED", "compress")  # the event after the torn line survives


def log_fifty_steps(uri, experiment, run_dir, seed, barrier):
    """One training job of the concurrency test, in its own process."""
    barrier.wait()  # the eight jobs open their runs and write at the same time
    cell = {**CELL, "seed": seed}
    with CellRun(run_dir, uri=uri, experiment=experiment, mode="direct", rule="train", cell=cell) as run:
        for step in range(50):
            run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)


def eight_jobs_at_once(job, uri, experiment, tmp_path) -> list[int]:
    """Run ``job(uri, experiment, run_dir, seed, barrier)`` in eight processes that meet at the barrier; their exit
    codes. Separate processes, each with its own client and SQLite connections, forked from a clean server process
    that imported MLflow once: eight fresh interpreters would spend most of the test importing MLflow on two cores."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["mlflow", "mlflow.store.tracking.sqlalchemy_store", "bcrepro.tracking"])
    barrier = context.Barrier(8, timeout=120)
    jobs = [context.Process(target=job, args=(uri, experiment, tmp_path / f"seed{seed}", seed, barrier))
            for seed in range(8)]
    for process in jobs:
        process.start()
    try:
        for process in jobs:
            process.join(timeout=180)
    finally:
        for process in jobs:
            if process.is_alive():
                process.kill()
    return [process.exitcode for process in jobs]


def test_eight_concurrent_direct_jobs_all_finish_with_full_histories(store, experiment, tmp_path):
    uri, _ = store
    assert eight_jobs_at_once(log_fifty_steps, uri, experiment, tmp_path) == [0] * 8

    runs = find_runs(uri, experiment)
    assert sorted(runs["tags.seed"]) == [str(seed) for seed in range(8)]
    assert set(runs.status) == {"FINISHED"}
    client = client_for(uri)
    for run_id in runs.run_id:
        assert [m.step for m in sorted(client.get_metric_history(run_id, "loss"), key=lambda m: m.step)] == list(
            range(50))


def log_one_dataset(uri, experiment, run_dir, seed, barrier):
    """One job of the dataset race, in its own process: every job opens its run, then all log the same data set."""
    cell = {**CELL, "seed": seed}
    with CellRun(run_dir, uri=uri, experiment=experiment, mode="direct", rule="train", cell=cell) as run:
        barrier.wait()
        run.log_dataset("mnist", "0123456789abcdef", "/data")


def test_eight_jobs_logging_one_data_set_at_once_all_link_it(store, experiment, tmp_path):
    uri, _ = store
    assert eight_jobs_at_once(log_one_dataset, uri, experiment, tmp_path) == [0] * 8
    client = client_for(uri)
    for run_id in find_runs(uri, experiment).run_id:
        inputs = client.get_run(run_id).inputs.dataset_inputs
        assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [("mnist", "0123456789abcdef")]


def test_direct_job_refuses_a_store_that_was_not_initialised(tmp_path):
    db = tmp_path / "results" / "mlflow.db"
    with pytest.raises(FileNotFoundError, match="init_store"):
        with CellRun(tmp_path / "cell", uri=sqlite_uri(db), experiment="bc", mode="direct", rule="train",
                     cell=CELL):
            pass
    assert not db.exists()


def test_off_touches_nothing_and_unknown_mode_is_rejected(tmp_path):
    run_dir = tmp_path / "cell"
    with CellRun(run_dir, uri=None, experiment="bc", mode="off", rule="train", cell=CELL) as run:
        run.log_params({"lr": 0.1})
        run.set_tags({"note": "x"})
        run.log_metrics({"loss": 1.0}, step=0)
        run.log_artifact(tmp_path / "missing.pt")
        assert run.run_id is None
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="direct, deferred, off"):
        CellRun(run_dir, uri=None, experiment="bc", mode="sqlite", rule="train", cell=CELL)


def test_tracking_imports_and_defers_without_mlflow(tmp_path):
    """Cluster nodes in deferred mode, and users with tracking off, need no mlflow."""
    script = (
        "import sys; sys.modules['mlflow'] = None\n"
        "from bcrepro.tracking import CellRun\n"
        "cell = {'arch': 'lenet5', 'method': 'bc-ghs', 'seed': 1, 'dataset': 'mnist'}\n"
        "for mode in ('off', 'deferred'):\n"
        "    with CellRun(sys.argv[1], uri=None, experiment='bc', mode=mode, rule='train', cell=cell) as run:\n"
        "        run.log_params({'lr': 0.1}); run.log_metrics({'loss': 1.0}, step=0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    events = [json.loads(line)["event"] for line in (tmp_path / tracking.EVENTS_FILE).read_text().splitlines()]
    assert events == ["start", "params", "metrics", "end"]


def test_cell_tags_name_the_batch_job(monkeypatch):
    monkeypatch.setenv("PBS_JOBID", "77.pbs")
    tags = tracking.cell_tags(CELL, "compress")
    assert (tags["job_id"], tags["compress.job_id"], tags["rule"], tags["seed"]) == ("77.pbs", "77.pbs",
                                                                                      "compress", "0")
    monkeypatch.setenv("SLURM_JOB_ID", "5")
    assert tracking.cell_tags(CELL, "train")["train.job_id"] == "5"
    assert tracking.git_commit() != ""


@pytest.mark.parametrize("mode", ["direct", "deferred"])
def test_a_run_shows_its_data_set_and_a_loadable_pytorch_model(store, experiment, tmp_path, mode):
    import torch

    uri, root = store
    module = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)).eval()
    with CellRun(tmp_path, uri=uri, experiment=experiment, mode=mode, rule="compress", cell=CELL) as run:
        run.log_dataset("mnist", "0123456789abcdef", "/data")
        run.log_pytorch_model(module, tmp_path / "slim_model", "slim_model")
    if mode == "deferred":
        import_deferred(tmp_path, uri, experiment, root / "results" / "mlartifacts" / experiment)
    (run_id,) = find_runs(uri, experiment).run_id.tolist()
    inputs = client_for(uri).get_run(run_id).inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [("mnist", "0123456789abcdef")]
    assert {t.key: t.value for t in inputs[0].tags} == {"mlflow.data.context": "training"}
    mlflow.set_tracking_uri(uri)
    loaded = mlflow.pytorch.load_model(f"runs:/{run_id}/slim_model")
    x = torch.randn(5, 4)
    torch.testing.assert_close(loaded(x), module(x))


def test_a_data_set_write_that_fails_for_another_reason_is_not_retried():
    from mlflow.exceptions import MlflowException

    class RefusingClient:
        calls = 0

        def log_inputs(self, run_id, datasets):
            RefusingClient.calls += 1
            raise MlflowException("Run 'abc' not found")

    writer = MlflowWriter(RefusingClient(), "abc")
    with pytest.raises(MlflowException, match="not found"):
        writer.log_dataset("mnist", "0123456789abcdef", "/data", "training")
    assert RefusingClient.calls == 1
