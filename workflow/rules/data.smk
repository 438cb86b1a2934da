"""Data and the MLflow store: made once, on the submitting machine, before any job needs them."""

localrules:
    stage_data,
    init_mlflow,


rule stage_data:
    output:
        "results/data/{dataset}.json",
    log:
        "results/logs/stage_data/{dataset}.log",
    benchmark:
        "results/benchmarks/stage_data/{dataset}.tsv"
    params:
        data_root=config["data_root"],
        download="" if config["download"] else "--no-download",
    resources:
        mem_mb=2000,
        runtime=30,
    threads: 1
    conda:
        "../envs/bcrepro.yaml"
    shell:
        "python -m bcrepro stage --dataset {wildcards.dataset} --data-root {params.data_root:q} {params.download} "
        "--out {output:q} > {log:q} 2>&1"


rule init_mlflow:
    output:
        "results/mlflow/store.json",
    log:
        "results/logs/init_mlflow.log",
    benchmark:
        "results/benchmarks/init_mlflow.tsv"
    params:
        uri=mlflow_uri(),
        experiment=config["mlflow_experiment"],
        artifacts="results/mlflow/artifacts",
    resources:
        mem_mb=2000,
        runtime=30,
    threads: 1
    conda:
        "../envs/bcrepro.yaml"
    shell:
        "python -m bcrepro mlflow-init --mlflow-uri {params.uri:q} --mlflow-experiment {params.experiment:q} "
        "--artifacts {params.artifacts:q} --out {output:q} > {log:q} 2>&1"
