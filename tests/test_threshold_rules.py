"""The ``sparsest`` and ``auto`` threshold rules (one coordinate descent, two configurations) and the weights one pruned
group removes (bcrepro.compress), on hand-made networks whose right answer is known: signal groups cost validation
error, noise groups cost nothing."""
import json
import logging

import pytest
import torch

from bcrepro import models
from bcrepro.compress.masks import kept_weight_mask, propagate_masks
from bcrepro.compress.thresholds import select_thresholds, weights_per_group
from bcrepro.layers import Conv2dGroupNJ, LinearGroupNJ

GNJ = models.LayerFactory(linear=lambda i, o, index: LinearGroupNJ(i, o),
                          conv=lambda i, o, k, padding, index: Conv2dGroupNJ(i, o, k, padding=padding))


def signal_noise(arch, n_signal, seed=0):
    """A GNJ net whose groups are signal (log alpha ~ -8) or noise (~ +3), ``n_signal[i]`` signal groups in layer i."""
    torch.manual_seed(seed)
    net = models.build(arch, GNJ)
    g = torch.Generator().manual_seed(seed)
    signals = []
    with torch.no_grad():
        for layer, n in zip(net.prunable_layers(), n_signal):
            signal = torch.zeros(layer.n_groups, dtype=torch.bool)
            signal[torch.randperm(layer.n_groups, generator=g)[:n]] = True
            layer.z_mu.fill_(1.0)
            layer.z_logvar.copy_(torch.where(signal, -8 + 0.5 * torch.randn(layer.n_groups, generator=g),
                                             3 + torch.randn(layer.n_groups, generator=g)))
            signals.append(signal)
    return net.eval(), signals


def dead_groups(layer):
    """Groups (conv: output filters; linear: inputs) whose weights the pruned deterministic net zeroed."""
    weight = layer.weight.detach()
    if weight.dim() > 2:
        return ~weight.flatten(1).any(dim=1)
    return ~weight.any(dim=0)


class Validation:
    """``base`` + ``cost[i]`` points per dead signal group of layer i (2 by default), - 2 points once the one
    ``helpful`` noise group is dead."""

    def __init__(self, signals, base=1.0, helpful=None, cost=(2.0, 2.0, 2.0)):
        self.signals, self.base, self.helpful, self.cost = signals, base, helpful, cost

    def __call__(self, det_net):
        layers = det_net.prunable_layers()
        error = self.base + sum(c * int((dead_groups(l) & s).sum())
                                for l, s, c in zip(layers, self.signals, self.cost))
        if self.helpful is not None and dead_groups(layers[self.helpful[0]])[self.helpful[1]]:
            error -= 2.0
        return error


def kept_weights(net, thresholds):
    masks = propagate_masks(net, thresholds)
    return sum(int(kept_weight_mask(layer, mask).sum()) for layer, mask in zip(net.prunable_layers(), masks))


def test_weights_per_group_counts_the_neighbours_a_group_disconnects():
    # LeNet-300-100: an fc1 input takes its 300 weights; an fc2 input (an fc1 unit) takes its 100 and fc1's row of
    # 784; an fc3 input takes its 10 and fc2's row of 300.
    net, _ = signal_noise("lenet300", (100, 60, 20))
    assert weights_per_group(net) == [300.0, 100.0 + 784.0, 10.0 + 300.0]
    # LeNet-5: a conv1 filter takes 25 weights and conv2's 50 x 25 reading it; a conv2 filter takes 20 x 25 and its
    # 16 fc1 inputs of every one of the 500 rows; an fc1 input takes 500; an fc2 input takes 10 and fc1's row of 800.
    net, _ = signal_noise("lenet5", (10, 20, 100, 50))
    assert weights_per_group(net) == [25.0 + 50 * 25, 20 * 25 + 16 * 500, 500.0, 10.0 + 800.0]


