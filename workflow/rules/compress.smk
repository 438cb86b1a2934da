"""Compression of every trained cell, and the speed-up of every compressed model (slimmed; CSR for single-weight
pruning)."""


rule compress:
    input:
        unpack(compress_inputs),
    output:
        metrics="results/runs/{arch}/{method}/seed{seed}/metrics.json",
        compressed="results/runs/{arch}/{method}/seed{seed}/compressed.npz",
        artefact="results/runs/{arch}/{method}/seed{seed}/compressed.bin",
    log:
        "results/logs/compress/{arch}_{method}_seed{seed}.log",
    benchmark:
        "results/benchmarks/compress/{arch}_{method}_seed{seed}.tsv"
    params:
        out=run_folder,
        device=config["compress"]["device"],
        gpu_slots=GPU_SLOTS,
        jobs_per_gpu=config["gpu_jobs_per_device"],
        tracking=tracking_args("compress"),
        reference=reference_option,
    resources:
        gpu=uses_gpu(config["compress"]["device"]),
        mem_mb=4000,
        runtime=60,
    threads: 2
    conda:
        "../envs/bcrepro.yaml"
    shell:
        "python -m bcrepro compress --run {params.out:q} --device {params.device} --gpu-slots {params.gpu_slots:q} "
        "--jobs-per-gpu {params.jobs_per_gpu} {params.reference} {params.tracking} > {log:q} 2>&1"


rule speedup:
    input:
        metrics="results/runs/{arch}/{method}/seed{seed}/metrics.json",
    output:
        speed="results/runs/{arch}/{method}/seed{seed}/speed.json",
    log:
        "results/logs/speedup/{arch}_{method}_seed{seed}.log",
    benchmark:
        "results/benchmarks/speedup/{arch}_{method}_seed{seed}.tsv"
    params:
        out=run_folder,
        device=config["speedup"]["device"],
        batch_sizes=" ".join(map(str, config["speedup"]["batch_sizes"])),
        repeats=config["speedup"]["repeats"],
        threads=config["speedup"]["threads"],
        memory_format=config["speedup"]["memory_format"],
        compile=config["speedup"]["compile"],
        tracking=tracking_args("speedup"),
    resources:
        gpu=uses_gpu(config["speedup"]["device"]),
        mem_mb=8000,
        runtime=60,
    threads: config["speedup"]["threads"]
    conda:
        "../envs/bcrepro.yaml"
    shell:
        "python -m bcrepro speedup --run {params.out:q} --device {params.device} --batch-sizes {params.batch_sizes} "
        "--repeats {params.repeats} --threads {params.threads} --memory-format {params.memory_format} "
        "--compile {params.compile} "
        "{params.tracking} > {log:q} 2>&1"
