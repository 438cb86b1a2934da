"""Weight sharing does what DC and SWS describe (docs/baselines.md §2.1 steps 4-5, §4.3)."""
import math

import pytest
import torch

from bcrepro import weight_sharing as ws


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ---- Deep Compression: k-means ---------------------------------------------------------------------------------------
def test_kmeans_recovers_three_known_centres():
    centres = torch.tensor([-0.5, 0.1, 0.8])
    values = (centres.repeat_interleave(500) + 0.01 * torch.randn(1500, generator=gen())).float()
    values = values[torch.randperm(1500, generator=gen(1))]
    centroids, assignments = ws.kmeans_1d(values, 3)
    assert centroids.shape == (3,) and assignments.shape == (1500,) and assignments.dtype == torch.int64
    torch.testing.assert_close(centroids, centres, atol=3e-3, rtol=0)
    again = ws.kmeans_1d(values, 3)
    assert torch.equal(again[0], centroids) and torch.equal(again[1], assignments)


def test_linear_init_spreads_centroids_evenly_over_min_max():
    values = torch.tensor([0.3, -1.5, 0.0, 2.5, 0.1])
    init = ws.linear_init(values, 5)
    torch.testing.assert_close(init, torch.tensor([-1.5, -0.5, 0.5, 1.5, 2.5]))


def test_density_init_spreads_centroids_evenly_over_the_cdf():
    values = torch.arange(101, dtype=torch.float32) ** 2  # quantile q is (100 q)^2
    torch.testing.assert_close(ws.density_init(values, 5), torch.tensor([0.0, 625.0, 2500.0, 5625.0, 10000.0]))


@pytest.mark.parametrize("max_iter", [100, 1])  # also when stopped before convergence
def test_assignments_are_the_nearest_centroid(max_iter):
    values = torch.randn(5000, generator=gen(2)) * torch.rand(5000, generator=gen(3))
    centroids, assignments = ws.kmeans_1d(values, 16, max_iter=max_iter)
    dist = (values.double()[:, None] - centroids.double()[None, :]).abs()  # [n, k]
    brute = dist.argmin(dim=1)
    assert (dist.gather(1, assignments[:, None]).squeeze(1) - dist.min(dim=1).values).abs().max() == 0
    assert (assignments == brute).float().mean() > 0.999  # differs only on exact ties, if any


def test_kmeans_converges_to_lloyds_fixed_point():
    # heavy-tailed, like trained weights: linear init puts most centroids in the tails, so convergence takes many steps
    values = torch.randn(20000, generator=gen(11), dtype=torch.float64) ** 3
    centroids, assignments = ws.kmeans_1d(values, 8, tol=0.0, max_iter=1000)
    for j in range(8):
        members = values[assignments == j]
        assert members.numel() > 0
        torch.testing.assert_close(centroids[j], members.mean(), atol=1e-12, rtol=0)


def test_empty_cluster_keeps_its_centroid():
    values = torch.tensor([0.0, 0.01, 0.02, 0.98, 0.99, 1.0], dtype=torch.float64)
    centroids, assignments = ws.kmeans_1d(values, 5)  # linear init 0, .25, .5, .75, 1: the middle three stay empty
    torch.testing.assert_close(centroids, torch.tensor([0.01, 0.25, 0.5, 0.75, 0.99], dtype=torch.float64))
    assert assignments.tolist() == [0, 0, 0, 4, 4, 4]


def test_unknown_init_is_refused():
    with pytest.raises(ValueError, match="linear"):
        ws.kmeans_1d(torch.randn(10), 2, init="forgy")


# ---- Deep Compression: codebook --------------------------------------------------------------------------------------
def test_codebook_has_at_most_2_pow_bits_entries_and_dequantizes_to_centroids():
    weight = torch.randn(50, 40, generator=gen(4))
    mask = torch.rand(50, 40, generator=gen(5)) < 0.3
    book = ws.share_weights(weight, mask, bits=3)
    assert book.n_entries <= 8 and book.index_bits == 3 and book.centroids.dtype == torch.float32
    assert torch.equal(book.assignments == -1, ~mask)
    quantised = book.dequantize()
    assert quantised.shape == weight.shape
    assert torch.all(quantised[~mask] == 0)
    assert torch.isin(quantised[mask], book.centroids).all()
    # each surviving weight went to its nearest centroid
    err = (quantised[mask] - weight[mask]).abs()
    nearest = (weight[mask][:, None] - book.centroids[None, :]).abs().min(dim=1).values
    torch.testing.assert_close(err, nearest)


