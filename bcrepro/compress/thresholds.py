"""Pruning thresholds on the group statistic, the rules that choose them, and the error-compression frontier.

A group is kept iff its statistic (GNJ: log alpha; GHS: -E[log z^2]) is below its layer's threshold. The rules
(``THRESHOLD_RULES``, docs/thresholds.md): ``fixed`` (values from the config), ``valley`` (Otsu's split of the
statistic's histogram, with a separation guard), and two configurations of ``coordinate_descent`` over the layers
under one error budget on a validation split held out of the training set: ``sparsest`` (the BC LeNets' rule: passes
until nothing moves, the layers whose groups carry the most weights first) and ``auto`` (VGG-16's rule: one pass, the
layers with the most weights first; also the rule of a config that names none). Both accept a candidate by one of
``ACCEPTANCES``: ``error`` (its validation error within the bound; the default) or ``paired`` (an upper confidence
bound on its error increase over the unpruned net, counted image by image; for small validation splits).
``threshold_curve`` records the validation error around the chosen thresholds, ``error_compression_frontier`` the
error and compression of the ``sparsest`` rule at several budgets, and ``compression_at_error`` reads that frontier.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..layers import GroupScaleLayer
from . import accounting
from .layer_view import eval_mode, layer_weight
from .masks import (architecture, check_thresholds, deterministic_net, full_masks, group_keep, keeps_all,
                    kept_weight_mask, layer_counts, propagate_masks)

log = logging.getLogger(__name__)

Evaluate = Callable[[nn.Module], float]  # a network -> its error in percent on some split
Mistakes = Callable[[nn.Module], torch.Tensor]  # a network -> bool [n], True where it gets a validation image wrong
DEFAULT_MAX_ERROR_INCREASE = 0.1  # percentage points of validation error ``auto`` and ``sparsest`` may spend
DEFAULT_MAX_CANDIDATES = 32
# How ``auto`` and ``sparsest`` accept a candidate (docs/thresholds.md, "Accepting a candidate"): "error" compares its
# validation error with the bound (every recorded run); "paired" asks an upper confidence bound on its error increase
# over the unpruned net, image by image, to stay within the budget.
ACCEPTANCES = ("error", "paired")
DEFAULT_ACCEPTANCE = "error"
DEFAULT_PAIRED_Z = 1.645  # "paired": one-sided normal quantile of the bound, 95 % confidence
# below this many validation images, ``error`` acceptance is warned about (``small_split_warning``)
SMALL_SPLIT_IMAGES = 2000
VALLEY_MAX_DEPTH = 0.5  # ``valley``: density at the split at most half the lower of the two peaks


# ---- the group statistic ---------------------------------------------------------------------------------------------
def group_statistics(net) -> list[np.ndarray | None]:
    """Each prunable layer's group statistic as a float64 array (None for plain layers)."""
    return [layer.group_statistic().detach().cpu().double().numpy() if isinstance(layer, GroupScaleLayer) else None
            for layer in net.prunable_layers()]


def threshold_midpoints(statistic: np.ndarray) -> np.ndarray:
    """Midpoints between consecutive distinct sorted values: threshold ``m_i`` keeps exactly the i+1 smallest groups."""
    values = np.unique(statistic)
    return (values[:-1] + values[1:]) / 2.0


def thin_indices(n: int, at_most: int) -> np.ndarray:
    """At most ``at_most`` evenly spread (quantile) positions out of ``range(n)``, both ends included."""
    if n <= at_most:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, at_most)).astype(int))


def otsu_split(values: np.ndarray) -> tuple[float, np.ndarray, np.ndarray] | None:
    """Otsu (1979) on 1-D data: the split of the sorted values maximising the between-class variance
    w0 w1 (m0 - m1)^2; returns (midpoint threshold, lower class, upper class), or None when all values are equal."""
    values = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if values.size < 2 or values[0] == values[-1]:
        return None
    sizes = np.arange(1, values.size)
    sums = np.cumsum(values)[:-1]
    lower_mean = sums / sizes
    upper_mean = (values.sum() - sums) / (values.size - sizes)
    between = sizes * (values.size - sizes) * (lower_mean - upper_mean) ** 2
    between[values[1:] == values[:-1]] = -1.0  # never split between equal values
    cut = int(np.argmax(between)) + 1
    return (values[cut - 1] + values[cut]) / 2.0, values[:cut], values[cut:]


