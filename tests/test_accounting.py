"""The accounting reproduces the published arithmetic (docs/method.md, docs/baselines.md §2.2/§2.4)."""
import math

import numpy as np
import pytest

from bcrepro.compress import accounting as acc


# ---- helpers written from the papers' layer counting, independent of the module ------------------------------------
def fc_chain_counts(widths_in, n_out=10, original=None):
    """FC layer l keeps (kept inputs of l) x (kept inputs of l+1, or n_out for the last layer) weights."""
    outs = list(widths_in[1:]) + [n_out]
    counts = []
    for (kin, kout), (tot_in, tot_out) in zip(zip(widths_in, outs), original):
        kept = kin * kout
        counts.append(acc.LayerCounts(total=tot_in * tot_out, nonzero=kept, slim=kept, rows=tot_out))
    return counts


def vgg_counts(arch):
    """13 conv filter counts, then the kept input groups of FC1 and FC2 (Table 2's reading)."""
    plan = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    convs, (fc1_in, fc2_in) = arch[:13], arch[13:]
    counts, prev_kept, prev_total = [], 3, 3
    for kept, total in zip(convs, plan):
        counts.append(acc.LayerCounts(total=total * prev_total * 9, nonzero=kept * prev_kept * 9,
                                      slim=kept * prev_kept * 9, rows=total))
        prev_kept, prev_total = kept, total
    counts.append(acc.LayerCounts(total=512 * 512, nonzero=fc1_in * fc2_in, slim=fc1_in * fc2_in, rows=512))
    counts.append(acc.LayerCounts(total=512 * 10, nonzero=fc2_in * 10, slim=fc2_in * 10, rows=10))
    return counts


LENET300 = [(784, 300), (300, 100), (100, 10)]


def published(counts, bits):
    return math.floor(acc.compression_pruning(counts)), math.floor(acc.compression_precision(counts, bits))


# ---- the published rates ---------------------------------------------------------------------------------------------
def test_compression_reproduces_lenet300_gnj_9_36():
    counts = fc_chain_counts([278, 98, 13], original=LENET300)
    assert sum(c.total for c in counts) == 266_200
    assert sum(c.slim for c in counts) == 28_648
    assert published(counts, [8, 9, 14]) == (9, 36)


def test_compression_reproduces_lenet300_ghs_9_23():
    counts = fc_chain_counts([311, 86, 14], original=LENET300)
    assert sum(c.slim for c in counts) == 28_090
    assert published(counts, [13, 11, 10]) == (9, 23)


def test_compression_reproduces_lenet5_ghs_156_419():
    conv1, conv2, fc1_in, fc2_in = 5, 10, 76, 16
    counts = [
        acc.LayerCounts(total=20 * 1 * 25, nonzero=conv1 * 25, slim=conv1 * 1 * 25, rows=20),
        acc.LayerCounts(total=50 * 20 * 25, nonzero=conv2 * conv1 * 25, slim=conv2 * conv1 * 25, rows=50),
        acc.LayerCounts(total=500 * 800, nonzero=fc1_in * fc2_in, slim=fc1_in * fc2_in, rows=500),
        acc.LayerCounts(total=10 * 500, nonzero=fc2_in * 10, slim=fc2_in * 10, rows=10),
    ]
    assert sum(c.total for c in counts) == 430_500
    assert sum(c.slim for c in counts) == 2_751
    assert published(counts, [10, 10, 14, 13]) == (156, 419)


def test_compression_reproduces_vgg_gnj_14_56():
    counts = vgg_counts([63, 64, 128, 128, 245, 155, 63, 26, 24, 20, 14, 12, 11, 11, 15])
    assert sum(c.total for c in counts) == 14_977_728
    assert sum(c.slim for c in counts) == 1_001_286
    assert published(counts, [10, 10, 10, 10, 8, 8, 8, 5, 5, 5, 5, 5, 6, 7, 11]) == (14, 56)


def test_compression_reproduces_vgg_ghs_18_59():
    counts = vgg_counts([51, 62, 125, 128, 228, 129, 38, 13, 9, 6, 5, 6, 6, 6, 20])
    assert sum(c.slim for c in counts) == 822_236
    assert published(counts, [11, 12, 9, 14, 10, 8, 5, 5, 6, 6, 6, 8, 11, 17, 10]) == (18, 59)