def test_sparsest_prunes_all_noise_and_no_signal_within_a_tight_budget():
    net, signals = signal_noise("lenet300", (100, 60, 20))
    thresholds, record = select_thresholds(net, {"rule": "sparsest"}, Validation(signals))
    for mask, signal in zip(propagate_masks(net, thresholds), signals):
        assert torch.equal(mask.in_mask, signal)
    assert record["rule"] == "sparsest" and record["groups_kept"] == [100, 60, 20]
    assert record["order"] == [1, 2, 0]  # 884, 310 and 300 weights per group
    assert record["validation_error_bound"] == 1.1
    json.dumps(record, allow_nan=False)


def test_sparsest_spends_the_budget_where_a_group_carries_most_weights():
    net, signals = signal_noise("lenet300", (100, 60, 20), seed=1)
    config = {"max_error_increase": 2.5}  # one signal group may go
    auto, auto_record = select_thresholds(net, {"rule": "auto", **config}, Validation(signals))
    sparsest, record = select_thresholds(net, {"rule": "sparsest", **config}, Validation(signals))
    assert auto_record["groups_kept"] == [99, 60, 20]  # the old rule: fc1 first, 300 weights for the 2 points
    assert record["groups_kept"] == [100, 59, 20]  # an fc1 unit: 884 weights for the same 2 points
    assert record["validation_error"] == 3.0
    # in the pruned net (100, 60, 20 groups kept) an fc1 input holds 60 weights; an fc1 unit holds its row of 100
    # kept inputs and its fc2 column of 20 kept units
    assert kept_weights(net, auto) - kept_weights(net, sparsest) == (100 + 20) - 60


def test_the_budget_is_stated_against_the_reference_error():
    net, signals = signal_noise("lenet300", (100, 60, 20), seed=2)
    _, alone = select_thresholds(net, {"rule": "sparsest", "max_error_increase": 0.5}, Validation(signals))
    assert alone["validation_error_bound"] == 1.5 and alone["groups_kept"] == [100, 60, 20]
    # a dense reference at 3.0 % and +0.5: bound 3.5 %, so one signal group (to 3.0 %) may go
    _, record = select_thresholds(net, {"rule": "sparsest", "max_error_increase": 0.5, "reference_error_pct": 3.0},
                                    Validation(signals))
    assert record["validation_error_bound"] == 3.5 and record["groups_kept"] == [100, 59, 20]
    # a reference better than the unpruned posterior leaves it its own +0.5
    _, better = select_thresholds(net, {"rule": "sparsest", "max_error_increase": 0.5, "reference_error_pct": 0.2},
                                    Validation(signals))
    assert better["validation_error_bound"] == 1.5


def test_a_second_pass_uses_room_that_a_later_layer_made():
    net, signals = signal_noise("lenet300", (100, 60, 20), seed=3)
    helpful = (0, int(torch.nonzero(~signals[0])[0]))  # a noise fc1 input whose removal lowers the error by 2
    evaluate = Validation(signals, base=3.0, helpful=helpful, cost=(4.0, 2.0, 2.0))
    config = {"rule": "sparsest", "max_error_increase": 0.5}
    _, one_pass = select_thresholds(net, {**config, "passes": 1}, evaluate)
    # pass 1: fc2 and fc3 find no room (3.0 -> 5.0 > 3.5); fc1, searched last, loses its noise and the error falls
    # to 1.0, but none of its signal groups fits (1.0 -> 5.0)
    assert one_pass["groups_kept"] == [100, 60, 20] and one_pass["validation_error"] == 1.0
    _, passes = select_thresholds(net, config, evaluate)
    # pass 2: fc2 now has room for one signal group (1.0 -> 3.0 <= 3.5); pass 3 moves nothing and ends the search
    assert passes["groups_kept"] == [100, 59, 20] and passes["validation_error"] == 3.0
    assert max(t["pass"] for t in passes["trials"]) == 3


