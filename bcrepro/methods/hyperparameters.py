"""The form of a hyper-parameter: its type, its range and, for a per-layer one, its length.

A method declares one form per key beside its defaults (``Method.forms``); ``Method.params_for`` checks every value
against it before a run writes anything, so that a wrong value is one error naming the key, the form expected and the
value given (``hyper-parameter 'epochs' of bc-ghs on lenet5 must be an integer >= 1, got 'ten' (a string)``), not a
traceback from deep inside training.

    forms = dict(TRAINING,                                   # epochs, lr, ... (schedules.py)
                 tau0=Number(above=0),
                 clip_mode=OneOf("parameter", "forward"),
                 clip_var=PerLayer(OrNull(Number(above=0), "no clipping"), shared=True),
                 prune_iterations=ListOf(Integer(minimum=0)))

``layers`` below is the number of prunable layers of the architecture (``prunable_layer_count``): a per-layer list
has exactly one value per layer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import torch

from .. import models


@lru_cache(maxsize=None)
def prunable_layer_count(arch: str) -> int:
    """The number of prunable layers of ``arch`` (3 for LeNet-300-100, 4 for LeNet-5, 15 for VGG-16), from the network
    built without memory."""
    with torch.device("meta"):
        return len(models.build(arch).prunable_layers())


class Form:
    """What values one hyper-parameter takes: ``describe`` says it in words, ``accepts`` checks a value, ``mismatch``
    says which part of a value does not fit."""

    def describe(self, layers: int) -> str:
        raise NotImplementedError

    def accepts(self, value, layers: int) -> bool:
        raise NotImplementedError

    def mismatch(self, value, layers: int) -> tuple[str, str, object] | None:
        """None when ``value`` fits, else (the path below the key, e.g. ``.rule``, the form expected there, the value
        found there)."""
        return None if self.accepts(value, layers) else ("", self.describe(layers), value)


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bounds(low, low_open: bool, high, high_open: bool) -> str:
    """`` >= 1``, `` > 0``, `` in (0, 1]``, or nothing."""
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high}"
    return ""


def _within(value, low, low_open: bool, high, high_open: bool) -> bool:
    above = low is None or (value > low if low_open else value >= low)
    below = high is None or (value < high if high_open else value <= high)
    return above and below


@dataclass(frozen=True)
class Integer(Form):
    """A whole number (not a bool, not 2.0) within ``[minimum, maximum]``."""

    minimum: int | None = None
    maximum: int | None = None

    def describe(self, layers: int) -> str:
        return "an integer" + _bounds(self.minimum, False, self.maximum, False)

    def accepts(self, value, layers: int) -> bool:
        return _is_integer(value) and _within(value, self.minimum, False, self.maximum, False)


@dataclass(frozen=True)
class Number(Form):
    """A finite int or float; ``minimum``/``maximum`` bound it inclusively, ``above``/``below`` exclusively."""

    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    below: float | None = None

    def _limits(self):
        low, low_open = (self.above, True) if self.above is not None else (self.minimum, False)
        high, high_open = (self.below, True) if self.below is not None else (self.maximum, False)
        return low, low_open, high, high_open

    def describe(self, layers: int) -> str:
        return "a number" + _bounds(*self._limits())

    def accepts(self, value, layers: int) -> bool:
        return _is_number(value) and _within(value, *self._limits())


@dataclass(frozen=True)
class Interval(Form):
    """A range written as a list of two finite numbers ``[low, high]`` with ``low < high``."""

    def describe(self, layers: int) -> str:
        return "a list [low, high] of two numbers with low < high"

    def accepts(self, value, layers: int) -> bool:
        return (isinstance(value, (list, tuple)) and len(value) == 2 and all(_is_number(v) for v in value)
                and value[0] < value[1])


@dataclass(frozen=True)
class Boolean(Form):
    def describe(self, layers: int) -> str:
        return "true or false"

    def accepts(self, value, layers: int) -> bool:
        return isinstance(value, bool)


@dataclass(frozen=True)
class OneOf(Form):
    """One of a few names."""

    choices: tuple[str, ...]

    def __init__(self, *choices: str):
        object.__setattr__(self, "choices", tuple(choices))

    def describe(self, layers: int) -> str:
        return "one of " + ", ".join(repr(choice) for choice in self.choices)

    def accepts(self, value, layers: int) -> bool:
        return isinstance(value, str) and value in self.choices


@dataclass(frozen=True)
class Fraction(Form):
    """A fraction written as text, such as ``"1/12"``, strictly between 0 and 1."""

    def describe(self, layers: int) -> str:
        return "a fraction such as '1/12'"

    def accepts(self, value, layers: int) -> bool:
        if not isinstance(value, str):
            return False
        numerator, slash, denominator = value.partition("/")
        try:
            return bool(slash) and 0 < float(numerator) / float(denominator) < 1
        except (ValueError, ZeroDivisionError):
            return False


@dataclass(frozen=True)
class AnyOf(Form):
    """Any of several forms."""

    forms: tuple[Form, ...]

    def __init__(self, *forms: Form):
        object.__setattr__(self, "forms", tuple(forms))

    def describe(self, layers: int) -> str:
        return ", or ".join(form.describe(layers) for form in self.forms)

    def accepts(self, value, layers: int) -> bool:
        return any(form.accepts(value, layers) for form in self.forms)


@dataclass(frozen=True)
class OrNull(Form):
    """``form``, or None (null in JSON and YAML), which means ``meaning``."""

    form: Form
    meaning: str

    def describe(self, layers: int) -> str:
        return f"null ({self.meaning}) or {self.form.describe(layers)}"

    def accepts(self, value, layers: int) -> bool:
        return value is None or self.form.accepts(value, layers)

    def mismatch(self, value, layers: int):
        if value is None:
            return None
        inner = self.form.mismatch(value, layers)
        return inner if inner is None or inner[0] else ("", self.describe(layers), value)


def _first_item_mismatch(item: Form, values, layers: int):
    """The first item of a list (right in length) that does not fit ``item``, with its index in the path."""
    for index, value in enumerate(values):
        inner = item.mismatch(value, layers)
        if inner is not None:
            path, expected, found = inner
            return f"[{index}]{path}", expected, found
    return None


@dataclass(frozen=True)
class ListOf(Form):
    """A list of values of one form, of any length or exactly ``length``."""

    item: Form
    length: int | None = None

    def describe(self, layers: int) -> str:
        count = "" if self.length is None else f" of {self.length} values"
        return f"a list{count}, each {self.item.describe(layers)}"

    def accepts(self, value, layers: int) -> bool:
        return self.mismatch(value, layers) is None

    def mismatch(self, value, layers: int):
        if not isinstance(value, (list, tuple)) or (self.length is not None and len(value) != self.length):
            return "", self.describe(layers), value
        return _first_item_mismatch(self.item, value, layers)


@dataclass(frozen=True)
class PerLayer(Form):
    """One value per prunable layer, in the network's order; with ``shared``, also a single value for every layer."""

    item: Form
    shared: bool = False

    def describe(self, layers: int) -> str:
        each = f"a list of {layers} values (one per prunable layer), each {self.item.describe(layers)}"
        return each + ("; or one such value for every layer" if self.shared else "")

    def accepts(self, value, layers: int) -> bool:
        return self.mismatch(value, layers) is None

    def mismatch(self, value, layers: int):
        if isinstance(value, (list, tuple)) and len(value) == layers:
            return _first_item_mismatch(self.item, value, layers)
        if self.shared and not isinstance(value, (list, tuple)) and self.item.accepts(value, layers):
            return None
        return "", self.describe(layers), value