def test_precision_rate_needs_one_bit_width_per_layer():
    counts = fc_chain_counts([278, 98, 13], original=LENET300)
    with pytest.raises(ValueError, match="one bit width per layer"):
        acc.compression_precision(counts, [8, 9])


def test_codebooks_count_only_for_layers_that_keep_weights():
    # two FC layers, 16-entry codebooks (4-bit indices); the second layer keeps nothing
    counts = [acc.LayerCounts(total=1000, nonzero=10, slim=10 * 10, rows=100),
              acc.LayerCounts(total=500, nonzero=0, slim=0, rows=50)]
    # layer 1: CSR 10 * (4 + 32) + 101 * 32 = 3592 bits vs dense slimmed 100 * 4 = 400: dense; + 16 * 32 codebook
    assert acc.compression_precision(counts, [4, 4], [16, 16]) == pytest.approx(32 * 1500 / (400 + 16 * 32))
    emptied = [acc.LayerCounts(total=c.total, nonzero=0, slim=0, rows=c.rows) for c in counts]
    assert acc.compression_precision(emptied, [4, 4], [16, 16]) == math.inf
    assert acc.compression_pruning(emptied) == math.inf
    with pytest.raises(ValueError, match="one codebook size per layer"):
        acc.compression_precision(counts, [4, 4], [16])


# ---- Deep Compression ------------------------------------------------------------------------------------------------
def brute_force_fillers(flat_nonzero, index_bits):
    """Walk the tensor: a run of zeros longer than 2^p - 1 since the last stored entry forces a filler."""
    fillers, run = 0, 0
    for nz in flat_nonzero:
        if nz:
            run = 0
        else:
            run += 1
            if run == 2 ** index_bits:  # the filler itself occupies this zero position
                fillers += 1
                run = 0
    # trailing zeros after the last non-zero cost nothing: undo fillers placed after it
    last = np.flatnonzero(flat_nonzero)
    tail = len(flat_nonzero) - 1 - (last[-1] if len(last) else -1)
    return fillers - tail // 2 ** index_bits


def test_filler_count_matches_a_walk_over_the_tensor():
    rng = np.random.default_rng(0)
    for density in (0.02, 0.08, 0.3):
        mask = rng.random(3000) < density
        assert acc.filler_count(mask, 5) == brute_force_fillers(mask, 5)
    # exact edges: a gap of 31 zeros needs no filler, 32 needs one, 64 needs two
    for gap, expected in ((31, 0), (32, 1), (63, 1), (64, 2)):
        mask = np.zeros(gap + 1, dtype=bool)
        mask[-1] = True
        assert acc.filler_count(mask, 5) == expected


def test_relative_index_codes_decode_to_the_positions():
    rng = np.random.default_rng(1)
    mask = rng.random(2000) < 0.03
    codes, n_fillers = acc.relative_index_codes(mask, 4)
    stored = np.cumsum(codes + 1) - 1  # decode.py: positions = cumsum(diff + 1) - 1
    assert len(stored) == mask.sum() + n_fillers
    assert codes.max() <= 15
    real = stored[np.isin(stored, np.flatnonzero(mask))]
    np.testing.assert_array_equal(real, np.flatnonzero(mask))


def test_deep_compression_lenet300_is_about_32x_before_huffman():
    """DC Table 2: 8/9/26 % kept of 235,200/30,000/1,000, 6-bit weights, 5-bit indices, 64-entry codebooks -> 32x."""
    rng = np.random.default_rng(0)
    sizes, kept = (235_200, 30_000, 1_000), (0.08, 0.09, 0.26)
    total_bits = 0
    for n, fraction in zip(sizes, kept):
        mask = np.zeros(n, dtype=bool)
        mask[rng.choice(n, size=round(n * fraction), replace=False)] = True
        entries = int(mask.sum()) + acc.filler_count(mask, 5)
        total_bits += acc.han_storage_bits(entries, weight_bits=6, index_bits=5, codebook_size=64)
    rate = 32 * sum(sizes) / total_bits
    assert 30 <= rate <= 34
    # without fillers the same arithmetic gives 34.7x: 21,776 entries * 11 bits + 3 * 64 * 32
    no_fillers = 32 * 266_200 / (21_776 * 11 + 3 * 64 * 32)
    assert rate < no_fillers and no_fillers == pytest.approx(34.67, abs=0.01)


