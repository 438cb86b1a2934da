"""Training: the dense reference per (arch, seed), then every method per (arch, method, seed), from the reference
where the method starts from one; a cell given a reference of its own (config key `references`) starts from that one,
trained in its run folder's reference/. A job killed half-way resumes from its checkpoint when the workflow is rerun."""

TRAIN_SHELL = (
    "python -m bcrepro train --arch {wildcards.arch} --method {params.method} --dataset {params.dataset} "
    "--data-root {params.data_root:q} {params.download} --seed {wildcards.seed} --device {params.device} "
    "--gpu-slots {params.gpu_slots:q} --jobs-per-gpu {params.jobs_per_gpu} "
    "--epoch-scale {params.epoch_scale} {params.time_limit} --params-json {params.hyperparameters:q} {params.init} "
    "--out {params.out:q} {params.tracking} > {log:q} 2>&1"
)


rule pretrain:
    input:
        unpack(train_inputs),
    output:
        model="results/runs/{arch}/dense/seed{seed}/model.pt",
        history="results/runs/{arch}/dense/seed{seed}/history.json",
    log:
        "results/logs/pretrain/{arch}_dense_seed{seed}.log",
    benchmark:
        "results/benchmarks/pretrain/{arch}_dense_seed{seed}.tsv"
    params:
        method="dense",
        dataset=lambda wc: dataset(wc.arch),
        data_root=config["data_root"],
        download="" if config["download"] else "--no-download",
        device=config["device"],
        gpu_slots=GPU_SLOTS,
        jobs_per_gpu=config["gpu_jobs_per_device"],
        epoch_scale=config["epoch_scale"],
        time_limit=time_limit_option,
        hyperparameters=train_params,
        init="",
        out=run_folder,
        tracking=tracking_args("pretrain"),
    resources:
        gpu=uses_gpu(config["device"]),
        mem_mb=4000,
        runtime=train_runtime,
    threads: 2
    conda:
        "../envs/bcrepro.yaml"
    shell:
        TRAIN_SHELL


rule pretrain_own:
    wildcard_constraints:
        method="|".join(map(re.escape, reference_methods())) or "(?!)",
    input:
        unpack(data_inputs),
    output:
        model="results/runs/{arch}/{method}/seed{seed}/reference/model.pt",
        history="results/runs/{arch}/{method}/seed{seed}/reference/history.json",
    log:
        "results/logs/pretrain/{arch}_{method}_reference_seed{seed}.log",
    benchmark:
        "results/benchmarks/pretrain/{arch}_{method}_reference_seed{seed}.tsv"
    params:
        method="dense",
        dataset=lambda wc: dataset(wc.arch),
        data_root=config["data_root"],
        download="" if config["download"] else "--no-download",
        device=config["device"],
        gpu_slots=GPU_SLOTS,
        jobs_per_gpu=config["gpu_jobs_per_device"],
        epoch_scale=config["epoch_scale"],
        time_limit=time_limit_option,
        hyperparameters=reference_params_json,
        init="",
        out=run_folder,
        tracking=tracking_args("pretrain_own"),
    resources:
        gpu=uses_gpu(config["device"]),
        mem_mb=4000,
        runtime=reference_runtime,
    threads: 2
    conda:
        "../envs/bcrepro.yaml"
    shell:
        TRAIN_SHELL


rule train:
    wildcard_constraints:
        method="|".join(map(re.escape, configured_methods()[1:])) or "(?!)",
    input:
        unpack(train_inputs),
    output:
        model="results/runs/{arch}/{method}/seed{seed}/model.pt",
        history="results/runs/{arch}/{method}/seed{seed}/history.json",
    log:
        "results/logs/train/{arch}_{method}_seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{arch}_{method}_seed{seed}.tsv"
    params:
        method=lambda wc: wc.method,
        dataset=lambda wc: dataset(wc.arch),
        data_root=config["data_root"],
        download="" if config["download"] else "--no-download",
        device=config["device"],
        gpu_slots=GPU_SLOTS,
        jobs_per_gpu=config["gpu_jobs_per_device"],
        epoch_scale=config["epoch_scale"],
        time_limit=time_limit_option,
        hyperparameters=train_params,
        init=init_option,
        out=run_folder,
        tracking=tracking_args("train"),
    resources:
        gpu=uses_gpu(config["device"]),
        mem_mb=4000,
        runtime=train_runtime,
    threads: 2
    conda:
        "../envs/bcrepro.yaml"
    shell:
        TRAIN_SHELL