def valley_depth(values: np.ndarray, threshold: float, bandwidth: float, grid_size: int = 256) -> float:
    """Gaussian-kernel density at ``threshold`` over the lower of the highest densities on either side of it."""
    values = np.asarray(values, dtype=np.float64).ravel()

    def density(points):
        return np.exp(-0.5 * ((points[:, None] - values[None, :]) / bandwidth) ** 2).sum(axis=1)

    grid = np.linspace(values.min(), values.max(), grid_size)
    at_split = density(np.array([threshold]))[0]
    lower_peak = density(grid[grid <= threshold]).max(initial=at_split)
    upper_peak = density(grid[grid >= threshold]).max(initial=at_split)
    return at_split / min(lower_peak, upper_peak)


def valley_threshold(statistic: np.ndarray, max_depth: float = VALLEY_MAX_DEPTH) -> float:
    """Otsu's threshold if the two classes are separated by a valley, else inf (keep every group).

    Guard: a Gaussian kernel density with bandwidth = the pooled within-class standard deviation of Otsu's two classes
    must dip at the threshold to at most ``max_depth`` (0.5) times the lower of the two peaks on either side. A
    unimodal sample has no such dip (Otsu's split then sits on a slope or at the mode), so every group is kept
    (docs/decisions.md).
    """
    split = otsu_split(statistic)
    if split is None:
        return math.inf
    threshold, lower, upper = split
    pooled_sd = math.sqrt((lower.var() * lower.size + upper.var() * upper.size) / (lower.size + upper.size))
    if pooled_sd == 0.0:  # two point masses
        return float(threshold)
    depth = valley_depth(np.concatenate([lower, upper]), threshold, pooled_sd)
    return float(threshold) if depth <= max_depth else math.inf


def monitor_groups_kept(statistic: torch.Tensor) -> int:
    """Groups the ``valley`` rule would keep now: the training loop's progress line shows this while pruning happens."""
    values = statistic.detach().float().cpu().numpy()
    return int((values < valley_threshold(values)).sum())


# ---- the rules -------------------------------------------------------------------------------------------------------
def _json_threshold(threshold) -> float | None:
    return None if keeps_all(threshold) else float(threshold)


def _groups_kept(net, thresholds) -> tuple[list[int | None], list[int | None]]:
    kept, total = [], []
    for layer, t in zip(net.prunable_layers(), thresholds):
        if isinstance(layer, GroupScaleLayer):
            keep = group_keep(layer, t)
            kept.append(int(keep.sum()))
            total.append(int(keep.numel()))
        else:
            kept.append(None)
            total.append(None)
    return kept, total


def threshold_record(net, rule: str, thresholds, **extra) -> dict:
    """The JSON-able record of a threshold choice: rule, thresholds (null = keep all), groups kept/total per layer."""
    kept, total = _groups_kept(net, thresholds)
    return {"rule": rule, "thresholds": [_json_threshold(t) for t in thresholds], "groups_kept": kept,
            "groups_total": total, **extra}


def pruned_error(net, thresholds, evaluate: Evaluate) -> float:
    """Error of the pruned posterior-mean net for these thresholds."""
    return float(evaluate(deterministic_net(net, propagate_masks(net, thresholds))))


def paired_counts(baseline_wrong, candidate_wrong) -> tuple[int, int]:
    """(b, c) of two networks scored on the same images: b images the candidate gets wrong and the baseline right (new
    errors), c the reverse (fixed errors). The candidate's error exceeds the baseline's by exactly (b - c) / n."""
    baseline_wrong = torch.as_tensor(baseline_wrong, dtype=torch.bool)  # [n]
    candidate_wrong = torch.as_tensor(candidate_wrong, dtype=torch.bool)  # [n]
    if baseline_wrong.shape != candidate_wrong.shape:
        raise ValueError(f"paired counts need both networks scored on the same images: got {baseline_wrong.numel()} "
                         f"and {candidate_wrong.numel()} results")
    return int((candidate_wrong & ~baseline_wrong).sum()), int((baseline_wrong & ~candidate_wrong).sum())


