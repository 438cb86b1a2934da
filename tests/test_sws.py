"""Soft weight-sharing: the mixture prior against an independent density, the fixed zero component, separate
learning rates, and quantisation to the mixture means in a synthetic run whose reported error is the quantised one."""
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import run_bcrepro, train_cell

from bcrepro import data, models, runs
from bcrepro.methods import get_method, sws
from bcrepro.train import TrainConfig, make_optimizer, train


def _sws_net(**overrides):
    method = get_method("sws")
    hp = method.params_for("lenet300", overrides)
    torch.manual_seed(0)
    net = models.build("lenet300", method.layer_factory("lenet300", hp))
    method.attach(net, hp)
    method.prepare(net, hp)
    return net, hp


def test_negative_log_prior_matches_the_mixture_density_computed_directly():
    net, _ = _sws_net()
    prior = net.prior
    w = torch.randn(50, dtype=torch.float64) * 0.1
    means, log_lam, log_pis = (t.detach().double() for t in prior.mixture())
    density = torch.zeros_like(w)
    for mu, lam, pi in zip(means, log_lam.exp(), log_pis.exp()):
        density += pi * torch.distributions.Normal(mu, lam.rsqrt()).log_prob(w).exp()
    assert float(prior.neg_log_prior(w.float()).detach()) == pytest.approx(float(-density.log().sum()), rel=1e-4)
    assert float(log_pis.exp().sum()) == pytest.approx(1.0)


def test_closed_form_gradients_match_autograd_through_the_density(monkeypatch):
    # Independent computation: autograd of log sum_j pi_j N(w | mu_j, 1/lambda_j) written with torch.distributions,
    # in float64, on a 2-D weight spread over several blocks (the closed form works block by block).
    from bcrepro.layers import mixture_prior
    monkeypatch.setattr(mixture_prior, "CHUNK", 37)
    torch.manual_seed(1)
    w = (torch.randn(20, 9, dtype=torch.float64) * 0.3).requires_grad_()
    means = (torch.linspace(-0.5, 0.5, 5, dtype=torch.float64) + 0.01).requires_grad_()
    log_lam = torch.tensor([3.0, 2.0, 4.0, 5.0, 1.5], dtype=torch.float64, requires_grad=True)
    log_pis = torch.log_softmax(torch.randn(5, dtype=torch.float64), 0).detach().requires_grad_()
    inputs = (w, means, log_lam, log_pis)
    closed = mixture_prior._MixtureNegLogLikelihood.apply(*inputs)
    grads = torch.autograd.grad(closed, inputs)
    normals = torch.distributions.Normal(means, (-0.5 * log_lam).exp())
    reference = -torch.logsumexp(log_pis + normals.log_prob(w.reshape(-1, 1)), dim=1).sum()
    expected = torch.autograd.grad(reference, inputs)
    assert float(closed.detach()) == pytest.approx(float(reference.detach()), rel=1e-12)
    for got, want, name in zip(grads, expected, ("w", "means", "log_lam", "log_pis")):
        assert got.shape == want.shape, name
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9, msg=name)


def test_zero_component_stays_at_zero_with_its_fixed_proportion_while_the_rest_learn(tmp_path):
    net, hp = _sws_net()
    means_before = net.prior.means.detach().clone()
    splits = data.load_dataset("synthetic", validation_size=0, synthetic_train=256, synthetic_test=64)
    train(net, splits, TrainConfig(epochs=2, batch_size=64, lr=1e-3), tmp_path, torch.device("cpu"))
    means, _, log_pis = (t.detach() for t in net.prior.mixture())
    assert float(means[0]) == 0.0 and float(log_pis[0].exp()) == pytest.approx(0.999)
    assert not torch.equal(means_before, net.prior.means.detach())


def test_the_mixture_trains_at_its_own_learning_rates():
    net, hp = _sws_net(lr_means=1e-4, lr_log_precisions=3e-3, lr_mixing=2e-3)
    optimizer = make_optimizer(net, TrainConfig(epochs=1, batch_size=8, lr=5e-4), torch.device("cpu"))
    rates = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert rates[id(net.prior.means)] == 1e-4 and rates[id(net.prior.log_precisions)] == 3e-3
    assert rates[id(net.prior.mixing_logits)] == 2e-3
    assert rates[id(net.prunable_layers()[0].weight)] == 5e-4
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(net.parameters()))


