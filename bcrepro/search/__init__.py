"""Hyper-parameter search for any registered method with Optuna, run by the ``bcrepro search`` command and the
workflow's ``searches`` block: the fewest kept weights within a validation-error budget (the test set is never
used), each trial one MLflow run, resumable and run by several workers at once through one storage.

    from bcrepro.search import Budget, TrialSettings, run_search, write_report
    settings = TrialSettings(method="sws", arch="lenet5", dataset="mnist", seed=0, epochs=30,
                             params={"batch_size": 256}, budget=Budget(max_validation_error_pct=1.2),
                             init="results/runs/lenet5/dense/seed0/model.pt")
    run_search("sws_lenet5", "sqlite:///results/search/sws_lenet5/study.db", settings,
               {"tau": {"low": 1e-3, "high": 0.1, "log": True}}, trials=16, out="results/search/sws_lenet5/trials")
    write_report("sws_lenet5", "sqlite:///results/search/sws_lenet5/study.db", "results/search/sws_lenet5")

The modules, one job each: ``space`` (the search space, checked against the method's forms), ``objective`` (one
trial: train, compress, score), ``study`` (the Optuna study: storage, workers, resuming), ``report`` (the table and
``best.json``). Optuna is imported in ``study`` and ``report`` only, so ``import bcrepro`` does not need it; this
package does (the ``workflow`` extra).
"""
from .objective import Budget, TrialSettings, run_trial
from .report import best_row, write_report
from .space import SearchSpace, parse_space, read_space
from .study import run_search

__all__ = ["Budget", "SearchSpace", "TrialSettings", "best_row", "parse_space", "read_space", "run_search",
           "run_trial", "write_report"]