def paired_increase_bound(new_errors: int, fixed_errors: int, z: float) -> float:
    """Upper confidence bound, in images, on the true error increase of a candidate over the baseline from its paired
    counts: b - c + z sqrt(b + c). Only the images on which the two disagree carry information (McNemar 1947); given
    b + c of them, b - c has variance at most b + c, so an increase of (b - c) / n is known to within sqrt(b + c) / n,
    much less than the noise of each error rate alone on the same images."""
    return new_errors - fixed_errors + z * math.sqrt(new_errors + fixed_errors)


class ErrorAcceptance:
    """``error``: a candidate passes when its validation error is within the bound. Scores are {"error_pct"};
    ``baseline_score`` is the unpruned net's, ``bound`` = max(its error, the reference) + the budget (points)."""

    def __init__(self, net, evaluate: Evaluate, reference_error_pct: float | None, max_error_increase: float):
        self.net, self.evaluate = net, evaluate
        self.baseline_score = self.score([None] * len(net.prunable_layers()))
        self.baseline = self.baseline_score["error_pct"]
        reference = -math.inf if reference_error_pct is None else float(reference_error_pct)
        self.budget = max(self.baseline, reference) - self.baseline + max_error_increase  # points over the unpruned
        self.bound = max(self.baseline, reference) + max_error_increase

    def score(self, thresholds) -> dict:
        return {"error_pct": pruned_error(self.net, thresholds, self.evaluate)}

    def passes(self, score: dict) -> bool:
        return score["error_pct"] <= self.bound

    def record(self) -> dict:
        return {}


class PairedAcceptance(ErrorAcceptance):
    """``paired``: a candidate passes when ``paired_increase_bound`` of its counts against the unpruned net is at most
    the budget in images, (max(unpruned error, reference) - unpruned error + max_error_increase) / 100 * n: what the
    ``error`` rule's bound allows over the unpruned net. Scores are {"error_pct", "new_errors",
    "fixed_errors"}; the unpruned net's mistakes are computed once, by ``evaluate.mistakes``, which scores every
    candidate in place of ``evaluate``."""

    def __init__(self, net, evaluate: Evaluate, reference_error_pct: float | None, max_error_increase: float,
                 z: float):
        mistakes = getattr(evaluate, "mistakes", None)
        if not callable(mistakes):
            raise ValueError(f"threshold acceptance 'paired' compares the pruned and unpruned nets image by image: "
                             f"evaluate must also offer mistakes(net) -> bool per validation image (as "
                             f"bcrepro.compress.evaluation.PrefixReusingErrorRate does), got "
                             f"{type(evaluate).__name__}; use acceptance 'error' with a plain error function")
        self.mistakes: Mistakes = mistakes
        self.z = z
        self.baseline_wrong = self._wrong(net, [None] * len(net.prunable_layers()))  # [n]
        super().__init__(net, evaluate, reference_error_pct, max_error_increase)
        self.images = int(self.baseline_wrong.numel())
        self.allowed = self.budget * self.images / 100.0  # extra errors the budget allows

    def _wrong(self, net, thresholds) -> torch.Tensor:
        return torch.as_tensor(self.mistakes(deterministic_net(net, propagate_masks(net, thresholds))),
                               dtype=torch.bool)

    def score(self, thresholds) -> dict:
        unpruned = all(t is None for t in thresholds)  # the baseline, scored once above
        wrong = self.baseline_wrong if unpruned else self._wrong(self.net, thresholds)
        new_errors, fixed_errors = paired_counts(self.baseline_wrong, wrong)
        return {"error_pct": 100.0 * int(wrong.sum()) / max(1, int(wrong.numel())), "new_errors": new_errors,
                "fixed_errors": fixed_errors}

    def passes(self, score: dict) -> bool:
        # the tolerance keeps a bound equal to the allowance, both sums of whole images, from failing by rounding
        return paired_increase_bound(score["new_errors"], score["fixed_errors"], self.z) <= self.allowed + 1e-9

    def record(self) -> dict:
        return {"acceptance": "paired", "z": self.z, "validation_images": self.images,
                "allowed_extra_errors": self.allowed}