def test_codebook_with_few_distinct_weights_is_exact():
    weight = torch.tensor([[0.5, -0.25, 0.0], [0.5, 0.75, -0.25]])
    mask = weight != 0
    book = ws.share_weights(weight, mask, bits=4)
    assert book.n_entries == 3 and book.index_bits == 2
    assert torch.equal(book.dequantize(), weight)


def test_centroid_gradients_sum_weight_gradients_per_cluster():
    weight = torch.randn(6, 5, generator=gen(6))
    mask = torch.rand(6, 5, generator=gen(7)) < 0.6
    book = ws.share_weights(weight, mask, bits=2)
    grad = torch.randn(6, 5, generator=gen(8))
    expected = [0.0] * book.n_entries
    for i in range(6):
        for j in range(5):
            if mask[i, j]:
                expected[book.assignments[i, j]] += float(grad[i, j])
    torch.testing.assert_close(ws.centroid_gradients(grad, book), torch.tensor(expected))


def test_lenet5_sized_layer_clusters():
    weight = torch.randn(500, 800, generator=gen(9)) * 0.05  # LeNet-5's ip1: 400k weights
    book = ws.share_weights(weight, weight.abs() > 0.01, bits=5)
    assert book.n_entries == 32 and book.dequantize().shape == (500, 800)


# ---- Soft Weight-Sharing post-processing -----------------------------------------------------------------------------
def mixture(means, sigmas, pis):
    t = lambda xs: torch.tensor(xs, dtype=torch.float64)  # noqa: E731
    return t(means), -2 * torch.log(t(sigmas)), torch.log(t(pis))


def test_merging_two_identical_components_leaves_one_moment_matched():
    means, log_prec, log_pis = mixture([0.0, 0.3, 0.3, -0.4], [0.02, 0.05, 0.05, 0.05], [0.9, 0.03, 0.05, 0.02])
    new_means, new_log_prec, new_log_pis = ws.merge_close_components(means, log_prec, log_pis)
    torch.testing.assert_close(new_means, torch.tensor([0.0, 0.3, -0.4], dtype=torch.float64))
    torch.testing.assert_close(new_log_pis.exp(), torch.tensor([0.9, 0.08, 0.02], dtype=torch.float64))
    torch.testing.assert_close(new_log_prec, log_prec[[0, 1, 3]])


def test_components_with_one_mean_but_different_widths_are_not_merged():
    means, log_prec, log_pis = mixture([0.0, 0.3, 0.3], [0.02, 0.05, 0.5], [0.9, 0.05, 0.05])
    assert ws.merge_close_components(means, log_prec, log_pis)[0].numel() == 3


def test_merge_uses_moment_matching_and_keeps_zero_exact():
    # the zero component and one at 1e-9 are the same Gaussian to KL ~ 1e-15: merged, and the mean snapped back to 0
    means, log_prec, log_pis = mixture([0.0, 1e-9, 0.5], [0.1, 0.1, 0.1], [0.5, 0.25, 0.25])
    new_means, new_log_prec, new_log_pis = ws.merge_close_components(means, log_prec, log_pis)
    assert new_means.tolist() == [0.0, 0.5]
    torch.testing.assert_close(new_log_pis.exp(), torch.tensor([0.75, 0.25], dtype=torch.float64))
    torch.testing.assert_close(new_log_prec, log_prec[[0, 2]])


def test_snap_maps_every_weight_to_a_mean_and_zero_wins_exact_zero():
    means, log_prec, log_pis = mixture([0.0, 0.2, -0.3, 0.2000000001], [0.01, 0.03, 0.03, 0.03],
                                       [0.95, 0.025, 0.0125, 0.0125])
    means, log_prec, log_pis = ws.merge_close_components(means, log_prec, log_pis)
    assert means.numel() == 3
    weight = (torch.randn(40, 30, generator=gen(10)) * 0.2).float()
    snapped = ws.snap_to_means(weight, means, log_prec, log_pis)
    assert snapped.shape == weight.shape and snapped.dtype == weight.dtype
    assert torch.isin(snapped, means.float()).all()
    # brute-force responsibilities, written out from the Gaussian density
    w = weight.double().flatten()[:, None]
    precision = log_prec.exp()
    density = log_pis.exp() * (precision / (2 * math.pi)).sqrt() * torch.exp(-precision / 2 * (w - means) ** 2)
    winner = density.argmax(dim=1).view(weight.shape)
    zero = means.abs().argmin()
    assert (winner == zero).any() and torch.all(snapped[winner == zero] == 0)
    assert torch.all(snapped[weight.abs() < 0.005] == 0)
    torch.testing.assert_close(snapped, means.float()[winner])