def tiny_net():
    """5 inputs -> 4 units -> 2 outputs, GNJ, with chosen statistics: inputs [0, -4, 2, -3, 1] (signal: -4, -3), units
    [3, -5, 1, -2] (signal: -5). Weights per group: an input 4, a unit 2 + its row of 5; weights per layer 20 and 8."""
    torch.manual_seed(0)
    net = models.Net("tiny", torch.nn.Sequential(),
                     torch.nn.Sequential(LinearGroupNJ(5, 4), torch.nn.ReLU(), LinearGroupNJ(4, 2)), (1, 1, 5), 2)
    with torch.no_grad():
        for layer, statistic in zip(net.prunable_layers(), ([0.0, -4.0, 2.0, -3.0, 1.0], [3.0, -5.0, 1.0, -2.0])):
            layer.z_mu.fill_(1.0)
            layer.z_logvar.copy_(torch.tensor(statistic))  # log alpha = z_logvar - log(1 + 1e-8)
    signals = [torch.tensor([False, True, False, True, False]), torch.tensor([False, True, False, False])]
    return net.eval(), signals


def tried(*points):
    return [{"threshold": t if t is None else pytest.approx(t), "groups_kept": k, "error_pct": e} for t, k, e in points]


# Layer 0 with 4 midpoints [-3.5, -1.5, 0.5, 1.5] and max_candidates 2: candidates -3.5 (keeps -4 only, loses the
# signal -3: 3 %) and 1.5 (1 %), then bisection tries -1.5 (keeps -4 and -3: 1 %) and takes it. Layer 1 with midpoints
# [-3.5, -0.5, 2.0]: the first candidate, -3.5, keeps the one signal unit at no cost.
INPUTS_TRIED = tried((-3.5, 1, 3.0), (-1.5, 2, 1.0), (1.5, 4, 1.0), (None, 5, 1.0))
UNITS_TRIED = tried((-3.5, 1, 1.0), (None, 4, 1.0))


def test_auto_searches_once_the_layer_with_most_weights_first():
    net, signals = tiny_net()
    thresholds, record = select_thresholds(net, {"rule": "auto", "max_candidates": 2}, Validation(signals))
    assert thresholds == [pytest.approx(-1.5), pytest.approx(-3.5)]
    assert record == {"rule": "auto", "thresholds": thresholds, "groups_kept": [2, 1], "groups_total": [5, 4],
                      "max_error_increase": 0.1, "max_candidates": 2, "validation_error_baseline": 1.0,
                      "validation_error": 1.0,
                      "trials": [{"layer": 0, "tried": INPUTS_TRIED}, {"layer": 1, "tried": UNITS_TRIED}]}
    assert list(record) == ["rule", "thresholds", "groups_kept", "groups_total", "max_error_increase",
                            "max_candidates", "validation_error_baseline", "validation_error", "trials"]