def acceptance_settings(rule: str, config: dict) -> tuple[str, float | None]:
    """(acceptance, z) from a search rule's ``config``; z is None for ``error``."""
    acceptance = config.get("acceptance", DEFAULT_ACCEPTANCE)
    if acceptance not in ACCEPTANCES:
        raise ValueError(f"threshold rule {rule!r}: unknown acceptance {acceptance!r}; expected one of "
                         f"{list(ACCEPTANCES)} ('error': validation error within the bound, the default; 'paired': a "
                         f"confidence bound on the error increase, counted image by image)")
    if acceptance != "paired":
        if "z" in config:
            raise ValueError(f"threshold rule {rule!r}: 'z' is the confidence of acceptance 'paired', but acceptance "
                             f"is {acceptance!r}; add \"acceptance\": \"paired\" or leave 'z' out")
        return acceptance, None
    z = config.get("z", DEFAULT_PAIRED_Z)
    if isinstance(z, bool) or not isinstance(z, (int, float)) or not math.isfinite(z) or z < 0:
        raise ValueError(f"threshold rule {rule!r}: 'z' (the paired bound's normal quantile) must be a number >= 0, "
                         f"got {z!r}; 1.645 is one-sided 95 %, 0 accepts on the counted increase alone")
    return acceptance, float(z)


def select_fixed(net, config: dict, evaluate: Evaluate | None = None):
    """``fixed``: ``config["values"]``, one per prunable layer (null keeps every group)."""
    values = config.get("values")
    if values is None:
        raise ValueError("threshold rule 'fixed' needs 'values': one threshold per prunable layer, e.g. "
                         "{'rule': 'fixed', 'values': [-2.8, -3.0, -5.0]} for LeNet-300-100 (the authors' choice)")
    thresholds = [None if keeps_all(v) else float(v) for v in check_thresholds(net.prunable_layers(), values)]
    return thresholds, threshold_record(net, "fixed", thresholds)


def select_valley(net, config: dict, evaluate: Evaluate | None = None):
    """``valley``: per layer, Otsu's threshold on the statistic, or keep all where no valley separates the classes."""
    max_depth = float(config.get("max_depth", VALLEY_MAX_DEPTH))
    thresholds = [None if s is None else valley_threshold(s, max_depth) for s in group_statistics(net)]
    thresholds = [None if keeps_all(t) else t for t in thresholds]
    return thresholds, threshold_record(net, "valley", thresholds, max_depth=max_depth)


def _most_pruning_index(n_midpoints: int, passes, max_candidates: int) -> int:
    """Index into the midpoints (``n_midpoints`` = keep all) of the threshold pruning the most groups that ``passes``.

    Scans the thinned candidates from the most pruning one, then bisects between the last failing and the first
    passing candidate over the unthinned midpoints (assuming error grows with pruning between two candidates).
    Keeping all always passes.
    """
    failing, passing = -1, n_midpoints
    for index in thin_indices(n_midpoints, max_candidates):
        if passes(index):
            passing = index
            break
        failing = index
    while passing - failing > 1:
        middle = (passing + failing) // 2
        if passes(middle):
            passing = middle
        else:
            failing = middle
    return passing


