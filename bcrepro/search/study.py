"""A study on a storage URL, run by any number of worker processes at once, resumable after any interruption.

    summary = run_search("sws_lenet5", "sqlite:///results/search/sws_lenet5/study.db", settings,
                         {"tau": {"low": 1e-3, "high": 0.1, "log": True}}, trials=16,
                         out="results/search/sws_lenet5/trials")

Every worker runs the same command; each trial is one Optuna trial, trained and compressed into
``out/trial<number>/`` (``objective.run_trial``). The decisions (docs/decisions.md):

- **What ``trials`` counts.** ``trials`` is the study's total, not this worker's share: a worker starts trials until
  the study has that many *finished* ones, counting COMPLETE and PRUNED trials and the trials that failed on their
  own (a NaN loss, a value the method refuses: the configuration was tried, and trying it again with the same seed
  fails again). Running the command again with the same ``trials`` runs only what is missing; with more, only the
  difference. While the others' running trials would reach the total, a worker waits for them rather than exit, so
  that the command ends with the study complete.
- **Interrupted trials.** A trial whose worker was stopped (Ctrl-C, SIGTERM from Snakemake or SLURM) is failed by
  that worker on its way out; one whose worker was killed outright stays RUNNING in the storage, and is failed by
  the next worker that finds it without a heartbeat (a time stamp its worker's thread writes every ``heartbeat``
  seconds, in the trial's user attributes) for ``GRACE_BEATS`` beats. Either is *interrupted*: not counted, and its
  configuration is tried again by the next trial started (``retry_of``), in the same run directory, so that training
  resumes from its last epoch's checkpoint.
- **Parallel workers.** On SQLite, a lock file beside the database serialises the short step in which a worker fails
  stale trials, counts and starts its next trial, so that K workers never start more than the total, and the
  schema is created once. Other storages (PostgreSQL, MySQL) get no such lock: trial numbers are still distinct, but
  workers finishing at the same moment may start up to K - 1 trials more than the total.
- **Sampling.** Optuna's TPE with the budget as a constraint (``TPESampler(constraints_func=...)``): infeasible
  trials count as worse than any feasible one. The first half of the trials (at most 10) are drawn at random. The
  sampler is seeded from the study's seed and the number of trials before this one, so that a study run by one
  worker is reproducible, and workers starting at once draw different configurations.

Optuna is imported here and in ``report`` only.
"""
from __future__ import annotations

import fcntl
import json
import logging
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import optuna
from optuna.trial import TrialState

from ..data import DataNotFoundError
from ..errors import UsageError
from ..tracking.store import normalize_uri, sqlite_path
from ..train import TrainingDiverged
from .objective import TrialSettings, run_trial
from .space import SearchSpace, parse_space

log = logging.getLogger("bcrepro")

TRIAL_DIR = "trial{number:04d}"
HEARTBEAT_S = 30.0   # seconds between a running trial's heartbeats
GRACE_BEATS = 4      # missed heartbeats after which a running trial counts as interrupted
SQLITE_BUSY_TIMEOUT_S = 60  # how long a worker waits for another's write to the SQLite file
MAX_STARTUP_TRIALS = 10

# The trial's user attributes (the table's columns come from them)
DEFINITION = "definition"   # of the study: TrialSettings.identity() and the space
PARAMS = "params"           # the hyper-parameter overrides of the trial, as trained (pi_zero, not 1 - pi_zero)
RESULT = "result"           # objective.run_trial's measurements
ERROR = "error"             # why the trial failed on its own (absent: it was interrupted)
HEARTBEAT = "heartbeat"     # time.time() of its worker's last heartbeat
RETRY_OF = "retry_of"       # the interrupted trial it tries again
RUN_DIR = "run_dir"

INTERRUPTED = "INTERRUPTED"  # a FAIL without ERROR, in the table


# ------------------------------------------------------------------------------------------------------ storage

def storage_url(url: str) -> str:
    """``url`` with a relative SQLite path made absolute (the same file whatever a job's directory)."""
    return normalize_uri(url)


def storage_for(url: str, create: bool = True) -> optuna.storages.RDBStorage:
    """Optuna's storage at ``url``; SQLite files wait up to ``SQLITE_BUSY_TIMEOUT_S`` for another worker's write.
    Without ``create``, a missing SQLite file is an error instead of a new, empty study."""
    url = storage_url(url)
    path = sqlite_path(url)
    if path is None:
        return optuna.storages.RDBStorage(url)
    if not create and not path.exists():
        raise UsageError(f"no study storage at {path}: run `bcrepro search --storage {url} ...` first")
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}})


@contextmanager
def study_lock(url: str):
    """Exclusive between the workers of one SQLite storage (a lock file beside it); a no-op for other storages."""
    path = sqlite_path(storage_url(url))
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _plain(value):
    """``value`` as JSON gives it back (tuples become lists), so that stored and new definitions compare equal."""
    return json.loads(json.dumps(value))