def test_huffman_lengths_of_the_textbook_example():
    # CLRS 16.3: a:45 b:13 c:12 d:16 e:9 f:5 -> lengths 1,3,3,3,4,4, 224 bits in all
    assert acc.huffman_code_lengths([45, 13, 12, 16, 9, 5]) == [1, 3, 3, 3, 4, 4]
    assert acc.huffman_bits(["a"] * 45 + ["b"] * 13 + ["c"] * 12 + ["d"] * 16 + ["e"] * 9 + ["f"] * 5) == 224


@pytest.mark.parametrize("kind", ["uniform", "skewed"])
def test_huffman_never_worse_than_fixed_length(kind):
    rng = np.random.default_rng(2)
    if kind == "uniform":
        stream = rng.integers(0, 32, size=5000)
    else:
        stream = np.minimum(rng.geometric(0.4, size=5000), 40)
    huffman, fixed = acc.huffman_bits(stream), acc.fixed_length_bits(stream)
    _, counts = np.unique(stream, return_counts=True)
    p = counts / counts.sum()
    entropy_bits = -(counts * np.log2(p)).sum()
    assert entropy_bits <= huffman <= fixed
    assert huffman < entropy_bits + stream.size  # within one bit per symbol of the entropy
    if kind == "skewed":
        assert huffman < 0.8 * fixed


def test_huffman_lengths_satisfy_kraft_with_equality():
    rng = np.random.default_rng(3)
    counts = rng.integers(1, 1000, size=57)
    lengths = acc.huffman_code_lengths(counts)
    assert sum(2.0 ** -n for n in lengths) == pytest.approx(1.0)


def test_single_symbol_stream_costs_one_bit_per_entry():
    assert acc.huffman_bits(np.zeros(17)) == 17


def test_csr_beats_slimmed_for_random_mask_and_loses_for_group_mask():
    rng = np.random.default_rng(4)
    random_mask = rng.random((300, 784)) < 0.05
    counts = acc.counts_from_mask(random_mask)
    assert counts.slim == 300 * 784  # every row and column still has a weight
    assert acc.layer_storage(counts, 32)[1] == "csr"
    assert acc.layer_storage(counts, 32)[0] == 32 * (2 * random_mask.sum() + 301)

    group_mask = np.zeros((300, 784), dtype=bool)
    group_mask[np.ix_(rng.choice(300, 50, replace=False), rng.choice(784, 100, replace=False))] = True
    counts = acc.counts_from_mask(group_mask)
    assert (counts.slim, counts.nonzero) == (5000, 5000)
    assert acc.layer_storage(counts, 32) == (5000 * 32, "dense")


def test_counts_from_conv_mask_keep_whole_kernels():
    mask = np.zeros((50, 20, 5, 5), dtype=bool)
    mask[:10, :5] = True
    mask[12, 7, 2, 2] = True  # one stray weight keeps filter 12 and input channel 7
    counts = acc.counts_from_mask(mask)
    assert counts.slim == 11 * 6 * 25 and counts.nonzero == 10 * 5 * 25 + 1 and counts.rows == 50


def test_max_compression_picks_sparse_for_unstructured_and_dense_for_group_pruning():
    rng = np.random.default_rng(5)
    levels = np.array([-0.5, -0.25, 0.25, 0.5])
    values = np.where(rng.random((100, 200)) < 0.03, rng.choice(levels, size=(100, 200)), 0.0)
    layer = acc.EncodedLayer(values=values, slim_values=values, index_bits=5)
    bits, fmt = acc.layer_max_storage(layer)
    assert fmt == "sparse"
    nz = values[values != 0]
    codes, fillers = acc.relative_index_codes(values.ravel() != 0, 5)
    stored = np.concatenate([nz, np.zeros(fillers)])
    assert bits == acc.huffman_bits(codes) + acc.huffman_bits(stored) + 32 * len(np.unique(stored))

    grouped = np.zeros((100, 200))
    grouped[:10, :20] = rng.choice(levels, size=(10, 20))
    layer = acc.EncodedLayer(values=grouped, slim_values=grouped[:10, :20], index_bits=5)
    bits, fmt = acc.layer_max_storage(layer)
    assert fmt == "dense"
    assert bits == acc.huffman_bits(grouped[:10, :20]) + 4 * 32
    assert acc.compression_max([layer]) == pytest.approx(32 * 20_000 / bits)


def test_value_stream_falls_back_to_raw_floats_without_sharing():
    values = np.random.default_rng(6).standard_normal(1000)
    assert acc.value_stream_bits(values) == 32 * 1000