def _layer_threshold(thresholds, i, statistic, acceptance, current, max_candidates):
    """Layer ``i``'s most pruning threshold that ``acceptance`` passes, the other layers at ``thresholds``: (threshold
    or None, its score, JSON-able list of what was tried). ``current`` is the score of ``thresholds``."""
    midpoints = threshold_midpoints(statistic)
    keep_all = len(midpoints)
    scores = {keep_all: current}  # keeping all: the choices so far, which passed

    def passes(index):
        if index not in scores:
            scores[index] = acceptance.score(thresholds[:i] + [float(midpoints[index])] + thresholds[i + 1:])
        return index == keep_all or acceptance.passes(scores[index])

    chosen = _most_pruning_index(keep_all, passes, max_candidates)
    threshold = None if chosen == keep_all else float(midpoints[chosen])
    tried = [{"threshold": None if k == keep_all else float(midpoints[k]),
              "groups_kept": int(len(statistic) if k == keep_all else (statistic < midpoints[k]).sum()),
              **{key: float(v) if key == "error_pct" else v for key, v in score.items()}}
             for k, score in sorted(scores.items())]
    return threshold, scores[chosen], tried


@dataclass(frozen=True)
class Descent:
    """What ``coordinate_descent`` chose and how: every rule that searches on validation error records these."""
    thresholds: list[float | None]  # per prunable layer, None = keep all
    baseline: float  # validation error of the unpruned posterior-mean net
    bound: float  # the validation error every accepted threshold stays within
    error: float  # validation error with ``thresholds``
    order: list[int]  # the group layers in the order searched
    trials: list[dict]  # per layer searched: {"pass", "layer", "tried": [{"threshold", "groups_kept", "error_pct"}]}
    acceptance: dict  # what the record adds for the acceptance: nothing for "error"; "paired" and its settings


def coordinate_descent(net, evaluate: Evaluate, rule: str, *, leverage: Sequence[float | None],
                       max_error_increase: float, max_candidates: int, passes: int,
                       reference_error_pct: float | None = None, acceptance: str = DEFAULT_ACCEPTANCE,
                       z: float | None = None) -> Descent:
    """Coordinate descent over the group layers' thresholds under one validation-error budget.

    Bound = max(unpruned validation error, ``reference_error_pct``) + ``max_error_increase`` (points); without a
    reference, the unpruned error alone. Layers are searched by ``leverage`` (one value per prunable layer), largest
    first, ties in layer order. Each layer in turn gets the most pruning threshold whose validation error stays within
    the bound given the other layers' current thresholds: candidates are the midpoints between consecutive sorted
    statistic values, thinned to ``max_candidates`` quantile positions, plus keep-all, and the chosen one is refined by
    bisection between its failing neighbour and it. A threshold moves only to one that keeps fewer groups, so a pass
    never keeps more groups than the one before; passes repeat (at most ``passes``) until one moves nothing, since
    pruning one layer can lower the error and make room in another. ``evaluate`` is called once for the baseline and
    once per tried threshold; ``rule`` names the progress lines.

    ``acceptance`` (``ACCEPTANCES``) says what "within the bound" means: ``error``, the candidate's validation error
    is at most the bound; ``paired``, ``paired_increase_bound`` at ``z`` (default 1.645) of its new and fixed errors
    against the unpruned net is at most the budget in images (``PairedAcceptance``; ``evaluate.mistakes`` is then
    called instead of ``evaluate``, as often).
    """
    layers = net.prunable_layers()
    statistics = group_statistics(net)
    thresholds: list[float | None] = [None] * len(layers)
    if acceptance == "paired":
        judge = PairedAcceptance(net, evaluate, reference_error_pct, max_error_increase,
                                 DEFAULT_PAIRED_Z if z is None else z)
    elif acceptance == "error":
        judge = ErrorAcceptance(net, evaluate, reference_error_pct, max_error_increase)
    else:
        raise ValueError(f"unknown acceptance {acceptance!r}; expected one of {list(ACCEPTANCES)}")
    baseline, bound, current = judge.baseline, judge.bound, judge.baseline_score
    order = sorted((i for i, s in enumerate(statistics) if s is not None), key=lambda i: -leverage[i])
    trials, moved = [], True
    for pass_number in range(1, passes + 1):
        if not moved:
            break
        moved = False
        for step, i in enumerate(order, 1):
            started = time.perf_counter()
            candidate, candidate_score, tried = _layer_threshold(thresholds, i, statistics[i], judge, current,
                                                                 max_candidates)
            if int(group_keep(layers[i], candidate).sum()) < int(group_keep(layers[i], thresholds[i]).sum()):
                thresholds[i], current, moved = candidate, candidate_score, True
            trials.append({"pass": pass_number, "layer": i, "tried": tried})
            paired = (f"; {current['new_errors']} new and {current['fixed_errors']} fixed errors, bound on the "
                      f"increase {paired_increase_bound(current['new_errors'], current['fixed_errors'], judge.z):.1f} "
                      f"of {judge.allowed:.1f} images" if acceptance == "paired" else "")
            log.info("%s threshold %d/%d%s: layer %d keeps %d of %d groups, validation error %.2f %% "
                     "(bound %.2f %%%s); %d networks evaluated in %.1f s", rule, step, len(order),
                     f", pass {pass_number}" if passes > 1 else "", i, int(group_keep(layers[i], thresholds[i]).sum()),
                     len(statistics[i]), current["error_pct"], bound, paired, len(tried) - 1,
                     time.perf_counter() - started)
    return Descent(thresholds, baseline, bound, current["error_pct"], order, trials, judge.record())


