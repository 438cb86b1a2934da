"""The table beside the paper's, the figures, and (deferred mode) the import of every run into MLflow."""

localrules:
    table,
    figures,
    import_mlflow,


rule table:
    input:
        run_files("metrics.json"),
        run_files("speed.json", compressed_methods()),
    output:
        TABLE_FILES,
    log:
        LOGS + "/table.log",
    benchmark:
        BENCHMARKS + "/table.tsv"
    params:
        runs=RUNS,
    resources:
        mem_mb=2000,
        runtime=30,
    threads: 1
    shell:
        "{BCREPRO} table --runs {params.runs:q} --out results > {log:q} 2>&1"


rule figures:
    input:
        run_files("metrics.json"),
        run_files("speed.json", compressed_methods()),
    output:
        figure_files(),
    log:
        LOGS + "/figures.log",
    benchmark:
        BENCHMARKS + "/figures.tsv"
    params:
        runs=RUNS,
        tracking=tracking_args("figures"),
    resources:
        mem_mb=2000,
        runtime=30,
    threads: 1
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
    benchmark:
        BENCHMARKS + "/import_mlflow.tsv"
    params:
        runs=RUNS,
        uri=mlflow_uri(),
        experiment=config["mlflow_experiment"],
        artifacts="results/mlflow/artifacts",
    resources:
        mem_mb=2000,
        runtime=30,
    threads: 1
    shell:
        "{BCREPRO} mlflow-import --runs {params.runs:q} --mlflow-uri {params.uri:q} "
        "--mlflow-experiment {params.experiment:q} --artifacts {params.artifacts:q} --out {output:q} > {log:q} 2>&1"
