"""Data and the MLflow store: made once, on the submitting machine, before any job needs them."""

localrules:
    stage_data,
    init_mlflow,


rule stage_data:
    output:
        "results/data/{dataset}.json",
    log:
        LOGS + "/stage_data/{dataset}.log",
    params:
        data_root=config["data_root"],
        download="" if config["download"] else "--no-download",
    shell:
        "{BCREPRO} stage --dataset {wildcards.dataset} --data-root {params.data_root:q} {params.download} "
        "--out {output:q} > {log:q} 2>&1"


rule init_mlflow:
    output:
        "results/mlflow/store.json",
    log:
        LOGS + "/init_mlflow.log",
    params:
        uri=mlflow_uri(),
        experiment=config["mlflow_experiment"],
        artifacts="results/mlflow/artifacts",
    shell:
        "{BCREPRO} mlflow-init --mlflow-uri {params.uri:q} --mlflow-experiment {params.experiment:q} "
        "--artifacts {params.artifacts:q} --out {output:q} > {log:q} 2>&1"
