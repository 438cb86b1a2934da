"""The Snakemake workflow as users run it: dry runs of the paper's config, bad configs, missing data, the whole DAG on
synthetic data with MLflow, a killed training job that resumes, and the SLURM profile through fake SLURM commands."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bcrepro import tracking
from conftest import REPO

TINY = REPO / "tests" / "workflow" / "tiny.yaml"
FAKE_SLURM = REPO / "tests" / "fakeslurm"
# LeNets: 7 methods (6 trained from dense) x 3 seeds each; VGG-16: dense, bc-gnj, bc-ghs x 3 seeds (arch_methods)
PAPER_JOBS = {"stage_data": 2, "init_mlflow": 1, "pretrain": 9, "pretrain_own": 3, "train": 42, "compress": 51,
              "speedup": 42, "table": 1, "figures": 1, "all": 1}  # pretrain_own: DC LeNet-300-100's own references


def snakemake_command(workdir: Path, *args: str, profile: str = "none") -> list[str]:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--workflow-profile", profile, *args]


def snakemake(workdir: Path, *args: str, profile: str = "none", env: dict | None = None, timeout: float = 900):
    return subprocess.run(snakemake_command(workdir, *args, profile=profile), capture_output=True, text=True,
                          env=env, timeout=timeout)


def job_counts(output: str) -> dict[str, int]:
    """The "Job stats" table of a dry run: rule -> number of jobs."""
    table = output.split("Job stats:")[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)
            if m.group(1) != "total"}


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---- dry runs --------------------------------------------------------------------------------------------------------
def test_dry_run_of_the_paper_config_has_every_cell_of_the_table(tmp_path):
    result = snakemake(tmp_path, "-n", "--cores", "2")
    assert result.returncode == 0, result.stderr
    assert job_counts(result.stdout) == PAPER_JOBS
    assert not (tmp_path / "results").exists()


def test_deferred_mode_adds_the_import_rule_and_overrides_narrow_the_cells(tmp_path):
    result = snakemake(tmp_path, "-n", "--cores", "2", "--config", "mlflow_mode=deferred", "archs=[lenet300]",
                       "seeds=[0]", "methods=[bc-ghs]")
    assert result.returncode == 0, result.stderr
    assert job_counts(result.stdout) == {"stage_data": 1, "init_mlflow": 1, "pretrain": 1, "train": 1, "compress": 2,
                                         "speedup": 1, "table": 1, "figures": 1, "import_mlflow": 1, "all": 1}


def test_training_jobs_ask_for_a_gpu_only_when_the_device_is_cuda(tmp_path):
    def gpu_of(output, rule):
        block = output.split(f"rule {rule}:")[1].split("\n\n")[0]
        return re.search(r"resources: .*", block).group(0)

    cuda = snakemake(tmp_path, "-n", "--cores", "2", "--config", "device=cuda")
    cpu = snakemake(tmp_path, "-n", "--cores", "2", "--config", "device=cpu")
    assert cuda.returncode == 0 and cpu.returncode == 0, cuda.stderr + cpu.stderr
    assert "gpu=1" in gpu_of(cuda.stdout, "train") and "gpu=1" in gpu_of(cuda.stdout, "pretrain")
    assert "gpu=1" not in gpu_of(cuda.stdout, "compress")
    assert "gpu=1" not in gpu_of(cpu.stdout, "train")


def test_a_training_time_limit_reaches_every_training_job_and_no_other(tmp_path):
    limited = snakemake(tmp_path, "-n", "-p", "--cores", "2", "--config", "archs=[lenet300]", "train_max_minutes=90")
    plain = snakemake(tmp_path, "-n", "-p", "--cores", "2", "--config", "archs=[lenet300]")
    assert limited.returncode == 0 and plain.returncode == 0, limited.stderr + plain.stderr
    commands = [line for line in limited.stdout.splitlines() if "python -m bcrepro " in line]
    training = [line for line in commands if "bcrepro train " in line]
    assert len(training) == 3 * 8  # three seeds of the dense reference, six methods and DC's own reference
    assert all("--max-minutes 90 " in line for line in training)
    assert not any("--max-minutes" in line for line in commands if line not in training)
    assert "--max-minutes" not in plain.stdout


def bcrepro_commands(output: str) -> list[str]:
    """The shell commands of a dry run's (``-n -p``) jobs."""
    return [line for line in output.splitlines() if "python -m bcrepro " in line]


