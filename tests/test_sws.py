"""Soft weight-sharing: the mixture prior against an independent density, the fixed zero component, separate
learning rates, and quantisation to the mixture means in a synthetic run whose reported error is the quantised one."""
import json
import math
from pathlib import Path

import pytest
import torch
from conftest import run_bcrepro

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
