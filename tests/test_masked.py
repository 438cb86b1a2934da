"""Masked layers and the compression of single-weight pruning, checked on hand-made masks."""
import pytest
import torch
import torch.nn.functional as F

from bcrepro import models
from bcrepro.compress import accounting
from bcrepro.compress.masks import deterministic_net, layer_counts, propagate_masks
from bcrepro.deploy import slim
from bcrepro.layers.masked import MaskedConv2d, MaskedLinear

MASKED = models.LayerFactory(
    linear=lambda n_in, n_out, index: MaskedLinear(n_in, n_out),
    conv=lambda c_in, c_out, k, padding, index: MaskedConv2d(c_in, c_out, k, padding=padding))


def lenet300_with_masks():
    """LeNet-300-100 whose fc1 keeps only inputs 0..9, fc2's unit i reads only inputs 3i..3i+2, and fc2's unit 5 has
    no outgoing weight in fc3 (so it must be removed, and fc2's row 5 with it)."""
    torch.manual_seed(0)
    net = models.lenet300(MASKED)
    fc1, fc2, fc3 = net.prunable_layers()
    fc1.mask.zero_()
    fc1.mask[:, :10] = True
    fc2.mask.copy_(torch.arange(300)[None, :] // 3 == torch.arange(100)[:, None])
    fc3.mask[:, 5] = False
    return net


def test_masked_forward_uses_only_kept_weights():
    layer = MaskedLinear(4, 3)
    layer.mask.copy_(torch.tensor([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool))
    x = torch.randn(5, 4)
    expected = F.linear(x, layer.weight * layer.mask, layer.bias)
    assert torch.allclose(layer(x), expected)
    conv = MaskedConv2d(2, 3, 3, padding=1)
    conv.mask[1] = False
    x = torch.randn(2, 2, 5, 5)
    assert torch.allclose(conv(x), F.conv2d(x, conv.weight * conv.mask, conv.bias, padding=1))


@pytest.mark.parametrize("straight_through, pruned_grad_is_zero", [(False, True), (True, False)])
def test_pruned_weights_get_gradients_only_when_straight_through(straight_through, pruned_grad_is_zero):
    layer = MaskedLinear(4, 3, straight_through=straight_through)
    layer.mask[0, 0] = False
    layer(torch.randn(8, 4)).pow(2).sum().backward()
    assert (layer.weight.grad[0, 0] == 0) == pruned_grad_is_zero
    assert layer.weight.grad[1, 1] != 0


def test_units_without_kept_weights_are_removed_and_counted_one_by_one():
    net = lenet300_with_masks()
    masks = propagate_masks(net, None)
    assert int(masks[0].in_mask.sum()) == 10                      # fc1 reads 10 pixels
    assert int(masks[1].in_mask.sum()) == 297                     # unit 5's three inputs go with it...
    assert not masks[1].out_mask[5] and int(masks[1].out_mask.sum()) == 99  # unit 5 feeds nothing: removed
    assert not masks[2].in_mask[5]
    counts = [layer_counts(layer, m) for layer, m in zip(net.prunable_layers(), masks)]
    assert int(masks[0].out_mask.sum()) == 297                    # ...and so do the fc1 units feeding only them
    assert [c.nonzero for c in counts] == [297 * 10, 99 * 3, 10 * 99]
    assert [c.slim for c in counts] == [297 * 10, 99 * 297, 10 * 99]
    # CSR is cheaper for the sparse fc2, the dense slimmed block for the others
    assert [accounting.layer_storage(c, 32)[1] for c in counts] == ["dense", "csr", "dense"]


def test_deterministic_and_slim_nets_compute_the_masked_network():
    net = lenet300_with_masks()
    masks = propagate_masks(net, None)
    x = torch.randn(6, 1, 28, 28)
    with torch.no_grad():
        pruned = deterministic_net(net, masks)
        assert torch.allclose(pruned(x), net.eval()(x), atol=1e-5)  # removing unit 5 changes nothing
        assert torch.allclose(slim.slim_net(pruned, masks)(x), pruned(x), atol=1e-5)


def test_the_forward_pass_of_a_shared_layer_never_reads_its_centroid_count():
    """The count of codebook entries is a buffer (checkpointed) and a Python number (read every forward pass): on a
    GPU, reading the buffer each step would make the host wait for the device. A 'meta' buffer cannot be read."""
    torch.manual_seed(0)
    layer = MaskedLinear(20, 5, codebook_size=8)
    layer.share_weights()
    x = torch.randn(3, 20)
    expected = layer(x)
    fresh = MaskedLinear(20, 5, codebook_size=8)
    fresh.load_state_dict(layer.state_dict())
    assert fresh.shared and fresh.codebook_entries() == int(layer.n_centroids) > 0
    fresh.n_centroids = torch.zeros((), dtype=torch.int64, device="meta")
    torch.testing.assert_close(fresh(x), expected, rtol=0, atol=0)
    assert not MaskedLinear(20, 5, codebook_size=8).shared