@dataclass(frozen=True)
class Mapping(Form):
    """A mapping whose keys are among ``fields`` (each optional), each value of its field's form."""

    fields: dict[str, Form] = field(default_factory=dict)
    what: str = "a mapping"

    def describe(self, layers: int) -> str:
        return f"{self.what} (keys: {', '.join(self.fields)})"

    def accepts(self, value, layers: int) -> bool:
        return self.mismatch(value, layers) is None

    def mismatch(self, value, layers: int):
        if not isinstance(value, dict) or not set(value) <= set(self.fields):
            return "", self.describe(layers), value
        for key, item in value.items():
            inner = self.fields[key].mismatch(item, layers)
            if inner is not None:
                path, expected, found = inner
                return f".{key}{path}", expected, found
        return None


def given(value) -> str:
    """How an error shows the value it refused: its repr, and its kind where the repr could mislead."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return f"{value!r} (a string)"
        hint = "; YAML reads 1e-4 as text, write 1.0e-4" if "e" in value.lower() and "." not in value else ""
        return f"{value!r} (a string, not a number: write it without quotes{hint})"
    if isinstance(value, bool):
        return f"{value!r} (a boolean)"
    if isinstance(value, (list, tuple)):
        return f"{list(value)!r} (a list of {len(value)})"
    if isinstance(value, dict):
        return f"{value!r} (a mapping)"
    return repr(value)


def problems(forms: dict[str, Form], params: dict, layers: int) -> list[tuple[str, str, object]]:
    """(key path, form expected, value found) for every value of ``params`` that does not fit its form."""
    found = []
    for key, value in params.items():
        mismatch = forms[key].mismatch(value, layers)
        if mismatch is not None:
            path, expected, bad = mismatch
            found.append((key + path, expected, bad))
    return found