def overlay_training_commands(workdir: Path, overlay: str) -> list[str]:
    """The training commands of a dry run of the MNIST config with ``config/<overlay>`` merged on top, seed 0."""
    result = snakemake(workdir, "-n", "-p", "--cores", "2", "--configfile", str(REPO / "config" / "mnist.yaml"),
                       str(REPO / "config" / overlay), "--config", "seeds=[0]")
    assert result.returncode == 0, result.stderr
    return [line for line in bcrepro_commands(result.stdout) if "python -m bcrepro train " in line]


def test_the_dc_reference_config_trains_dc_from_a_weight_decayed_reference_on_the_same_pixels(tmp_path):
    training = overlay_training_commands(tmp_path, "dc_reference.yaml")
    own = [line for line in training if "/reference " in line]
    dense = [line for line in training if "--method dense" in line and line not in own]
    dc = [line for line in training if "--method dc" in line]
    assert len(training) == 6 and len(own) == 2 and len(dense) == 2 and len(dc) == 2  # both LeNets, one seed
    assert all("--method dense" in line and '"weight_decay": 0.0001' in line and '"preprocess": "unit"' in line
               for line in own)
    # the shared reference stays config.yaml's, so the other methods' cells may share its results folder
    assert not any("preprocess" in line or '"weight_decay": 0.0001' in line for line in dense)
    for arch in ("lenet300", "lenet5"):
        assert any(f"--out results/runs/{arch}/dc/seed0/reference " in line for line in own)
        assert any(f"--arch {arch} " in line and '"preprocess": "unit"' in line
                   and f"--init results/runs/{arch}/dc/seed0/reference/model.pt " in line for line in dc)


def test_a_cell_with_its_own_reference_starts_from_it_and_every_other_job_stays_as_it_was(tmp_path):
    config = write_config(tmp_path / "own.yaml",
                          "references:\n  dns:\n    lenet300: {weight_decay: 1.0e-4, epochs: 3}\n")
    cells = ("archs=[lenet300]", "seeds=[0]", "device=cuda", "train_max_minutes=90")
    own = snakemake(tmp_path, "-n", "-p", "--cores", "2", "--configfile", str(config), "--config", *cells)
    plain = snakemake(tmp_path, "-n", "-p", "--cores", "2", "--config", *cells)
    assert own.returncode == 0 and plain.returncode == 0, own.stderr + plain.stderr
    # a training job like the shared reference's: a GPU, the time limit
    assert "gpu=1" in re.search(r"resources: .*", own.stdout.split("rule pretrain_own:")[1]).group(0)
    counts = job_counts(plain.stdout)
    assert job_counts(own.stdout) == {**counts, "pretrain_own": counts["pretrain_own"] + 1}
    added = set(bcrepro_commands(own.stdout)) - set(bcrepro_commands(plain.stdout))
    gone = set(bcrepro_commands(plain.stdout)) - set(bcrepro_commands(own.stdout))
    reference = [line for line in added if "--out results/runs/lenet300/dns/seed0/reference " in line]
    dns = [line for line in added if "--method dns " in line]
    assert len(added) == 2 and len(reference) == 1 and len(dns) == 1
    assert all(option in reference[0] for option in ("--method dense ", "--rule pretrain_own ", "--max-minutes 90 "))
    assert all(f'"{key}": {value}' in reference[0] for key, value in (("weight_decay", "0.0001"), ("epochs", "3")))
    assert "> results/logs/pretrain/lenet300_dns_reference_seed0.log " in reference[0]
    assert "--init results/runs/lenet300/dns/seed0/reference/model.pt " in dns[0]
    # only DNS's own job changed: the dense, DC, SWS, ... jobs (and DNS's compression) are those of the default config
    assert len(gone) == 1 and "--method dns " in next(iter(gone))
    assert "dns/seed0/reference" not in plain.stdout


