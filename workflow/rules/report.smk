"""The table beside the paper's, the figures, and (deferred mode) the import of every run into MLflow."""

localrules:
    table,
    figures,
    import_mlflow,


rule table:
    input:
        run_files("metrics.json"),
        run_files("speed.json", group_sparse_methods()),
    output:
        TABLE_FILES,
    log:
        LOGS + "/table.log",
    params:
        runs=RUNS,
    shell:
        "{BCREPRO} table --runs {params.runs:q} --out results > {log:q} 2>&1"


rule figures:
    input:
        run_files("metrics.json"),
        run_files("speed.json", group_sparse_methods()),
    output:
        figure_files(),
    log:
        LOGS + "/figures.log",
    params:
        runs=RUNS,
        tracking=tracking_args("figures"),
    shell:
        "{BCREPRO} figures --runs {params.runs:q} --out results/figures {params.tracking} > {log:q} 2>&1"


rule import_mlflow:
    input:
        "results/mlflow/store.json",
        TABLE_FILES,
        figure_files(),
    output:
        "results/mlflow/imported.json",
    log:
        LOGS + "/import_mlflow.log",
    params:
        runs=RUNS,
        uri=mlflow_uri(),
        experiment=config["mlflow_experiment"],
        artifacts="results/mlflow/artifacts",
    shell:
        "{BCREPRO} mlflow-import --runs {params.runs:q} --mlflow-uri {params.uri:q} "
        "--mlflow-experiment {params.experiment:q} --artifacts {params.artifacts:q} --out {output:q} > {log:q} 2>&1"