def test_sparsest_repeats_passes_until_no_threshold_moves(caplog):
    net, signals = tiny_net()
    with caplog.at_level(logging.INFO, logger="bcrepro.compress.thresholds"):
        thresholds, record = select_thresholds(net, {"rule": "sparsest", "max_candidates": 2}, Validation(signals))
    assert thresholds == [pytest.approx(-1.5), pytest.approx(-3.5)]
    # pass 1 moves both layers (units first: 7 weights per group against 4); pass 2 finds the same thresholds, moves
    # nothing and ends the search before pass 3
    assert record == {"rule": "sparsest", "thresholds": thresholds, "groups_kept": [2, 1], "groups_total": [5, 4],
                      "max_error_increase": 0.1, "max_candidates": 2, "passes": 3, "reference_error_pct": None,
                      "validation_error_baseline": 1.0, "validation_error_bound": 1.1, "validation_error": 1.0,
                      "order": [1, 0], "weights_per_group": [4.0, 7.0],
                      "trials": [{"pass": 1, "layer": 1, "tried": UNITS_TRIED},
                                 {"pass": 1, "layer": 0, "tried": INPUTS_TRIED},
                                 {"pass": 2, "layer": 1, "tried": UNITS_TRIED},
                                 {"pass": 2, "layer": 0, "tried": INPUTS_TRIED}]}
    assert list(record) == ["rule", "thresholds", "groups_kept", "groups_total", "max_error_increase",
                            "max_candidates", "passes", "reference_error_pct", "validation_error_baseline",
                            "validation_error_bound", "validation_error", "order", "weights_per_group", "trials"]
    assert [line.getMessage().split(" (bound")[0] for line in caplog.records] == [
        "sparsest threshold 1/2, pass 1: layer 1 keeps 1 of 4 groups, validation error 1.00 %",
        "sparsest threshold 2/2, pass 1: layer 0 keeps 2 of 5 groups, validation error 1.00 %",
        "sparsest threshold 1/2, pass 2: layer 1 keeps 1 of 4 groups, validation error 1.00 %",
        "sparsest threshold 2/2, pass 2: layer 0 keeps 2 of 5 groups, validation error 1.00 %"]


def test_sparsest_never_trades_a_threshold_for_one_keeping_more_groups():
    net, signals = tiny_net()
    signals[1][3] = True  # unit 3 (statistic -2) is signal too

    class Crossing(Validation):
        """Input 0 (statistic 0) dead while unit 2 (statistic 1) lives costs 4 points."""

        def __call__(self, det_net):
            layers = det_net.prunable_layers()
            crossing = bool(dead_groups(layers[0])[0]) and not bool(dead_groups(layers[1])[2])
            return super().__call__(det_net) + (4.0 if crossing else 0.0)

    thresholds, record = select_thresholds(net, {"rule": "sparsest", "max_candidates": 2}, Crossing(signals))
    # pass 1: units -0.5 (keeps -5 and -2; -3.5 loses a signal unit), then inputs -1.5 (input 0 dies, unit 2 is dead)
    # pass 2: both unit candidates fail (-3.5 loses a signal unit; 2.0 revives unit 2 with input 0 dead), so the search
    # falls back to keeping every unit; the units keep -0.5, which still passes, and nothing moves
    assert record["trials"][2] == {"pass": 2, "layer": 1,
                                   "tried": tried((-3.5, 1, 3.0), (2.0, 3, 5.0), (None, 4, 1.0))}
    assert thresholds == [pytest.approx(-1.5), pytest.approx(-0.5)]
    assert record["groups_kept"] == [2, 2] and record["validation_error"] == 1.0
    assert [t["pass"] for t in record["trials"]] == [1, 1, 2, 2]


# ---- the paired acceptance -------------------------------------------------------------------------------------------
class Images:
    """A validation split of ``n`` images scored per image: the unpruned net gets the first ``base`` wrong, and each
    dead group ``(layer, index)`` in ``effects`` makes its first list of images wrong and its second right."""

    def __init__(self, n, base, effects):
        self.n, self.base, self.effects = n, base, effects

    def mistakes(self, det_net):
        layers = det_net.prunable_layers()
        wrong = torch.zeros(self.n, dtype=torch.bool)
        wrong[:self.base] = True
        for (layer, group), (made_wrong, made_right) in self.effects.items():
            if dead_groups(layers[layer])[group]:
                wrong[list(made_wrong)] = True
                wrong[list(made_right)] = False
        return wrong

    def __call__(self, det_net):
        return 100.0 * int(self.mistakes(det_net).sum()) / self.n