def test_the_sws_tutorial_config_trains_sws_from_its_own_reference_on_the_tutorials_pixels(tmp_path):
    training = overlay_training_commands(tmp_path, "sws_tutorial.yaml")
    sws = [line for line in training if "--method sws " in line]
    own = [line for line in training if "/reference " in line]
    assert len(training) == 6 and len(sws) == 2 and len(own) == 2
    assert all('"preprocess": "unit"' in line for line in sws + own)
    assert not any("preprocess" in line for line in training if line not in sws + own)
    for arch in ("lenet300", "lenet5"):
        assert any(f"--out results/runs/{arch}/sws/seed0/reference " in line for line in own)
        assert any(f"--init results/runs/{arch}/sws/seed0/reference/model.pt " in line for line in sws)


def test_shared_settings_reach_a_training_job_only_where_they_differ_from_the_shared_defaults(tmp_path):
    # preprocess and kl_images came after finished runs existed: where a cell keeps the shared defaults they stay out of
    # the job's command, so Snakemake's params trigger does not find every earlier run out of date. Defaults of a
    # method's own (Sparse VD's centred pixels and N, DC LeNet-300-100's x / 255 and its reference's) are stated, and
    # so is a config's return to the shared values for them, which the library would otherwise fill in again
    config = write_config(tmp_path / "shared.yaml",
                          "hyperparameters:\n  bc-gnj:\n    lenet300: {preprocess: unit, kl_images: 60000}\n")
    result = snakemake(tmp_path, "-n", "-p", "--cores", "2", "--configfile", str(config), "--config",
                       "archs=[lenet300]", "seeds=[0]")
    assert result.returncode == 0, result.stderr
    training = [line for line in result.stdout.splitlines() if "python -m bcrepro train " in line]
    gnj = [line for line in training if "--method bc-gnj " in line]
    vd = [line for line in training if "--method sparse-vd " in line]
    dc = [line for line in training if "--method dc " in line or "/dc/seed0/reference " in line]
    assert len(training) == 8 and len(gnj) == 1 and len(vd) == 1 and len(dc) == 2
    assert '"preprocess": "unit"' in gnj[0] and '"kl_images": 60000' in gnj[0]
    assert '"preprocess": "centred"' in vd[0] and '"kl_images": "all"' in vd[0]
    assert all('"preprocess": "unit"' in line for line in dc)
    assert not any("preprocess" in line or "kl_images" in line for line in training if line not in gnj + vd + dc)

    shared = write_config(tmp_path / "vd_shared.yaml", "hyperparameters:\n  sparse-vd:\n    lenet300: "
                                                      "{preprocess: symmetric, kl_images: null}\n")
    result = snakemake(tmp_path, "-n", "-p", "--cores", "2", "--configfile", str(shared), "--config",
                       "archs=[lenet300]", "seeds=[0]", "methods=[sparse-vd]")
    assert result.returncode == 0, result.stderr
    vd = [line for line in result.stdout.splitlines() if "--method sparse-vd " in line]
    assert len(vd) == 1 and '"preprocess": "symmetric"' in vd[0] and '"kl_images": null' in vd[0]