def test_finalize_moves_every_weight_to_a_mixture_mean_and_prunes_the_zeros():
    net, hp = _sws_net()
    with torch.no_grad():
        net.prunable_layers()[0].weight[0, :5] = torch.tensor([0.0, 1e-4, -1e-4, 0.3, -0.3])
    sws.finalize(net, hp)
    means = set(net.prior.means.detach().tolist())  # nothing merged at init: the means are distinct
    for layer in net.prunable_layers():
        values = set(layer.inference_weight()[layer.mask].tolist())
        assert values <= means and 0.0 not in values
        assert torch.equal(layer.mask, layer.inference_weight() != 0)
    first = net.prunable_layers()[0]
    assert not first.mask[0, :3].any()  # the zero component (pi_0 = 0.999) wins near 0


@pytest.mark.slow
def test_sws_from_a_dense_reference_quantises_and_reports_the_quantised_error(tmp_path, dense_lenet300):
    run = tmp_path / "sws"
    run_bcrepro("train", "--arch", "lenet300", "--method", "sws", "--dataset", "synthetic", "--epochs", 10,
                "--init", dense_lenet300, "--out", run,
            # synthetic weights are small (|w| < 0.05): narrow components, no hyper-priors (their mean sigma, 0.02,
            # would put every weight in the zero component)
                "--params-json", json.dumps({"validation_size": 300, "init_std": 0.01, "zero_gamma": None,
                                             "gamma": None, "lr_means": 1e-3, "lr_log_precisions": 3e-3,
                                             "lr_mixing": 3e-3}))
    run_bcrepro("compress", "--run", run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["nonzero_weights"] < 0.5 * metrics["total_weights"]
    assert metrics["bits"] is not None and max(metrics["bits"]) <= 4  # at most 16 non-zero means
    assert metrics["error_pct"] == metrics["error_quantized_pct"] < 15.0  # the quantised network's error
    _, _, net = runs.load_trained(Path(run), torch.device("cpu"))
    for layer in net.prunable_layers():
        codebook = set(layer.centroids[:int(layer.n_centroids)].tolist())
        assert set(layer.inference_weight()[layer.mask].tolist()) <= codebook


def test_gamma_hyperprior_is_minimised_at_its_mode():
    net, _ = _sws_net(zero_gamma=[5000.0, 2.0], gamma=None)
    prior = net.prior
    values = []
    for log_lam in (math.log(2000.0), math.log(4999.0 / 2.0), math.log(3000.0)):  # the mode of G(a, b) is (a-1)/b
        with torch.no_grad():
            prior.log_precisions[0] = log_lam
        values.append(float(prior.neg_log_hyperprior().detach()))
    assert values[1] < values[0] and values[1] < values[2]


def test_one_block_off_the_cpu_gives_the_blockwise_values(monkeypatch):
    """Off the CPU the prior runs as one block (a few kernels instead of hundreds per step); the result is the same
    sum, to rounding."""
    from bcrepro.layers import mixture_prior
    assert mixture_prior.block_size(torch.empty(100_000, device="meta")) == 100_000
    assert mixture_prior.block_size(torch.empty(100_000)) == mixture_prior.CHUNK
    torch.manual_seed(2)
    w = (torch.randn(3000, dtype=torch.float64) * 0.3).requires_grad_()
    means = torch.linspace(-0.5, 0.5, 5, dtype=torch.float64)
    log_lam = torch.tensor([3.0, 2.0, 4.0, 5.0, 1.5], dtype=torch.float64)
    log_pis = torch.log_softmax(torch.randn(5, dtype=torch.float64), 0)
    results = []
    for block in (37, 3000):
        monkeypatch.setattr(mixture_prior, "block_size", lambda weights, block=block: block)
        value = mixture_prior._MixtureNegLogLikelihood.apply(w, means, log_lam, log_pis)
        results.append((value.detach(), torch.autograd.grad(value, w)[0]))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-12, atol=0)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-12, atol=1e-15)


