"""bcrepro: the table of "Bayesian Compression for Deep Learning" (Louizos, Ullrich, Welling 2017) in one DAG.

    snakemake --cores all                                  # the paper's configuration (config/config.yaml)
    snakemake --cores all --configfile config/quick.yaml   # every LeNet cell, one seed, minutes on a CPU
    snakemake --profile profiles/slurm                     # on a SLURM cluster
    snakemake --cores all searches --configfile config/search_sws.yaml   # hyper-parameter studies (`searches`)

stage data -> create the MLflow store -> pretrain dense (arch, seed) -> train (arch, method, seed) -> compress ->
speed-up (group-sparse methods) -> table and figures. Every job is one `bcrepro` CLI call; see workflow/rules/.
"""
import shlex

from snakemake.utils import min_version

min_version("9.0")


configfile: os.path.join(workflow.basedir, "config", "config.yaml")


# Every job runs `python -m bcrepro` with this checkout first on the import path: the same code in the installed
# environment and in the jobs' conda environment (workflow/envs/bcrepro.yaml), which holds only the dependencies.
shell.prefix(f"export PYTHONPATH={shlex.quote(workflow.basedir)}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; ")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/compress.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/search_common.smk"
include: "workflow/rules/search.smk"


rule all:
    default_target: True
    input:
        final_targets(),