@pytest.mark.slow
def test_the_speedup_jobs_take_the_configured_memory_format_and_compiler(tmp_path):
    def speedup_commands(output):
        return [line for line in output.splitlines() if " speedup --run " in line]

    config = write_config(tmp_path / "nhwc.yaml",
                          "speedup:\n  memory_format: channels_last\n  compile: torchscript\n")
    nhwc = snakemake(tmp_path, "-n", "-p", "--cores", "2", "--configfile", str(config), "--config", "archs=[lenet5]")
    plain = snakemake(tmp_path, "-n", "-p", "--cores", "2", "--config", "archs=[lenet5]")
    assert nhwc.returncode == 0 and plain.returncode == 0, nhwc.stderr + plain.stderr
    assert speedup_commands(nhwc.stdout) and speedup_commands(plain.stdout)
    assert all("--memory-format channels_last --compile torchscript" in command
               for command in speedup_commands(nhwc.stdout))
    assert all("--memory-format contiguous --compile none" in command for command in speedup_commands(plain.stdout))


# ---- bad input ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, named", [
    ("epochs_scale: 0.5\n", "epochs_scale"),                       # a typo of a top-level key (schema)
    ("seeds: [zero]\n", "zero"),                                   # a wrong type (schema)
    ("methods: [bc-gnj, magic-pruning]\n", "magic-pruning"),       # a method the registry does not know
    ("hyperparameters:\n  bc-gnj:\n    lenet300: {learning_rate: 0.1}\n", "learning_rate"),
    ("hyperparameters:\n  dense:\n    vgg99: {epochs: 1}\n", "vgg99"),
    ("arch_methods:\n  vgg16: [dense, bc-magic]\n", "bc-magic"),   # unknown method for one architecture
    ("arch_methods:\n  vgg16: [dense, dns]\n", "'dns' has no settings for architecture 'vgg16'"),
    ("speedup:\n  memory_format: nhwc\n", "nhwc"),               # a layout the speed-up CLI does not know
    ("speedup:\n  compile: inductor\n", "inductor"),             # a compiler the speed-up CLI does not offer
    ("train_max_minutes: -5\n", "train_max_minutes"),             # a time limit below zero (schema)
])
def test_a_bad_config_fails_before_any_job_and_names_the_key(tmp_path, text, named):
    config = write_config(tmp_path / "bad.yaml", text)
    result = snakemake(tmp_path, "--cores", "1", "--configfile", str(config))
    assert result.returncode != 0
    assert named in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("entry, key, named", [
    ("magic-pruning:\n    lenet300: {}", "references.magic-pruning", "unknown method 'magic-pruning'"),
    ("bc-gnj:\n    lenet300: {}", "references.bc-gnj.lenet300", "does not start from a dense reference"),
    ("dc:\n    lenet300: {wd: 1.0e-4}", "references.dc.lenet300", "unknown hyper-parameter(s) ['wd']"),
    ("dc:\n    lenet300: {weight_decay: lots}", "references.dc.lenet300", "'weight_decay' of dense on lenet300"),
    ("dc:\n    vgg99: {}", "references.dc.vgg99", "vgg99"),
    ("dns:\n    lenet300: {preprocess: unit}", "references.dns.lenet300",  # DNS itself trains on the shared pixels
     "preprocess 'unit' differs from the dns cell's 'symmetric', and the reference must see the pixels the method "
     "trains on"),
])
def test_a_bad_own_reference_fails_before_any_job_and_names_its_key(tmp_path, entry, key, named):
    config = write_config(tmp_path / "bad.yaml", f"references:\n  {entry}\n")
    result = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(config))
    assert result.returncode != 0
    message = [line for line in (result.stdout + result.stderr).splitlines() if f"config key '{key}'" in line]
    assert len(message) == 1 and named in message[0], result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_missing_data_offline_fails_at_the_staging_rule_with_the_library_message(tmp_path):
    config = write_config(tmp_path / "offline.yaml", "download: false\narchs: [lenet300]\nseeds: [0]\n"
                                                     "methods: [dense]\ndevice: cpu\n")
    result = snakemake(tmp_path, "--cores", "1", "--configfile", str(config))
    assert result.returncode != 0
    assert "Error in rule stage_data" in result.stdout + result.stderr
    message = (tmp_path / "results" / "logs" / "stage_data" / "mnist.log").read_text()
    assert "dataset 'mnist' not found" in message and "Place the files in" in message
    assert not (tmp_path / "results" / "runs").exists()  # no training job started