# ---- the tutorial's settings as options (config/sws_tutorial.yaml) ---------------------------------------------------
def _mixture_neg_log_density(values, prior):
    """-sum_i log sum_j pi_j N(x_i | mu_j, 1/lambda_j), written out from the Gaussian density in float64."""
    means, log_lam, log_pis = (t.detach().double() for t in prior.mixture())
    x = values.detach().double()[:, None]  # [n, 1]
    lam = log_lam.exp()
    density = (log_pis.exp() * (lam / (2 * math.pi)).sqrt() * torch.exp(-lam / 2 * (x - means) ** 2)).sum(dim=1)
    return float(-density.log().sum())


@pytest.mark.parametrize("on_biases", [False, True])
def test_prior_on_biases_adds_the_biases_mixture_log_density_to_the_prior_term(on_biases):
    net, _ = _sws_net(prior_on_biases=on_biases, tau=1.0, zero_gamma=None, gamma=None)
    layers = net.prunable_layers()
    with torch.no_grad():  # biases far from 0, so that leaving them out (or in) changes the term by a lot
        for layer in layers:
            layer.bias.normal_(0.0, 0.3)
    covered = [layer.weight.flatten() for layer in layers] + ([layer.bias for layer in layers] if on_biases else [])
    expected = _mixture_neg_log_density(torch.cat(covered), net.prior)
    assert float(net.prior.kl_divergence().detach()) == pytest.approx(expected, rel=1e-5)
    net.prior.kl_divergence().backward()
    assert (layers[0].bias.grad is not None and bool(layers[0].bias.grad.abs().sum() > 0)) == on_biases


def test_biases_under_the_prior_keep_their_trained_values_when_the_weights_are_snapped():
    net, hp = _sws_net(prior_on_biases=True)
    biases = [layer.bias.detach().clone() for layer in net.prunable_layers()]
    sws.finalize(net, hp)
    for layer, bias in zip(net.prunable_layers(), biases):
        assert torch.equal(layer.bias.detach(), bias)


def test_linspace_init_puts_the_means_exactly_on_the_given_range_whatever_the_weights():
    net, _ = _sws_net(init_means=[-0.6, 0.6])
    means = net.prior.means.detach()  # float32 [16]
    expected = torch.tensor([-0.6 + 1.2 * k / 15 for k in range(16)], dtype=torch.float64)  # the tutorial's linspace
    torch.testing.assert_close(means.double(), expected, rtol=0, atol=1e-7)  # float32 rounding
    assert means[0] == torch.tensor(-0.6) and means[-1] == torch.tensor(0.6)
    weights = torch.cat([layer.weight.detach().flatten() for layer in net.prunable_layers()])
    assert float(weights.abs().max()) < 0.5  # the freshly built LeNet's range is not [-0.6, 0.6]
    assert torch.equal(net.prior.mixing_logits.detach(), torch.zeros(16))