def _search_settings(rule: str, config: dict, evaluate: Evaluate | None) -> tuple[float, int, dict]:
    """(max_error_increase, max_candidates, acceptance keywords of ``coordinate_descent``) from ``config`` for a rule
    that searches on validation error."""
    acceptance, z = acceptance_settings(rule, config)
    if evaluate is None:
        raise ValueError(f"threshold rule {rule!r} needs an evaluate callable (validation error in percent of a split "
                         "held out of the training set); use rule 'fixed' or 'valley' without one")
    return (float(config.get("max_error_increase", DEFAULT_MAX_ERROR_INCREASE)),
            int(config.get("max_candidates", DEFAULT_MAX_CANDIDATES)), {"acceptance": acceptance, "z": z})


def select_auto(net, config: dict, evaluate: Evaluate | None):
    """``auto`` (VGG-16's rule): ``coordinate_descent`` in one pass, the layers with the most weights first, within
    ``max_error_increase`` (points, default 0.1) of the unpruned net's validation error; ``max_candidates`` (32);
    ``acceptance`` (``error`` or ``paired``, with ``z``) as in ``coordinate_descent``."""
    max_increase, max_candidates, acceptance = _search_settings("auto", config, evaluate)
    layers = net.prunable_layers()
    leverage = [layer_weight(layer).numel() if isinstance(layer, GroupScaleLayer) else None for layer in layers]
    found = coordinate_descent(net, evaluate, "auto", leverage=leverage, max_error_increase=max_increase,
                               max_candidates=max_candidates, passes=1, **acceptance)
    trials = [{"layer": t["layer"], "tried": t["tried"]} for t in found.trials]  # one pass: no pass numbers
    record = threshold_record(net, "auto", found.thresholds, max_error_increase=max_increase,
                              max_candidates=max_candidates, **found.acceptance,
                              validation_error_baseline=found.baseline,
                              validation_error=found.error, trials=trials)
    return found.thresholds, record


def weights_per_group(net) -> list[float | None]:
    """Per group layer, the weights (its own and those of neighbours left unconnected) that pruning one group removes,
    averaged over its groups: measured by pruning each group alone from the unpruned net, so conv channels expanding
    into a linear layer's inputs and input units whose source row dies are counted as the masks count them."""
    layers = net.prunable_layers()
    full = sum(int(kept_weight_mask(layer, mask).sum()) for layer, mask in zip(layers, full_masks(net)))
    removed: list[float | None] = []
    for i, statistic in enumerate(group_statistics(net)):
        if statistic is None:
            removed.append(None)
            continue
        values = np.unique(statistic)
        if len(values) < 2:  # every group equal: no threshold separates one of them
            removed.append(0.0)
            continue
        thresholds: list[float | None] = [None] * len(layers)
        thresholds[i] = float((values[-2] + values[-1]) / 2)  # drop the groups with the largest statistic
        masks = propagate_masks(net, thresholds)
        kept = sum(int(kept_weight_mask(layer, mask).sum()) for layer, mask in zip(layers, masks))
        removed.append((full - kept) / int((statistic >= thresholds[i]).sum()))
    return removed