# ---- the whole DAG -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_workflow(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    result = snakemake(workdir, "--cores", "2", "--configfile", str(TINY),
                       "--set-threads", "pretrain=1", "train=1", "compress=1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir


@pytest.mark.slow
def test_whole_dag_writes_the_table_beside_the_paper(finished_workflow):
    table = pd.read_csv(finished_workflow / "results" / "table.csv")
    assert list(zip(table["arch"], table["method"])) == [("lenet300", m) for m in
                                                         ("dense", "dc", "dns", "sws", "sparse-vd", "bc-gnj", "bc-ghs")]
    assert (table["n_seeds"] == 1).all()
    # the cells on their authors' pixels say so: Sparse VD's centred, DC LeNet-300-100's x / 255
    assert dict(zip(table["method"], table["dataset"])) == {
        **{m: "synthetic" for m in table["method"]}, "sparse-vd": "synthetic (centred)", "dc": "synthetic (unit)"}
    gnj = table.set_index("method").loc["bc-gnj"]
    assert gnj["paper_compression_pruning"] == 9 and gnj["paper_compression_precision"] == 36
    assert gnj["compression_pruning_mean"] >= 1.0 and gnj["error_pct_mean"] < 50
    metrics = json.loads((finished_workflow / "results/runs/lenet300/bc-gnj/seed0/metrics.json").read_text())
    assert gnj["error_pct_mean"] == pytest.approx(metrics["error_pct"])
    for name in ("table.md", "table.tex", "architectures.csv", "architectures.md"):
        assert (finished_workflow / "results" / name).stat().st_size > 100


@pytest.mark.slow
def test_whole_dag_draws_the_figures(finished_workflow):
    figures = finished_workflow / "results" / "figures"
    expected = ["error_vs_compression_lenet300.png", "architecture_lenet300.png",
                "runs/lenet300/bc-gnj/seed0/group_statistics.png", "runs/lenet300/bc-gnj/seed0/threshold_curve.png",
                "runs/lenet300/bc-gnj/seed0/weights.png", "runs/lenet300/bc-gnj/seed0/pixel_importance.png",
                "runs/lenet300/bc-ghs/seed0/training.png", "runs/lenet300/dense/seed0/training.png"]
    for name in expected:
        assert (figures / name).stat().st_size > 5000, name


@pytest.mark.slow
def test_whole_dag_logs_one_finished_mlflow_run_per_cell(finished_workflow):
    runs = tracking.find_runs(tracking.sqlite_uri(finished_workflow / "results" / "mlflow.db"), "bcrepro")
    assert len(runs) == 8  # the seven cells and DC's own dense reference (config.yaml's `references`)
    assert set(runs["status"]) == {"FINISHED"}
    assert sorted(runs["tags.method"]) == ["bc-ghs", "bc-gnj", "dc", "dense", "dense", "dns", "sparse-vd", "sws"]
    own = runs[runs["tags.rule"] == "pretrain_own"]
    assert len(own) == 1 and own.iloc[0]["tags.method"] == "dense"
    assert set(runs["tags.dataset"]) == {"synthetic"} and set(runs["tags.arch"]) == {"lenet300"}
    gnj = runs[runs["tags.method"] == "bc-gnj"].iloc[0]
    metrics = json.loads((finished_workflow / "results/runs/lenet300/bc-gnj/seed0/metrics.json").read_text())
    assert metrics["mlflow_run_id"] == gnj["run_id"]
    assert gnj["metrics.error_pct"] == pytest.approx(metrics["error_pct"])
    assert gnj["metrics.compression_pruning"] == pytest.approx(metrics["compression_pruning"])
    assert gnj["params.epochs"] == "2" and gnj["params.clip_var"]
    assert gnj["tags.train.job_id"] and gnj["tags.compress.job_id"] and gnj["tags.speedup.job_id"]
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking.sqlite_uri(finished_workflow / "results" / "mlflow.db"))
    assert [m.step for m in client.get_metric_history(gnj["run_id"], "test_error_pct")] == [1, 2]
    assert len(client.get_metric_history(gnj["run_id"], "groups_kept_fraction.layer0")) == 2
    artifacts = {a.path for a in client.list_artifacts(gnj["run_id"])}
    assert {"state_dicts", "compressed", "figures", "metrics.json", "speed.json", "slim_model"} <= artifacts
    (dataset,) = client.get_run(gnj["run_id"]).inputs.dataset_inputs
    assert dataset.dataset.name == "synthetic" and len(dataset.dataset.digest) == 16
    # the slimmed network loads from MLflow and computes what slim.pt computes
    import torch

    from bcrepro.deploy import slim

    mlflow.set_tracking_uri(tracking.sqlite_uri(finished_workflow / "results" / "mlflow.db"))
    logged = mlflow.pytorch.load_model(f"runs:/{gnj['run_id']}/slim_model")
    saved = slim.load_slim(finished_workflow / "results/runs/lenet300/bc-gnj/seed0/slim.pt").eval()
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(logged(x), saved(x))