@pytest.mark.parametrize("on_biases", [False, True])
def test_spread_init_spans_the_range_of_what_the_prior_covers(on_biases):
    method = get_method("sws")
    hp = method.params_for("lenet300", {"prior_on_biases": on_biases})
    assert hp["init_means"] == "spread"
    torch.manual_seed(0)
    net = models.build("lenet300", method.layer_factory("lenet300", hp))
    with torch.no_grad():
        net.prunable_layers()[1].bias[3] = 2.5  # beyond every weight
    method.attach(net, hp)
    method.prepare(net, hp)
    weights = torch.cat([layer.weight.detach().flatten() for layer in net.prunable_layers()])
    high = 2.5 if on_biases else float(weights.max())
    expected = [float(weights.min()) + (high - float(weights.min())) * k / 15 for k in range(16)]
    torch.testing.assert_close(net.prior.means.detach().double(), torch.tensor(expected, dtype=torch.float64),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("overrides, message", [
    ({"init_means": [0.6, -0.6]}, "low < high"),
    ({"init_means": "linspace"}, "'spread'"),
    ({"init_means": [-0.6]}, "low < high"),
    ({"prior_on_biases": "yes"}, "true or false"),
])
def test_the_tutorial_options_refuse_values_outside_their_forms(overrides, message):
    with pytest.raises(Exception, match=message):
        get_method("sws").params_for("lenet300", overrides)


def test_the_defaults_are_the_papers_means_and_weights_only():
    hp = get_method("sws").params_for("lenet5")
    assert hp["init_means"] == "spread" and hp["prior_on_biases"] is False


def test_the_tutorial_config_sets_the_tutorials_settings_on_both_lenets():
    import yaml

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "sws_tutorial.yaml").read_text())
    tutorial = {"lr": 5e-4, "epochs": 30, "batch_size": 256, "init_means": [-0.6, 0.6], "prior_on_biases": True,
                "preprocess": "unit", "tau": 0.003, "pi_zero": 0.99, "lr_means": 1e-4, "lr_log_precisions": 3e-3,
                "lr_mixing": 3e-3, "zero_gamma": [5000.0, 2.0], "gamma": [250.0, 0.1], "init_std": 0.25}
    for arch in ("lenet300", "lenet5"):
        params = get_method("sws").params_for(arch, config["hyperparameters"]["sws"][arch])
        assert {key: params[key] for key in tutorial} == tutorial, arch
        # the dense reference SWS starts from (its own, `references`) must see the same pixels
        assert get_method("dense").params_for(arch, config["references"]["sws"][arch])["preprocess"] == "unit"


# ---- the collapse flag sees SWS's snapping ---------------------------------------------------------------------------
@pytest.mark.slow
def test_the_collapse_flag_compares_the_snapped_error_with_the_network_as_trained(tmp_path, dense_lenet300):
    """``finalize`` snaps SWS's weights before the compression pipeline, whose ``error_pct`` is therefore the snapped
    network's: measured from it, the jump of an SWS run is ~0 whatever snapping did. One epoch from the dense
    reference leaves every component at its initial std (0.25), so the zero component (pi_0 = 0.999) takes every
    weight and snapping zeroes the network: a collapse the flag must report, against the error of the trained
    network computed here from model.pt without finalize."""
    from bcrepro.cells import compress_cell

    run = tmp_path / "sws"
    train_cell(run, arch="lenet300", method="sws", dataset="synthetic", epochs=1, init=str(dense_lenet300),
               params={"validation_size": 300})
    metrics = compress_cell(run)
    info = json.loads((run / "run.json").read_text())
    splits = runs.load_dataset_for_run(info, torch.device("cpu"))
    net = runs.build_net(info["arch"], info["method"], info["params"], splits)
    net.load_state_dict(torch.load(run / "model.pt", map_location="cpu", weights_only=True))
    with torch.no_grad():
        wrong = int((net.eval()(splits.test_x).argmax(dim=1) != splits.test_y).sum())
    trained = 100.0 * wrong / len(splits.test_y)
    assert metrics["nonzero_weights"] == 0 and metrics["error_pct"] > trained + 20  # snapping broke it
    assert metrics["error_trained_pct"] == pytest.approx(trained, abs=1e-9)
    assert metrics["error_jump_pct"] == pytest.approx(metrics["error_quantized_pct"] - trained, abs=1e-9)
    assert metrics["collapsed"] is True
    assert json.loads((run / "metrics.json").read_text())["collapsed"] is True


def test_the_table_counts_a_collapse_from_the_error_as_trained(tmp_path):
    """As compress writes an SWS cell now: ``error_pct`` is the snapped network's and ``error_trained_pct`` the one
    before snapping; the table's "! N collapsed" must judge the jump from the latter."""
    from conftest import write_cell

    from bcrepro.report import table

    root = tmp_path / "runs"
    write_cell(root, "lenet300", "sws", 0, error_pct=40.75, error_pruned_pct=40.75, error_quantized_pct=40.75,
               error_trained_pct=7.75)  # the reported 8,000-image run
    write_cell(root, "lenet300", "sws", 1, error_pct=2.0, error_pruned_pct=2.0, error_quantized_pct=2.0,
               error_trained_pct=1.5)  # +0.5 points: within the margin
    rows = table.comparison_table(table.load_runs(root))
    assert rows.loc[(rows["arch"] == "lenet300") & (rows["method"] == "sws"), "n_collapsed"].tolist() == [1]