def test_paired_counts_are_the_images_each_net_alone_gets_wrong():
    from bcrepro.compress.thresholds import paired_counts, paired_increase_bound

    unpruned = torch.tensor([1, 0, 0, 1, 0, 1, 0, 0, 1, 0], dtype=torch.bool)
    pruned = torch.tensor([1, 1, 0, 0, 0, 1, 1, 0, 0, 1], dtype=torch.bool)
    # pruned wrong, unpruned right: images 1, 6, 9; unpruned wrong, pruned right: images 3, 8
    assert paired_counts(unpruned, pruned) == (3, 2)
    assert paired_counts(pruned, unpruned) == (2, 3)
    assert int(pruned.sum()) - int(unpruned.sum()) == 3 - 2  # the error difference is b - c, exactly
    assert paired_increase_bound(3, 2, 1.645) == pytest.approx(1 + 1.645 * 5 ** 0.5)
    assert paired_increase_bound(0, 0, 1.645) == 0.0
    with pytest.raises(ValueError, match="same images: got 10 and 9"):
        paired_counts(unpruned, pruned[:9])


# tiny_net's units [3, -5, 1, -2] have threshold midpoints [-3.5, -0.5, 2.0]: 2.0 removes unit 0, -0.5 units 0 and 2,
# -3.5 units 0, 2 and 3. On 1,000 images with a budget of 2 points (20 images): unit 0 trades 40 errors for 40 others,
# unit 2 adds 15 errors and fixes none, the signal units and inputs add 100 each; the noise inputs change nothing.
TRADE_OR_ADD = {(1, 0): (range(100, 140), range(40)), (1, 2): (range(200, 215), ()),
                (1, 1): (range(300, 400), ()), (1, 3): (range(400, 500), ()),
                (0, 1): (range(500, 600), ()), (0, 3): (range(600, 700), ())}


def test_paired_acceptance_tells_traded_errors_from_added_ones():
    net, _ = tiny_net()
    evaluate = Images(1000, 50, TRADE_OR_ADD)
    config = {"rule": "sparsest", "max_error_increase": 2.0}
    _, error = select_thresholds(net, config, evaluate)
    _, paired = select_thresholds(net, {**config, "acceptance": "paired"}, evaluate)
    # the error rule sees 5.0 % -> 6.5 % (within 7.0 %) and removes both units; the paired bound of the 15 added
    # errors is 15 + 1.645 sqrt(15) = 21.4 > 20 images, that of the 40 traded ones 1.645 sqrt(80) = 14.7
    assert error["groups_kept"] == [2, 2] and error["validation_error"] == 6.5
    assert paired["groups_kept"] == [2, 3] and paired["validation_error"] == 5.0
    assert paired["acceptance"] == "paired" and paired["z"] == 1.645 and paired["allowed_extra_errors"] == 20.0
    units = paired["trials"][0]["tried"]  # pass 1, the units (7 weights per group) first
    assert [(t["groups_kept"], t["new_errors"], t["fixed_errors"]) for t in units] == [
        (1, 155, 40), (2, 55, 40), (3, 40, 40), (4, 0, 0)]
    assert "acceptance" not in error and all(set(t) == {"threshold", "groups_kept", "error_pct"}
                                             for trial in error["trials"] for t in trial["tried"])
    # with z = 0 the paired rule accepts on the counted increase alone: 15 of 20 images, as the error rule does
    _, counted = select_thresholds(net, {**config, "acceptance": "paired", "z": 0}, evaluate)
    assert counted["groups_kept"] == [2, 2]
    _, auto = select_thresholds(net, {**config, "rule": "auto", "acceptance": "paired"}, evaluate)
    assert auto["groups_kept"] == [2, 3] and auto["acceptance"] == "paired"