def open_study(name: str, url: str, settings: TrialSettings, space: SearchSpace) -> optuna.Study:
    """Create the study ``name`` in the storage at ``url``, or load it: then it must be the same search (method,
    arch, data set, seed, epochs, fixed params, budget and space), else a ``UsageError`` naming what differs."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the trials are logged by bcrepro's own lines
    definition = _plain({**settings.identity(), "space": space.spec})
    with study_lock(url):
        study = optuna.create_study(storage=storage_for(url), study_name=name, direction="minimize",
                                    load_if_exists=True)
        stored = study.user_attrs.get(DEFINITION)
        if stored is None:
            study.set_user_attr(DEFINITION, definition)
            return study
    if stored != definition:
        differ = [f"{key} ({stored.get(key)!r} there, {definition.get(key)!r} here)"
                  for key in sorted(set(stored) | set(definition)) if stored.get(key) != definition.get(key)]
        raise UsageError(f"study {name!r} in {storage_url(url)} is another search: {'; '.join(differ)}. Use another "
                         f"--study name to start a new one")
    return study


def load_study(name: str, url: str) -> optuna.Study:
    """An existing study, for its report."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage_for(url, create=False)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [summary.study_name for summary in optuna.get_all_study_summaries(storage)]
        raise UsageError(f"no study {name!r} in {storage_url(url)}; it holds {names or 'none'}") from None


# ------------------------------------------------------------------------------------------------ trial states

def trial_state(trial: optuna.trial.FrozenTrial) -> str:
    """COMPLETE, PRUNED, FAIL (failed on its own), INTERRUPTED (failed because its worker stopped), RUNNING or
    WAITING."""
    if trial.state == TrialState.FAIL and ERROR not in trial.user_attrs:
        return INTERRUPTED
    return trial.state.name


def finished(trial: optuna.trial.FrozenTrial) -> bool:
    """Whether the trial counts towards the study's total (module docstring)."""
    return trial_state(trial) in ("COMPLETE", "PRUNED", "FAIL")


def _last_sign_of_life(trial: optuna.trial.FrozenTrial) -> float:
    started = trial.datetime_start.timestamp() if trial.datetime_start is not None else 0.0
    return max(started, float(trial.user_attrs.get(HEARTBEAT, 0.0)))


