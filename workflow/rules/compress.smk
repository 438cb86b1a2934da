"""Compression of every trained cell, and the speed-up of every compressed model (slimmed; CSR for single-weight
pruning)."""


def compress_inputs(wildcards):
    """The trained model, and the dense reference's where the threshold rule states its budget against it."""
    inputs = {"model": RUN.format(**wildcards) + "/model.pt"}
    thresholds = cell_params(wildcards.arch, wildcards.method).get("thresholds")
    if wildcards.method != "dense" and isinstance(thresholds, dict) and thresholds.get("rule") == "sparsest":
        inputs["reference"] = f"{RUNS}/{wildcards.arch}/dense/seed{wildcards.seed}/model.pt"
    return inputs


def reference_option(wildcards, input):
    return f"--reference-run {shlex.quote(str(Path(input.reference).parent))}" if "reference" in input.keys() else ""


rule compress:
    input:
        unpack(compress_inputs),
    output:
        metrics=RUN + "/metrics.json",
        compressed=RUN + "/compressed.npz",
        artefact=RUN + "/compressed.bin",
    log:
        LOGS + "/compress/{arch}_{method}_seed{seed}.log",
    benchmark:
        BENCHMARKS + "/compress/{arch}_{method}_seed{seed}.tsv"
    params:
        out=RUN,
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
    shell:
        "{BCREPRO} compress --run {params.out:q} --device {params.device} --gpu-slots {params.gpu_slots:q} "
        "--jobs-per-gpu {params.jobs_per_gpu} {params.reference} {params.tracking} > {log:q} 2>&1"


rule speedup:
    input:
        metrics=RUN + "/metrics.json",
    output:
        speed=RUN + "/speed.json",
    log:
        LOGS + "/speedup/{arch}_{method}_seed{seed}.log",
    benchmark:
        BENCHMARKS + "/speedup/{arch}_{method}_seed{seed}.tsv"
    params:
        out=RUN,
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
    shell:
        "{BCREPRO} speedup --run {params.out:q} --device {params.device} --batch-sizes {params.batch_sizes} "
        "--repeats {params.repeats} --threads {params.threads} --memory-format {params.memory_format} "
        "--compile {params.compile} "
        "{params.tracking} > {log:q} 2>&1"
