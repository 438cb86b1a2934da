"""Hyper-parameter studies (the config's `searches`; docs/workflow.md, "Tune a method's hyper-parameters"): per study,
`jobs` workers run the trials of one Optuna study side by side through its SQLite storage, from the dense reference
where the method starts from one; then the report writes the study's table and best configuration.
`snakemake --cores all searches` runs every study; the table's DAG (`all`) has none."""

localrules:
    search_report,
    searches,


rule search_worker:
    wildcard_constraints:
        search=search_names_pattern(),
        worker=r"\d+",
    input:
        unpack(search_inputs),
    output:
        stamp="results/search/{search}/workers/worker{worker}.json",
    log:
        "results/logs/search/{search}_worker{worker}.log",
    benchmark:
        "results/benchmarks/search/{search}_worker{worker}.tsv"
    params:
        storage=search_storage,
        search=search_options,
        data_root=config["data_root"],
        download="" if config["download"] else "--no-download",
        device=config["device"],
        init=init_option,
        reference=reference_option,
        out="results/search/{search}/trials",
        tracking=tracking_args("search_worker"),
    resources:
        gpu=uses_gpu(config["device"]),
        mem_mb=4000,
        runtime=search_runtime,
    threads: 2
    conda:
        "../envs/bcrepro.yaml"
    shell:
        "python -m bcrepro search --study {wildcards.search} --storage {params.storage:q} {params.search} "
        "--data-root {params.data_root:q} {params.download} --device {params.device} {params.init} {params.reference} "
        "--out {params.out:q} --stamp {output.stamp:q} {params.tracking} > {log:q} 2>&1"


rule search_report:
    wildcard_constraints:
        search=search_names_pattern(),
    input:
        search_workers,
    output:
        csv="results/search/{search}/study.csv",
        md="results/search/{search}/study.md",
        png="results/search/{search}/study.png",
        best="results/search/{search}/best.json",
    log:
        "results/logs/search/{search}_report.log",
    benchmark:
        "results/benchmarks/search/{search}_report.tsv"
    params:
        storage=search_storage,
        out="results/search/{search}",
    resources:
        mem_mb=2000,
        runtime=30,
    threads: 1
    conda:
        "../envs/bcrepro.yaml"
    shell:
        "python -m bcrepro search-report --study {wildcards.search} --storage {params.storage:q} "
        "--out {params.out:q} > {log:q} 2>&1"


rule searches:
    input:
        search_targets(),