def fail_stale_trials(study: optuna.Study, grace_s: float) -> list[int]:
    """Fail the running trials without a heartbeat for ``grace_s`` seconds (their workers were killed); their
    numbers."""
    now, failed = time.time(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        silent = now - _last_sign_of_life(trial)
        if silent > grace_s:
            log.warning("trial %d has had no heartbeat for %.0f s (its worker was killed?): it is failed and its "
                        "configuration will be tried again", trial.number, silent)
            _tell(study, trial.number, state=TrialState.FAIL)
            failed.append(trial.number)
    return failed


def next_retry(trials: list[optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial | None:
    """The oldest interrupted trial that no other trial tries again yet."""
    retried = {trial.user_attrs.get(RETRY_OF) for trial in trials}
    return next((trial for trial in trials if trial_state(trial) == INTERRUPTED and trial.number not in retried),
                None)


def _tell(study: optuna.Study, trial, attrs: dict | None = None, **outcome) -> None:
    """Set the user attributes ``attrs`` of ``trial`` (an ``optuna.Trial`` or a number), and the constraint of a
    measured trial, then ``study.tell`` it; where another worker has failed it meanwhile (it thought this one dead),
    a warning."""
    try:
        for key, value in (attrs or {}).items():
            trial.set_user_attr(key, value)
        if SETS_CONSTRAINT and RESULT in (attrs or {}):
            trial.set_constraint("validation_error", attrs[RESULT]["constraint"])
        study.tell(trial, **outcome)
    except (RuntimeError, ValueError) as err:  # optuna's UpdateFinishedTrialError is a RuntimeError
        number = trial if isinstance(trial, int) else trial.number
        log.warning("could not record the outcome of trial %d (another worker failed it as stale?): %s", number, err)


# ----------------------------------------------------------------------------------------------------- workers

# Optuna 5 reads a trial's constraint from the trial (Trial.set_constraint) and deprecates the sampler's
# constraints_func, which Optuna 4 needs.
SETS_CONSTRAINT = hasattr(optuna.trial.Trial, "set_constraint")


def _constraint_of(trial: optuna.trial.FrozenTrial) -> list[float]:
    return [trial.user_attrs[RESULT]["constraint"]]


def sampler(seed: int, trials_before: int, total: int) -> optuna.samplers.TPESampler:
    """The sampler of the next trial (module docstring, "Sampling")."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # constraints_func
        return optuna.samplers.TPESampler(seed=(1_000_003 * seed + trials_before) % 2 ** 32,
                                          n_startup_trials=min(MAX_STARTUP_TRIALS, max(1, total // 2)),
                                          constraints_func=None if SETS_CONSTRAINT else _constraint_of)


class _Heartbeat:
    """A thread writing the trial's heartbeat every ``interval`` seconds while the trial runs."""

    def __init__(self, trial: optuna.Trial, interval: float):
        self.trial, self.interval = trial, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{trial.number}", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.trial.set_user_attr(HEARTBEAT, time.time())
            except Exception as err:  # the storage away for a moment: the next beat tries again
                log.warning("heartbeat of trial %d not written: %s", self.trial.number, err)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False


@contextmanager
def _terminate_as_interrupt():
    """SIGTERM (Snakemake cancelling a job, SLURM's time limit) ends the worker like Ctrl-C: its trial is failed as
    interrupted, to be tried again, instead of waiting out the heartbeat's grace period."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _start_trial(study: optuna.Study, url: str, seed: int, total: int, grace_s: float):
    """Under the storage's lock: fail stale trials, count, and start the next trial (a retry where one is due).
    Returns (the trial or None, finished count, running count)."""
    with study_lock(url):
        fail_stale_trials(study, grace_s)
        trials = study.get_trials(deepcopy=False)
        done = sum(finished(trial) for trial in trials)
        running = sum(trial.state == TrialState.RUNNING for trial in trials)
        if done + running >= total:
            return None, done, running
        retry = next_retry(trials)
        if retry is not None:
            attrs = {RETRY_OF: retry.number}
            if RUN_DIR in retry.user_attrs:
                attrs[RUN_DIR] = retry.user_attrs[RUN_DIR]
            study.enqueue_trial(retry.params, user_attrs=attrs)
        study.sampler = sampler(seed, len(trials), total)
        trial = study.ask()
        trial.set_user_attr(HEARTBEAT, time.time())
        return trial, done, running


def _run_one(study: optuna.Study, trial: optuna.Trial, name: str, settings: TrialSettings, space: SearchSpace,
             out: Path, heartbeat: float) -> None:
    """Run ``trial`` and record its outcome; a trial's own failure is recorded and the worker goes on."""
    run_dir = Path(trial.user_attrs.get(RUN_DIR) or out / TRIAL_DIR.format(number=trial.number))
    trial.set_user_attr(RUN_DIR, str(run_dir))
    retry_of = trial.user_attrs.get(RETRY_OF)
    log.info("study %s: trial %d%s in %s", name, trial.number,
             "" if retry_of is None else f" (trial {retry_of} again, interrupted)", run_dir)
    tags = {"study": name, "trial": trial.number, "mlflow.runName": f"search/{name}/trial{trial.number}"}
    with _Heartbeat(trial, heartbeat):
        try:
            overrides = space.suggest(trial)
            trial.set_user_attr(PARAMS, overrides)
            log.info("study %s: trial %d tries %s", name, trial.number, json.dumps(overrides))
            result = run_trial(run_dir, settings, overrides, tags)
        except (KeyboardInterrupt, DataNotFoundError):  # not the configuration's fault: to be tried again
            _tell(study, trial, state=TrialState.FAIL)
            raise
        except (ValueError, TrainingDiverged) as err:  # the configuration's own failure: counted, the study goes on
            _tell(study, trial, {ERROR: f"{type(err).__name__}: {err}"}, state=TrialState.FAIL)
            log.warning("study %s: trial %d failed: %s", name, trial.number, err)
            return
        except Exception as err:  # a bug: recorded as the trial's failure, and the worker stops with its traceback
            _tell(study, trial, {ERROR: f"{type(err).__name__}: {err}"}, state=TrialState.FAIL)
            raise
    _tell(study, trial, {RESULT: result}, values=float(result["kept_weights"]))


def run_search(name: str, url: str, settings: TrialSettings, space, trials: int, out,
               heartbeat: float = HEARTBEAT_S) -> dict:
    """One worker of the study ``name`` at ``url`` (created on first use): run trials of ``settings`` over ``space``
    (the mapping ``space.parse_space`` reads) into ``out`` until the study has ``trials`` finished ones (module
    docstring). Returns this worker's summary: the study, the trials it ran, and the study's trials by state."""
    if not (isinstance(trials, int) and not isinstance(trials, bool) and trials >= 1):
        raise UsageError(f"--trials must be an integer >= 1 (the study's total), got {trials!r}")
    if not heartbeat > 0:
        raise UsageError(f"--heartbeat must be > 0 seconds, got {heartbeat}")
    space = parse_space(space, settings.method, settings.arch, settings.fixed())
    settings.check()
    study = open_study(name, url, settings, space)
    out, ran, waiting = Path(out), [], False
    with _terminate_as_interrupt():
        while True:
            trial, done, running = _start_trial(study, url, settings.seed, trials, GRACE_BEATS * heartbeat)
            if trial is None and done >= trials:
                break
            if trial is None:
                if not waiting:
                    log.info("study %s: %d of %d trials finished, %d running in other workers: waiting for them",
                             study.study_name, done, trials, running)
                waiting = True
                time.sleep(heartbeat)
                continue
            waiting = False
            ran.append(trial.number)
            _run_one(study, trial, study.study_name, settings, space, out, heartbeat)
    states = {}
    for frozen in study.get_trials(deepcopy=False):
        states[trial_state(frozen)] = states.get(trial_state(frozen), 0) + 1
    log.info("study %s: %d trials finished (%s); this worker ran %s", study.study_name, done,
             ", ".join(f"{count} {state}" for state, count in sorted(states.items())), ran or "none")
    return {"study": study.study_name, "storage": storage_url(url), "trials": trials, "trials_run": ran,
            "states": states}