@pytest.mark.slow
def test_a_second_run_after_a_complete_one_has_nothing_to_do(finished_workflow):
    result = snakemake(finished_workflow, "-n", "--cores", "2", "--configfile", str(TINY))
    assert result.returncode == 0, result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr


# ---- reliability -------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_training_job_killed_half_way_resumes_when_the_workflow_is_rerun(tmp_path):
    config = write_config(tmp_path / "long.yaml", TINY.read_text().replace("epochs: 2", "epochs: 30"))
    target = "results/runs/lenet300/bc-gnj/seed0/model.pt"
    run_dir = tmp_path / "results/runs/lenet300/bc-gnj/seed0"
    process = subprocess.Popen(snakemake_command(tmp_path, target, "--cores", "1", "--configfile", str(config)),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (run_dir / "checkpoint.pt").exists():
            assert process.poll() is None, "the workflow ended before the first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 5 minutes"
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGKILL)  # Snakemake and the training job die at once, as on a lost node
    finally:
        process.wait()
    assert not (run_dir / "model.pt").exists()

    assert snakemake(tmp_path, "--unlock", "--cores", "1", "--configfile", str(config)).returncode == 0
    result = snakemake(tmp_path, target, "--cores", "1", "--rerun-incomplete", "--configfile", str(config))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = (tmp_path / "results/logs/train/lenet300_bc-gnj_seed0.log").read_text()
    assert "resuming from" in log
    history = json.loads((run_dir / "history.json").read_text())
    assert [record["epoch"] for record in history] == list(range(1, 31))
    runs = tracking.find_runs(tracking.sqlite_uri(tmp_path / "results" / "mlflow.db"), "bcrepro")
    assert len(runs) == 1 and runs["status"].iloc[0] == "FINISHED"  # the resumed job continued the same run


@pytest.mark.slow
def test_a_training_job_past_its_time_limit_stops_cleanly_and_the_rerun_finishes_it(tmp_path):
    config = write_config(tmp_path / "three.yaml", TINY.read_text().replace("epochs: 2", "epochs: 3"))
    target = "results/runs/lenet300/bc-gnj/seed0/model.pt"
    run_dir = tmp_path / "results/runs/lenet300/bc-gnj/seed0"
    stopped = snakemake(tmp_path, target, "--cores", "1", "--configfile", str(config),
                        "--config", "train_max_minutes=0")
    assert stopped.returncode != 0
    assert "Error in rule train" in stopped.stdout + stopped.stderr
    log = (tmp_path / "results/logs/train/lenet300_bc-gnj_seed0.log").read_text()
    assert "time limit" in log and "after epoch 1/3" in log
    assert (run_dir / "checkpoint.pt").exists() and not (run_dir / "model.pt").exists()

    result = snakemake(tmp_path, target, "--cores", "1", "--configfile", str(config))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "resuming from" in (tmp_path / "results/logs/train/lenet300_bc-gnj_seed0.log").read_text()
    history = json.loads((run_dir / "history.json").read_text())
    assert [record["epoch"] for record in history] == [1, 2, 3]