def select_sparsest(net, config: dict, evaluate: Evaluate | None):
    """``sparsest`` (the BC LeNets' rule): ``coordinate_descent`` in up to ``passes`` passes (default 3), the layers
    whose groups carry the most weights first; it looks for the sparsest net the posterior allows, not for a cut.

    Bound = max(unpruned validation error, ``reference_error_pct``) + ``max_error_increase`` (points, default 0.1):
    the paper states its budget against the dense reference (0.9 % -> 1.0 %), so with the dense net's validation
    error as ``reference_error_pct`` the budget is the same; a posterior already worse than the reference still gets
    ``max_error_increase`` over its own error. Order: layers by the weights one pruned group removes
    (``weights_per_group``; in LeNet-5 a conv2 channel takes its filter and its 16 fc1 inputs of every fc1 row, an fc2
    input takes a whole fc1 row), so the budget goes first where it buys the most. ``acceptance`` (``error`` or
    ``paired``, with ``z``) as in ``coordinate_descent``.
    """
    max_increase, max_candidates, acceptance = _search_settings("sparsest", config, evaluate)
    passes = int(config.get("passes", 3))
    reference = config.get("reference_error_pct")
    if passes < 1:
        raise ValueError(f"threshold rule 'sparsest': passes must be at least 1, got {passes}")
    leverage = weights_per_group(net)
    found = coordinate_descent(net, evaluate, "sparsest", leverage=leverage, max_error_increase=max_increase,
                               max_candidates=max_candidates, passes=passes, reference_error_pct=reference,
                               **acceptance)
    record = threshold_record(net, "sparsest", found.thresholds, max_error_increase=max_increase,
                              max_candidates=max_candidates, **found.acceptance, passes=passes,
                              reference_error_pct=reference,
                              validation_error_baseline=found.baseline, validation_error_bound=found.bound,
                              validation_error=found.error, order=found.order,
                              weights_per_group=[None if w is None else float(w) for w in leverage],
                              trials=found.trials)
    return found.thresholds, record


THRESHOLD_RULES = {"fixed": select_fixed, "valley": select_valley, "auto": select_auto, "sparsest": select_sparsest}


def select_thresholds(net, config: dict | None = None, evaluate: Evaluate | None = None):
    """Thresholds (aligned with ``net.prunable_layers()``, None = keep all) and their JSON-able record.

    ``config``: ``{"rule": "sparsest" | "auto" | "valley" | "fixed", ...}``; without a rule, ``auto`` (the methods
    name theirs: ``sparsest`` for the BC LeNets, ``auto`` for VGG-16). ``evaluate``: validation error.
    """
    config = dict(config or {})
    rule = config.get("rule", "auto")
    try:
        select = THRESHOLD_RULES[rule]
    except KeyError:
        raise ValueError(f"unknown threshold rule {rule!r}; expected one of {sorted(THRESHOLD_RULES)}") from None
    return select(net, config, evaluate)


def small_split_warning(config: dict | None, validation_images: int) -> str | None:
    """What to tell a user whose searched thresholds (``auto``, ``sparsest``, accepted by ``error``) are chosen on a
    split too small for its budget, or None: below ``SMALL_SPLIT_IMAGES`` one image is a sizeable part of the budget
    and the error's own noise several times it, so the search keeps candidates that were lucky on the split."""
    config = dict(config or {})
    if (config.get("rule", "auto") not in ("auto", "sparsest") or config.get("acceptance", DEFAULT_ACCEPTANCE) != "error"
            or not 0 < validation_images < SMALL_SPLIT_IMAGES):
        return None
    budget = config.get("max_error_increase", DEFAULT_MAX_ERROR_INCREASE)
    return (f"the thresholds are chosen on {validation_images} validation images: one image is "
            f"{100 / validation_images:.2g} points against a budget of {budget:g}, so a search over many candidates "
            f"keeps some that were lucky on the split and the test error can rise well past the budget; "
            f"\"acceptance\": \"paired\" in the thresholds bounds the increase image by image (docs/thresholds.md)")


