"""The hyper-parameter studies of the config's `searches` block: their checks, paths and command-line options
(the rules are in search.smk). Each study is checked when the workflow starts, so that a typo in a space or budget
stops it before any job, naming the config key."""

SEARCHES = "results/search"


def search_config(name):
    """The settings of study ``name``, with the schema's defaults for the keys it leaves out."""
    study = config["searches"][name]
    return {"seed": 0, "trials": 16, "jobs": 1, "epochs": None, "params": {}, **study}


def search_fixed(study):
    """The overrides every trial of a study trains with, its epochs among them."""
    return {**study["params"], **({} if study["epochs"] is None else {"epochs": study["epochs"]})}


def check_searches():
    """Every study names a registered method that runs on its architecture, a space of that method's
    hyper-parameters (``bcrepro.search.parse_space``) and a budget; its dense reference comes from `archs`."""
    if not config["searches"]:
        return
    from bcrepro.search import Budget, parse_space  # Optuna is needed only when a study is configured

    for name in config["searches"]:
        study = search_config(name)
        key = f"config key 'searches.{name}"
        try:
            method = get_method(study["method"])
            parse_space(study["space"], study["method"], study["arch"], search_fixed(study))
        except ValueError as err:
            raise WorkflowError(f"{key}': {err}") from None
        try:
            Budget(**study["budget"])
        except (TypeError, ValueError) as err:
            raise WorkflowError(f"{key}.budget': {err}") from None
        uses_dense = method.starts_from(study["arch"]) or search_needs_reference(study)
        if uses_dense and study["arch"] not in config["archs"]:
            raise WorkflowError(f"{key}.arch': the study needs the dense {study['arch']}, which the pretrain rule "
                                f"trains only for the architectures of 'archs' ({', '.join(config['archs'])}): add "
                                f"{study['arch']} there")


def search_names_pattern():
    """The `search` wildcard: a configured study's name (none matches when there is none)."""
    return "|".join(map(re.escape, config["searches"])) or "(?!)"


def search_targets():
    """What `snakemake searches` builds: every study's table and best configuration."""
    return [f"{SEARCHES}/{name}/{file}" for name in config["searches"] for file in ("study.csv", "study.md",
                                                                                      "best.json")]


def search_workers(wildcards):
    """The stamps of study's workers: one per job running trials side by side."""
    jobs = search_config(wildcards.search)["jobs"]
    return [f"{SEARCHES}/{wildcards.search}/workers/worker{k}.json" for k in range(jobs)]


def search_storage(wildcards):
    """The study's Optuna storage, absolute (the same file from every job's directory)."""
    return tracking.sqlite_uri(Path(f"{SEARCHES}/{wildcards.search}/study.db").resolve())


def search_needs_reference(study):
    """Whether a study's trials measure against the dense reference without starting from it: a budget stated over
    its validation error, or the method's `sparsest` threshold rule (as compress_inputs)."""
    thresholds = get_method(study["method"]).params_for(study["arch"], study["params"]).get("thresholds")
    return (study["budget"].get("max_error_increase") is not None
            or (isinstance(thresholds, dict) and thresholds.get("rule") == "sparsest"))


def search_inputs(wildcards):
    """The data stamp, the MLflow store (direct mode), and the dense reference: the trials' start where the method
    starts from it, else where they are measured against it."""
    study = search_config(wildcards.search)
    inputs = {"data": f"results/data/{dataset(study['arch'])}.json", "store": store_input(wildcards)}
    if get_method(study["method"]).starts_from(study["arch"]):  # the method's own reference where it has one
        inputs["init"] = reference_model(study["arch"], study["method"], study["seed"])
    elif search_needs_reference(study):
        inputs["reference"] = f"{RUNS}/{study['arch']}/dense/seed{study['seed']}/model.pt"
    return inputs


def search_options(wildcards):
    """The `bcrepro search` options that say what the study searches: every worker passes the same."""
    study = search_config(wildcards.search)
    options = [f"--arch {study['arch']}", f"--method {shlex.quote(study['method'])}",
               f"--dataset {dataset(study['arch'])}", f"--seed {study['seed']}", f"--trials {study['trials']}",
               f"--params-json {shlex.quote(json.dumps(study['params'], sort_keys=True))}",
               f"--space-json {shlex.quote(json.dumps(study['space']))}"]
    if study["epochs"] is not None:
        options.append(f"--epochs {study['epochs']}")
    budget = study["budget"]
    if budget.get("max_validation_error_pct") is not None:
        options.append(f"--max-validation-error-pct {budget['max_validation_error_pct']}")
    if budget.get("max_error_increase") is not None:
        options.append(f"--max-error-increase {budget['max_error_increase']}")
    return " ".join(options)


def search_runtime(wildcards):
    """Minutes a worker may take (a cluster's time limit): its share of the trials, each twice the rough CPU
    estimate of its epochs plus five minutes of compression."""
    study = search_config(wildcards.search)
    epochs = study["epochs"] or get_method(study["method"]).params_for(study["arch"], study["params"])["epochs"]
    share = -(-study["trials"] // study["jobs"])
    return int(max(15, 2 * share * (epochs * MINUTES_PER_EPOCH[study["arch"]] + 5)))


check_searches()