@pytest.mark.slow
def test_slurm_profile_requests_a_gpu_for_training_jobs_only(tmp_path):
    """Training through fake SLURM on this CPU machine (device=cpu: the profile's GPU request still goes to sbatch),
    then compression with the profile's own settings (device=cuda for training): compression jobs run on the CPU
    partition with their own device, cpu, and succeed."""
    state = tmp_path / "slurm"
    # The plugin checks the profile's account against sacctmgr: this fake cluster knows the profile's placeholder.
    env = {**os.environ, "PATH": f"{FAKE_SLURM}{os.pathsep}{os.environ['PATH']}", "FAKE_SLURM_STATE": str(state),
           "FAKE_SLURM_ACCOUNTS": "PLACEHOLDER_ACCOUNT"}
    polling = ["--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1"]
    trained = ["results/runs/lenet300/dense/seed0/model.pt", "results/runs/lenet300/bc-gnj/seed0/model.pt"]
    result = snakemake(tmp_path, "--configfile", str(TINY), "--config", "device=cpu", "mlflow_mode=deferred",
                       *polling, *trained, profile=str(REPO / "profiles" / "slurm"), env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # The profile's own settings; the trained models stand (only their device parameter changed).
    result = snakemake(tmp_path, "--configfile", str(TINY), "--rerun-triggers", "mtime", *polling,
                       "results/runs/lenet300/bc-gnj/seed0/metrics.json", profile=str(REPO / "profiles" / "slurm"),
                       env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    calls = (state / "sbatch.calls").read_text().splitlines()
    by_rule = {re.search(r"--comment\\? ?=?rule_(\w+?)_wildcards", call).group(1): call for call in calls}
    assert set(by_rule) == {"pretrain", "train", "compress"}
    for rule in ("pretrain", "train"):
        assert "--gpus=1" in by_rule[rule] and "-p PLACEHOLDER_GPU_PARTITION" in by_rule[rule]
    assert "--gpus" not in by_rule["compress"] and "--gres" not in by_rule["compress"]
    assert "-p PLACEHOLDER_CPU_PARTITION" in by_rule["compress"] and "-A PLACEHOLDER_ACCOUNT" in by_rule["compress"]
    assert "--device cpu" in by_rule["compress"] or "--device cpu" in result.stdout + result.stderr
    run_dir = tmp_path / "results/runs/lenet300/bc-gnj/seed0"
    assert (run_dir / "metrics.json").exists()
    assert (run_dir / tracking.EVENTS_FILE).exists()        # deferred: the jobs wrote events, not to a database
    assert not (tmp_path / "results" / "mlflow.db").exists()


@pytest.mark.parametrize("argv, env_profile, expected", [
    (["snakemake", "--cores", "all"], "", {"gpu": 2}),
    (["snakemake", "--profile", "profiles/slurm"], "", None),
    (["snakemake", "--executor", "slurm"], "", None),
    (["snakemake"], "/home/me/.config/snakemake/slurm", None),
])
def test_default_profile_counts_a_workstations_gpus_but_never_limits_a_cluster(monkeypatch, argv, env_profile,
                                                                               expected):
    import glob

    import yte

    monkeypatch.setattr(glob, "glob", lambda pattern: ["/dev/nvidia0", "/dev/nvidia1"] if "nvidia" in pattern else [])
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setenv("SNAKEMAKE_PROFILE", env_profile)
    profile = yte.process_yaml((REPO / "profiles" / "default" / "profile.yaml").read_text())
    assert profile.get("resources") == expected
