"""A search space: which hyper-parameters of a method a study varies, and over what, checked before any trial.

Written as a mapping from hyper-parameter names (keys of ``Method.hyperparameters[arch]``) to a range or choices:

    tau:        {low: 1.0e-3, high: 0.1, log: true}          # a float, log-uniform
    pi_zero:    {low: 0.9, high: 0.9999, log: true, complement: true}   # 1 - pi_zero log-uniform in [1e-4, 0.1]
    batch_size: {low: 64, high: 512, log: true}               # an int: the method's default is one (or type: int)
    lr_schedule: {choices: [constant, cosine]}

A range takes ``low`` < ``high`` (both included), ``log`` (sample the logarithm uniformly; needs ``low`` > 0),
``type`` (``float`` or ``int``; by default the type of the method's default value) and, for floats, ``complement``
(sample ``1 - value`` between ``1 - high`` and ``1 - low``: log-uniform there puts as many trials between 0.999 and
0.9999 as between 0.9 and 0.99). Choices are numbers, strings, booleans or null. Both ends of a range and every
choice must be values the method accepts (``Method.params_for``), so a trial never fails on a value the space allowed.
Every problem is one ``UsageError`` naming the entry, what was expected and what was found.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import UsageError
from ..methods import get_method
from ..methods.hyperparameters import given

RANGE_KEYS = ("low", "high", "log", "type", "complement")
TYPES = ("float", "int")


@dataclass(frozen=True)
class Dimension:
    """One searched hyper-parameter: ``name`` in the method, ``choices`` or a range [``low``, ``high``] of
    ``kind`` (float or int), sampled log-uniformly with ``log``, as ``1 - value`` with ``complement``."""
    name: str
    choices: tuple | None = None
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    kind: str = "float"
    complement: bool = False

    @property
    def sampled_name(self) -> str:
        """The name of what the sampler draws (Optuna's parameter): ``1-pi_zero`` for a complement."""
        return f"1-{self.name}" if self.complement else self.name

    def suggest(self, trial):
        """This hyper-parameter's value for ``trial`` (an ``optuna.Trial``; an enqueued trial gets its fixed one)."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, self.low, self.high, log=self.log)
        if self.complement:
            return 1.0 - trial.suggest_float(self.sampled_name, 1.0 - self.high, 1.0 - self.low, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class SearchSpace:
    """The dimensions of a study, in the order written; ``spec`` is the mapping they were parsed from."""
    dimensions: tuple[Dimension, ...]
    spec: dict

    def suggest(self, trial) -> dict:
        """The hyper-parameter overrides of one trial."""
        return {dimension.name: dimension.suggest(trial) for dimension in self.dimensions}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _entry_error(name: str, problem: str) -> UsageError:
    return UsageError(f"search space entry {name!r}: {problem}")


def _check_accepted(name: str, what: str, value, method, arch: str, fixed: dict) -> None:
    """The method must accept ``value`` for ``name`` (with the study's fixed settings): its form is the judge."""
    try:
        method.params_for(arch, {**fixed, name: value})
    except UsageError as err:
        raise _entry_error(name, f"{what} {value!r} is not a value {method.name} takes: {err}") from None


def _parse_choices(name: str, entry: dict, method, arch: str, fixed: dict) -> Dimension:
    extra = sorted(set(entry) - {"choices"})
    if extra:
        raise _entry_error(name, f"choices take no other keys, found {extra}")
    choices = entry["choices"]
    if not isinstance(choices, list) or not choices:
        raise _entry_error(name, f"choices must be a non-empty list, got {given(choices)}")
    for choice in choices:
        if not (choice is None or isinstance(choice, (bool, int, float, str))):
            raise _entry_error(name, f"each choice must be a number, string, boolean or null (a per-layer list "
                                     f"cannot be a choice), got {given(choice)}")
        _check_accepted(name, "choice", choice, method, arch, fixed)
    if len(set(map(json.dumps, choices))) != len(choices):
        raise _entry_error(name, f"choices repeat a value: {choices}")
    return Dimension(name, choices=tuple(choices))


def _parse_range(name: str, entry: dict, default, method, arch: str, fixed: dict) -> Dimension:
    unknown = sorted(set(entry) - set(RANGE_KEYS))
    if unknown:
        raise _entry_error(name, f"unknown key(s) {unknown}; a range takes {', '.join(RANGE_KEYS)}, choices take "
                                 f"choices")
    missing = [key for key in ("low", "high") if key not in entry]
    if missing:
        raise _entry_error(name, f"a range needs low and high, {' and '.join(missing)} missing")
    default_kind = "int" if isinstance(default, int) and not isinstance(default, bool) else "float"
    kind = entry.get("type", default_kind)
    if kind not in TYPES:
        raise _entry_error(name, f"type must be one of {', '.join(TYPES)}, got {given(kind)}")
    low, high = entry["low"], entry["high"]
    for key, value in (("low", low), ("high", high)):
        if not _is_number(value):
            raise _entry_error(name, f"{key} must be a number, got {given(value)}")
        if kind == "int" and not isinstance(value, int):
            raise _entry_error(name, f"{key} of an int range must be an integer, got {given(value)}")
    for key in ("log", "complement"):
        if not isinstance(entry.get(key, False), bool):
            raise _entry_error(name, f"{key} must be true or false, got {given(entry[key])}")
    log, complement = entry.get("log", False), entry.get("complement", False)
    if not low < high:
        raise _entry_error(name, f"low ({low}) must be below high ({high})")
    if complement and kind == "int":
        raise _entry_error(name, "complement samples 1 - value, a float: it does not apply to an int range")
    if log and complement and not high < 1:
        raise _entry_error(name, f"a log range of 1 - value needs high < 1 (1 - high > 0), got high = {high}")
    if log and not complement and not low > 0:
        raise _entry_error(name, f"a log range needs low > 0, got low = {low}")
    for key, value in (("low", low), ("high", high)):  # forms are intervals: both ends fit, so does every value
        _check_accepted(name, key, value if kind == "int" else float(value), method, arch, fixed)
    return Dimension(name, low=low, high=high, log=log, kind=kind, complement=complement)


def parse_space(spec, method_name: str, arch: str, fixed: dict | None = None) -> SearchSpace:
    """Check ``spec`` (the mapping of the module docstring) against ``method_name``'s hyper-parameters on ``arch``;
    ``fixed`` are the study's other overrides (the epochs among them), which a dimension may not also set."""
    method = get_method(method_name)
    fixed = dict(fixed or {})
    defaults = method.params_for(arch, fixed)  # also: the method runs on arch, and the fixed values fit
    if not isinstance(spec, dict):
        raise UsageError(f"a search space must be a mapping of hyper-parameter names to a range or choices, got "
                         f"{given(spec)}")
    if not spec:
        raise UsageError(f"the search space is empty: name at least one hyper-parameter of {method.name} on {arch} "
                         f"(known: {', '.join(sorted(defaults))})")
    dimensions = []
    for name, entry in spec.items():
        if name not in defaults:
            raise UsageError(f"search space entry {name!r} is not a hyper-parameter of {method.name} on {arch}; "
                             f"known: {', '.join(sorted(defaults))}")
        if name in fixed:
            raise _entry_error(name, f"it is also fixed to {fixed[name]!r} for every trial (the study's params or "
                                     f"epochs): search it or fix it, not both")
        if not isinstance(entry, dict):
            raise _entry_error(name, f"expected a range ({{low: ..., high: ...}}) or choices ({{choices: [...]}}), "
                                     f"got {given(entry)}")
        if "choices" in entry:
            dimensions.append(_parse_choices(name, entry, method, arch, fixed))
        else:
            dimensions.append(_parse_range(name, entry, defaults[name], method, arch, fixed))
    return SearchSpace(tuple(dimensions), dict(spec))


def read_space(text: str | None = None, path: str | None = None):
    """The raw space from ``--space-json`` (inline JSON) or ``--space-file`` (YAML or JSON), exactly one of them."""
    if (text is None) == (path is None):
        raise UsageError("give the search space once: --space-json JSON or --space-file FILE")
    if path is not None:
        try:
            return yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise UsageError(f"--space-file {path} does not exist") from None
        except yaml.YAMLError as err:
            raise UsageError(f"--space-file {path} is not valid YAML: {err}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(f"--space-json is not valid JSON ({err}): {text[:200]}") from None
