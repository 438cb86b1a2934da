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
        "results/logs/table.log",
    benchmark:
        "results/benchmarks/table.tsv"
    params:
        runs=runs_root,
    resources:
        mem_mb=2000,
        runtime=30,
    threads: 1
    conda:
        "../envs/bcrepro.yaml"
    shell:
        "python -m bcrepro table --runs {params.runs:q} --out results > {log:q} 2>&1"


rule figures:
    input:
        run_files("metrics.json"),
        run_files("speed.json", compressed_methods()),
    output:
        figure_files(),
    log:
        "results/logs/figures.log",
    benchmark:
        "results/benchmarks/figures.tsv"
    params:
        runs=runs_root,
        tracking=tracking_args("figures"),
    resources:
        mem_mb=2000,
        runtime=30,
    threads: 1
    conda:
        "../envs/bcrepro.yaml"
    shell:
        "python -m bcrepro figures --runs {params.runs:q} --out results/figures {params.tracking} > {log:q} 2>&1"


rule import_mlflow:
    input:
        "results/mlflow/store.json",
        TABLE_FILES,
        figure_files(),
    output:
        "results/mlflow/imported.json",
    log:
        "results/logs/import_mlflow.log",
    benchmark:
        "results/benchmarks/import_mlflow.tsv"
    params:
        runs=runs_root,
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
        "python -m bcrepro mlflow-import --runs {params.runs:q} --mlflow-uri {params.uri:q} "
        "--mlflow-experiment {params.experiment:q} --artifacts {params.artifacts:q} --out {output:q} > {log:q} 2>&1"
