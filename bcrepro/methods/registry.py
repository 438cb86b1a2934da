"""The method registry: a string from a config or the CLI maps to a ``Method`` without if/else chains."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

from torch import nn

from ..errors import UsageError
from ..models import LayerFactory
from .hyperparameters import Form, given, problems, prunable_layer_count
from .schedules import SHARED_DEFAULTS

METHODS: dict[str, "Method"] = {}


@dataclass(frozen=True)
class Method:
    """What a method is: its layers, its training hyper-parameters per architecture and how it is compressed.

    ``hyperparameters[arch]`` are plain values with the source of each in a comment in the method's file; every key
    can be overridden from a params file. The settings every method shares (``schedules.SHARED_DEFAULTS``: the pixel
    scaling ``preprocess`` and the KL's ``kl_images``) are added to each architecture's defaults where the method
    does not set them. ``forms[key]`` is each key's type, range and per-layer length
    (``bcrepro.methods.hyperparameters``), declared beside the defaults; ``params_for`` checks every value against it.
    ``layer_factory(arch, hp)`` gives the layers the architecture is built from.
    ``starts_from_dense``: the workflow trains the dense reference first and passes it as ``--init``; True for
    every architecture, or the architectures where it does (``starts_from(arch)`` answers).
    ``group_sparse``: compression removes whole units and filters, so a slimmed model exists and the workflow measures
    its speed-up.
    ``attach(net, hp)``: right after the network is built, every time (modules the method adds to it, such as SWS's
    mixture prior, so that state dicts load). ``finalize(net, hp)``: on the trained network before compression (SWS's
    merging and snapping). ``prepare(net, hp)``: once before training starts (after ``--init``), not on resume;
    whatever it sets must live in the network's parameters or buffers. ``after_step(net, hp)`` returns the callback
    the training loop runs after every optimiser step (``bcrepro.train.train``'s ``after_step``).
    ``scheduled_steps(hp)``: the optimiser steps (0-based) at which the method's schedule must act, by name (DC's
    pruning rounds and quantisation, DNS's end of surgery); ``bcrepro train`` refuses a run too short to reach them.
    ``scale_schedule(hp, scale)``: those iteration counts times ``scale``, for ``scale_budget``.
    ``before_added``: for a hyper-parameter added after runs were made, the value those runs trained under, which a
    ``run.json`` without the key stands for even where today's default differs (``absent_means``).
    """

    name: str
    description: str
    layer_factory: Callable[[str, dict], LayerFactory]
    hyperparameters: dict[str, dict] = field(default_factory=dict)
    forms: dict[str, Form] = field(default_factory=dict)
    starts_from_dense: bool | frozenset[str] = False
    group_sparse: bool = False
    attach: Callable[[nn.Module, dict], None] | None = None
    prepare: Callable[[nn.Module, dict], None] | None = None
    finalize: Callable[[nn.Module, dict], None] | None = None
    after_step: Callable[[nn.Module, dict], Callable[[int], None]] | None = None
    scheduled_steps: Callable[[dict], dict[str, int]] | None = None
    scale_schedule: Callable[[dict, float], dict] | None = None
    before_added: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "hyperparameters", {arch: {**SHARED_DEFAULTS, **defaults}
                                                     for arch, defaults in self.hyperparameters.items()})
        for arch, defaults in self.hyperparameters.items():
            formless = sorted(set(defaults) - set(self.forms))
            if formless:
                raise ValueError(f"method {self.name!r} on {arch!r}: hyper-parameter(s) {formless} have a default but "
                                 f"no form; declare each one's type in the method's forms")

    def absent_means(self, arch: str) -> dict:
        """What each hyper-parameter missing from an older ``run.json`` of ``arch`` stood for: the value the code had
        before the key existed (``SHARED_DEFAULTS`` for the settings every method shares, ``before_added`` for the
        method's own), else today's default."""
        return {**self.hyperparameters.get(arch, {}), **SHARED_DEFAULTS, **self.before_added}

    def starts_from(self, arch: str) -> bool:
        """Whether this method's cell on ``arch`` starts from the dense reference (``--init``)."""
        if isinstance(self.starts_from_dense, bool):
            return self.starts_from_dense
        return arch in self.starts_from_dense

    def params_for(self, arch: str, overrides: dict | None = None) -> dict:
        """The hyper-parameters for ``arch`` with ``overrides`` applied. An unknown key, or a value whose type, range
        or per-layer length does not fit its form, is a ``UsageError`` naming the key, the form and the value."""
        if arch not in self.hyperparameters:
            raise UsageError(f"method {self.name!r} has no settings for architecture {arch!r}; "
                             f"it supports {sorted(self.hyperparameters)}")
        params = copy.deepcopy(self.hyperparameters[arch])
        # a key the architecture's defaults leave out but the method declares (the SGD settings of a method trained
        # with Adam, say) takes the training loop's own default unless given
        known = set(params) | set(self.forms)
        unknown = sorted(set(overrides or {}) - known)
        if unknown:
            raise UsageError(f"unknown hyper-parameter(s) {unknown} for method {self.name!r} on {arch!r}; "
                             f"known: {sorted(known)}")
        params.update(copy.deepcopy(overrides or {}))
        wrong = problems(self.forms, params, prunable_layer_count(arch))
        if wrong:
            raise UsageError("; ".join(f"hyper-parameter {key!r} of {self.name} on {arch} must be {expected}, "
                                       f"got {given(value)}" for key, expected, value in wrong))
        return params

    def scale_budget(self, params: dict, scale: float) -> dict:
        """``params`` with the training budget times ``scale``: the epochs (at least one), the KL warm-up and its
        start, and the method's own iteration-counted schedule (``scale_schedule``), which keeps its place in the
        shorter or longer run. A scale of 1 changes nothing."""
        if not scale > 0:
            raise UsageError(f"the budget scale must be > 0, got {scale}")
        if scale == 1.0:
            return dict(params)
        scaled = dict(params, epochs=max(1, round(params["epochs"] * scale)))
        for key in ("kl_warmup_epochs", "kl_warmup_start_epochs"):
            if key in params:
                scaled[key] = params[key] * scale
        if self.scale_schedule is not None:
            scaled.update(self.scale_schedule(params, scale))
        return scaled


def register(method: Method) -> Method:
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} registered twice")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; expected one of {sorted(METHODS)}") from None