def threshold_curve(net, thresholds, evaluate: Evaluate, n_points: int = 15) -> list[dict]:
    """Per group layer: validation error and groups kept at a grid of thresholds, the other layers at their chosen
    values. The grid is ``n_points - 1`` quantile-spread midpoints of the statistic, +inf (null) and the chosen value.
    """
    thresholds = check_thresholds(net.prunable_layers(), thresholds)
    curves = []
    for i, statistic in enumerate(group_statistics(net)):
        if statistic is None:
            continue
        midpoints = threshold_midpoints(statistic)
        grid = {float(midpoints[k]) for k in thin_indices(len(midpoints), max(1, n_points - 1))}
        if not keeps_all(thresholds[i]):
            grid.add(float(thresholds[i]))
        points = sorted(grid) + [math.inf]
        started = time.perf_counter()
        errors = [pruned_error(net, thresholds[:i] + [t] + thresholds[i + 1:], evaluate) for t in points]
        log.info("threshold curve: layer %d, validation error at %d thresholds in %.1f s", i, len(points),
                 time.perf_counter() - started)
        curves.append({"layer": i, "chosen": _json_threshold(thresholds[i]),
                       "thresholds": [_json_threshold(t) for t in points],
                       "groups_kept": [int((statistic < t).sum()) for t in points], "error_pct": errors})
    return curves


# ---- the error-compression frontier ----------------------------------------------------------------------------------

DEFAULT_FRONTIER_BUDGETS = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0)  # points of validation error over the unpruned net


@torch.no_grad()
def error_compression_frontier(net, evaluate_validation: Evaluate, evaluate_test: Evaluate,
                               budgets: Sequence[float] = DEFAULT_FRONTIER_BUDGETS,
                               config: dict | None = None) -> list[dict]:
    """The ``sparsest`` rule at each validation budget in ``budgets``: per point the validation and test error of the
    pruned net and its compression after pruning, so one run shows the whole trade-off, not one threshold choice.
    The test error is measured for the reader only; every choice is made on the validation split."""
    layers = net.prunable_layers()
    points = []
    with eval_mode(net):
        for budget in budgets:
            thresholds, record = select_sparsest(net, {**(config or {}), "max_error_increase": float(budget)},
                                                 evaluate_validation)
            masks = propagate_masks(net, thresholds)
            counts = [layer_counts(layer, m) for layer, m in zip(layers, masks)]
            points.append({"max_error_increase": float(budget), "validation_error_pct": record["validation_error"],
                           "test_error_pct": float(evaluate_test(deterministic_net(net, masks))),
                           "compression_pruning": accounting.finite_or_none(accounting.compression_pruning(counts)),
                           "kept_weights": [c.nonzero for c in counts], "architecture": architecture(net, masks)})
            log.info("frontier: budget +%.2f points keeps %s (%s), validation %.2f %%, test %.2f %%", budget,
                     "-".join(map(str, points[-1]["architecture"])),
                     "inf" if points[-1]["compression_pruning"] is None else
                     f"{points[-1]['compression_pruning']:.1f}x", points[-1]["validation_error_pct"],
                     points[-1]["test_error_pct"])
    return points


def compression_at_error(frontier: Sequence[dict], error_pct: float, key: str = "test_error_pct") -> float | None:
    """The highest compression after pruning among frontier points whose ``key`` error is at most ``error_pct``
    (None when no point is that accurate)."""
    rates = [p["compression_pruning"] for p in frontier
             if p[key] is not None and p[key] <= error_pct + 1e-9 and p["compression_pruning"] is not None]
    return max(rates) if rates else None