def test_paired_acceptance_refuses_candidates_that_were_lucky_on_a_small_split():
    # 4,000 candidates on a 1,000-image split whose unpruned net gets 50 wrong, each truly 0.2 points worse than it
    # (twice the budget of 0.1 points, 1 image) and disagreeing with it on 3 % of the images: 16 new errors expected
    # (b ~ Bin(950, 16/950)) and 14 fixed ones (c ~ Bin(50, 0.28)). Normal approximation: b - c has mean 2 and sd
    # sqrt(15.7 + 10.1) = 5.1 images, so the error rule (b - c <= 1) accepts Phi((1.5 - 2) / 5.1) = 46 % of them; the
    # paired rule (b - c + 1.645 sqrt(b + c) <= 1, with b + c near 30) needs b - c <= -8: Phi((-7.5 - 2) / 5.1) = 3 %,
    # below its one-sided level of 5 % for any candidate at or above the budget.
    from bcrepro.compress.thresholds import paired_counts, paired_increase_bound

    n, allowed, candidates = 1000, 1.0, 4000
    rng = torch.Generator().manual_seed(0)
    unpruned = torch.arange(n) < 50
    error_accepts = paired_accepts = 0
    for _ in range(candidates):
        u = torch.rand(n, generator=rng)
        newly_wrong = ~unpruned & (u < 0.016 / 0.95)
        fixed = unpruned & (u < 0.014 / 0.05)
        pruned = (unpruned | newly_wrong) & ~fixed
        b, c = paired_counts(unpruned, pruned)
        error_accepts += int(pruned.sum()) - int(unpruned.sum()) <= allowed
        paired_accepts += paired_increase_bound(b, c, 1.645) <= allowed
    assert 0.40 < error_accepts / candidates < 0.52
    assert paired_accepts / candidates < 0.05


def test_acceptance_settings_are_checked_with_what_to_write_instead():
    net, signals = tiny_net()
    with pytest.raises(ValueError, match=r"unknown acceptance 'mcnemar'; expected one of \['error', 'paired'\]"):
        select_thresholds(net, {"rule": "sparsest", "acceptance": "mcnemar"}, Validation(signals))
    with pytest.raises(ValueError, match="'z' is the confidence of acceptance 'paired', but acceptance is 'error'"):
        select_thresholds(net, {"rule": "auto", "z": 2.0}, Validation(signals))
    with pytest.raises(ValueError, match="'z' .* must be a number >= 0, got -1"):
        select_thresholds(net, {"rule": "sparsest", "acceptance": "paired", "z": -1}, Validation(signals))
    with pytest.raises(ValueError, match="evaluate must also offer mistakes.*got Validation"):
        select_thresholds(net, {"rule": "sparsest", "acceptance": "paired"}, Validation(signals))


def test_the_bc_methods_take_the_acceptance_in_their_thresholds_setting():
    from bcrepro.errors import UsageError
    from bcrepro.methods import get_method

    method = get_method("bc-gnj")
    params = method.params_for("lenet300", {"thresholds": {"rule": "sparsest", "acceptance": "paired", "z": 1.0}})
    assert params["thresholds"]["acceptance"] == "paired"
    assert "acceptance" not in method.params_for("lenet300")["thresholds"]  # the record's rule stays the default
    expected = r"'thresholds.acceptance' of bc-gnj on lenet300 must be one of 'error', 'paired', got 'pairs'"
    with pytest.raises(UsageError, match=expected):
        method.params_for("lenet300", {"thresholds": {"rule": "sparsest", "acceptance": "pairs"}})


def test_a_search_on_a_small_split_under_error_acceptance_is_warned_about_and_paired_is_not():
    from bcrepro.compress.thresholds import small_split_warning
    sparsest = {"rule": "sparsest", "max_error_increase": 0.1}
    warning = small_split_warning(sparsest, 1000)
    assert warning is not None and "1000 validation images" in warning and "one image is 0.1 points" in warning
    assert small_split_warning(None, 667) is not None                        # a config naming no rule searches (auto)
    assert small_split_warning(sparsest, 5000) is None                        # MNIST's hold-out
    assert small_split_warning({**sparsest, "acceptance": "paired"}, 1000) is None
    assert small_split_warning({"rule": "valley"}, 1000) is None              # nothing searched on the split
    assert small_split_warning(sparsest, 0) is None                           # no split: nothing is searched
