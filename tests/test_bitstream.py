"""The compressed file (bcrepro.compress.bitstream) holds Deep Compression's format: it decodes to the pruned, quantised weights
bit for bit, and its size is the computed ``compression_max`` storage plus a stated overhead."""
import zlib

import numpy as np
import pytest

from bcrepro.compress import accounting as acc
from bcrepro.compress import bitstream as bs


# ---- helpers built from the tensors, independent of the module -------------------------------------------------------
def sparse_layer(shape, keep, values, seed, index_bits=5):
    """A tensor with a random ``keep`` fraction of entries drawn from ``values`` (0 excluded); all units kept."""
    rng = np.random.default_rng(seed)
    values = np.asarray(values, dtype=np.float32)
    w = (rng.choice(values[values != 0], size=shape) * (rng.random(shape) < keep)).astype(np.float32)
    return acc.EncodedLayer(w, w, index_bits), (np.ones(shape[0], bool), np.ones(shape[1], bool))


def group_pruned_layer(shape, kept_out, kept_in, values, seed, index_bits=5):
    """Whole output rows and input columns pruned; the kept block dense with some zeros inside."""
    rng = np.random.default_rng(seed)
    out_mask = np.zeros(shape[0], bool)
    out_mask[rng.choice(shape[0], kept_out, replace=False)] = True
    in_mask = np.zeros(shape[1], bool)
    in_mask[rng.choice(shape[1], kept_in, replace=False)] = True
    w = np.zeros(shape, np.float32)
    block = rng.choice(np.asarray(values, np.float32), size=(kept_out, kept_in, *shape[2:]))
    w[np.ix_(np.flatnonzero(out_mask), np.flatnonzero(in_mask))] = block
    return acc.EncodedLayer(w, block, index_bits), (out_mask, in_mask)


def grid(k):
    """k evenly spaced shared values on [-1, 1] (weight sharing with a k-entry codebook)."""
    return np.linspace(-1, 1, k)


def overhead_bound_bits(layer, units):
    """The module docstring's overhead: geometry, tables (w <= 6 bits per length), counts and, dense, unit masks."""
    fmt = acc.layer_max_storage(layer)[1]
    distinct = np.unique(layer.values).size  # at least the codebook of either stream
    bound = 24 + 32 * layer.values.ndim + 80 + 6 * distinct + 8  # + the bias flag (no biases stored)
    return bound + (sum(m.size for m in units) if fmt == "dense" else 72 + 6 * 2 ** layer.index_bits)


FILE_OVERHEAD_BITS = 32 + 8 + 32 + 7 + 32  # magic, version, layer count, padding, CRC


def computed_and_bound_bits(cases):
    """(sum of the computed ``layer_max_storage`` bits, the most the file may add to them)."""
    computed = sum(acc.layer_max_storage(layer)[0] for layer, _ in cases)
    return computed, FILE_OVERHEAD_BITS + sum(overhead_bound_bits(layer, units) for layer, units in cases)


def round_trip(cases):
    """Encode, decode, compare bit for bit (every zero as +0.0), and check the size against the computed bits."""
    layers, units = zip(*cases)
    data = bs.encode_layers(layers, units)
    decoded = bs.decode_layers(data)
    assert len(decoded) == len(layers)
    for layer, tensor in zip(layers, decoded):
        assert tensor.dtype == np.float32 and tensor.shape == layer.values.shape
        np.testing.assert_array_equal(tensor.view(np.uint32), (layer.values + np.float32(0)).view(np.uint32))
    computed, bound = computed_and_bound_bits(cases)
    assert computed <= 8 * len(data) <= computed + bound
    return data


# ---- round trips -----------------------------------------------------------------------------------------------------
ROUND_TRIPS = {
    "linear_sparse_16_values": lambda: sparse_layer((300, 784), 0.05, grid(16), 0),
    "conv_sparse_small_codebook": lambda: sparse_layer((50, 20, 5, 5), 0.05, grid(4), 1, index_bits=8),
    "linear_raw_floats": lambda: sparse_layer((100, 300), 0.1, np.random.default_rng(2).standard_normal(10**6), 2),
    "linear_dense_block": lambda: group_pruned_layer((300, 784), 60, 200, np.append(grid(16), 0), 3),
    "conv_dense_block": lambda: group_pruned_layer((50, 20, 5, 5), 10, 5, np.append(grid(8), 0), 4, index_bits=8),
    "dense_raw_floats": lambda: group_pruned_layer((100, 300), 40, 80,
                                                   np.random.default_rng(5).standard_normal(10**6), 5),
}


@pytest.mark.parametrize("name", sorted(ROUND_TRIPS))
def test_file_decodes_to_the_pruned_quantised_tensor(name):
    layer, units = ROUND_TRIPS[name]()
    fmt = acc.layer_max_storage(layer)[1]
    assert fmt == ("dense" if "dense" in name else "sparse")  # the case exercises the branch it is named after
    nonzero = layer.values[layer.values != 0]
    stream = layer.slim_values.ravel() if fmt == "dense" else \
        np.append(nonzero, np.zeros(acc.filler_count(layer.values != 0, layer.index_bits), np.float32))
    assert (acc.value_stream_bits(stream) == 32 * stream.size) == ("raw" in name)
    round_trip([(layer, units)])


def test_long_zero_runs_decode_through_fillers():
    w = np.zeros((300, 784), np.float32)
    flat = w.reshape(-1)
    flat[[0, 1, 40, 41 + 31, 41 + 31 + 32 + 1, 5000, 5000 + 64, 100_000, 235_199]] = [1, -1, 0.5, 2, 2, -1, 1, 3, 3]
    layer = acc.EncodedLayer(w, w, 5)
    assert acc.filler_count(w != 0, 5) > 100  # gaps of 32+ zeros need fillers, the last run needs thousands
    assert acc.layer_max_storage(layer)[1] == "sparse"
    round_trip([(layer, (np.ones(300, bool), np.ones(784, bool)))])


def test_all_zero_and_fully_pruned_layers_decode_to_zeros():
    zero = np.zeros((100, 300), np.float32)
    nothing_kept = acc.EncodedLayer(np.zeros((10, 100), np.float32), np.zeros((0, 0), np.float32), 5)
    assert acc.layer_max_storage(acc.EncodedLayer(zero, zero, 5)) == (0, "sparse")
    assert acc.layer_max_storage(nothing_kept) == (0, "dense")
    round_trip([(acc.EncodedLayer(zero, zero, 5), (np.ones(100, bool), np.ones(300, bool))),
                (nothing_kept, (np.zeros(10, bool), np.zeros(100, bool)))])


def test_negative_zero_decodes_as_zero():
    w = np.array([[-0.0, 0.5, 0.0], [0.5, -0.0, -0.5]], np.float32)
    data = round_trip([(acc.EncodedLayer(w, w, 5), (np.ones(2, bool), np.ones(3, bool)))])
    assert np.signbit(bs.decode_layers(data)[0]).sum() == 1  # only the -0.5


def test_biases_decode_exactly_and_cost_a_mask_bit_per_output_and_32_bits_per_nonzero():
    layer, units = group_pruned_layer((30, 40), 10, 12, np.append(grid(8), 0), 7)
    other, other_units = sparse_layer((10, 30), 0.3, grid(4), 8)
    bias = np.zeros(30, np.float32)
    bias[np.flatnonzero(units[0])] = np.linspace(-1.5, 2.5, 10, dtype=np.float32)  # pruned outputs: zero bias
    bias[np.flatnonzero(units[0])[3]] = 0.0  # a kept output may have a zero bias too
    without = bs.encode_layers([layer, other], [units, other_units])
    data = bs.encode_layers([layer, other], [units, other_units], biases=[bias, None])
    (w0, b0), (w1, b1) = bs.decode(data)
    np.testing.assert_array_equal(b0.view(np.uint32), bias.view(np.uint32))
    assert b1 is None
    np.testing.assert_array_equal(w0, layer.values)
    np.testing.assert_array_equal(w1, other.values)
    added_bits = 30 + 32 * 9  # the mask, then 9 nonzero float32
    assert 8 * len(data) - 8 * len(without) in range(added_bits - 7, added_bits + 8)  # up to the byte padding


def test_a_bias_of_the_wrong_length_or_not_finite_is_refused():
    layer, units = sparse_layer((5, 6), 0.5, grid(4), 9)
    with pytest.raises(ValueError, match="5 finite values"):
        bs.encode_layers([layer], [units], biases=[np.zeros(4)])
    with pytest.raises(ValueError, match="5 finite values"):
        bs.encode_layers([layer], [units], biases=[np.array([0, 1, np.nan, 0, 0])])


def test_version_1_files_without_biases_still_decode(monkeypatch):
    layer, units = sparse_layer((8, 9), 0.5, grid(4), 11)
    monkeypatch.setattr(bs, "VERSION", 1)
    monkeypatch.setattr(bs, "_write_bias", lambda writer, bias, n_out: None)  # version 1 had no bias section
    data = bs.encode_layers([layer], [units])
    monkeypatch.undo()
    assert data[4] == 1
    [(weight, bias)] = bs.decode(data)
    np.testing.assert_array_equal(weight, layer.values)
    assert bias is None


def test_mixed_network_in_one_file():
    cases = [sparse_layer((20, 1, 5, 5), 0.4, grid(16), 10, index_bits=8),
             group_pruned_layer((50, 20, 5, 5), 12, 8, np.append(grid(16), 0), 11, index_bits=8),
             sparse_layer((500, 800), 0.02, grid(32), 12), group_pruned_layer((10, 500), 10, 30, grid(16), 13)]
    round_trip(cases)


# ---- size on disk against the computed rate -------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["lenet300", "lenet5"])
def test_file_size_is_the_computed_storage_plus_bounded_overhead(arch):
    if arch == "lenet300":  # 5 % of the weights kept, 16 shared values
        cases = [sparse_layer(shape, 0.05, grid(16), seed) for seed, shape in enumerate([(300, 784), (100, 300),
                                                                                           (10, 100)])]
    else:  # group-pruned convolutions, unstructured fully connected layers
        cases = [group_pruned_layer((20, 1, 5, 5), 6, 1, grid(16), 0, 8),
                 group_pruned_layer((50, 20, 5, 5), 12, 6, np.append(grid(16), 0), 1, 8),
                 sparse_layer((500, 800), 0.02, grid(16), 2), sparse_layer((10, 500), 0.1, grid(16), 3)]
    assert {acc.layer_max_storage(layer)[1] for layer, _ in cases} == ({"sparse"} if arch == "lenet300"
                                                                         else {"sparse", "dense"})
    computed, bound = computed_and_bound_bits(cases)
    on_disk = 8 * len(bs.encode_layers(*zip(*cases)))
    assert computed <= on_disk <= computed + bound
    assert bound < 0.05 * computed  # the overhead is small beside the weights themselves


# ---- canonical Huffman -----------------------------------------------------------------------------------------------
def test_canonical_codes_of_the_rfc1951_example():
    # RFC 1951 §3.2.2: lengths (A, B, C, D) = (2, 1, 3, 3) give B = 0, A = 10, C = 110, D = 111
    assert bs.canonical_codes([2, 1, 3, 3]).tolist() == [0b10, 0b0, 0b110, 0b111]
    # absent symbols (length 0) get no code and do not shift the others
    assert bs.canonical_codes([0, 2, 0, 1, 3, 3]).tolist() == [0, 0b10, 0, 0b0, 0b110, 0b111]


def test_canonical_codes_refuse_lengths_of_no_prefix_code():
    with pytest.raises(ValueError, match="Kraft"):
        bs.canonical_codes([1, 1, 2])


def naive_decode(bitstring, lengths, codes):
    """Symbol by symbol with a dictionary of code strings."""
    table = {format(int(c), f"0{n}b"): s for s, (c, n) in enumerate(zip(codes, lengths)) if n}
    symbols, current = [], ""
    for bit in bitstring:
        current += bit
        if current in table:
            symbols.append(table[current])
            current = ""
    assert current == ""
    return symbols


@pytest.mark.parametrize("n_symbols", [1, 2, 7, 40])
def test_huffman_stream_decodes_and_costs_the_accounted_bits(n_symbols):
    rng = np.random.default_rng(n_symbols)
    stream = rng.choice(n_symbols, size=3000, p=rng.dirichlet(np.full(n_symbols, 0.3)))
    present, stream = np.unique(stream, return_inverse=True)  # symbols 0 .. distinct - 1, every one used
    lengths = np.asarray(acc.huffman_code_lengths(np.bincount(stream)))
    codes = bs.canonical_codes(lengths)
    writer = bs.BitWriter()
    writer.codes(codes[stream], lengths[stream])
    assert writer.n_bits == acc.huffman_bits(stream)
    bits = np.unpackbits(np.frombuffer(writer.getvalue(), np.uint8))[:writer.n_bits]
    decoded, used = bs.canonical_decode(bits, lengths, stream.size)
    assert used == writer.n_bits
    np.testing.assert_array_equal(decoded, stream)
    assert naive_decode("".join(map(str, bits)), lengths, codes) == stream.tolist()


def test_bit_writer_packs_fields_most_significant_bit_first():
    writer = bs.BitWriter()
    writer.uint(0b101, 3)
    writer.uints([1, 0, 255], 8)
    writer.codes([0b0, 0b110], [1, 3])
    expected = "101" + "00000001" + "00000000" + "11111111" + "0" + "110"
    expected += "0" * (-len(expected) % 8)
    assert writer.getvalue() == int(expected, 2).to_bytes(len(expected) // 8, "big")
    reader = bs.BitReader(writer.getvalue())
    assert reader.uint(3, "a") == 0b101 and reader.uints(3, 8, "b").tolist() == [1, 0, 255]
    with pytest.raises(ValueError, match="does not fit"):
        writer.uint(8, 3)


# ---- damaged files ---------------------------------------------------------------------------------------------------
@pytest.fixture
def good_file():
    return bs.encode_layers(*zip(sparse_layer((100, 300), 0.05, grid(16), 0),
                                 group_pruned_layer((10, 100), 5, 20, grid(8), 1)))


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[:-5], "truncated or corrupted"),
    (lambda d: d[:len(d) // 2], "truncated or corrupted"),
    (lambda d: d[:40] + bytes([d[40] ^ 0x10]) + d[41:], "truncated or corrupted"),
    (lambda d: d + b"\x00", "truncated or corrupted"),
    (lambda d: b"PK\x03\x04" + d[4:], "not a bcrepro compressed file"),
    (lambda d: b"", "not a bcrepro compressed file"),
    (lambda d: d[:6], "truncated or corrupted"),
])
def test_damaged_file_is_a_clear_error(good_file, damage, message):
    bs.decode_layers(good_file)  # the undamaged file reads
    with pytest.raises(ValueError, match=message):
        bs.decode_layers(damage(good_file))


def test_damage_behind_a_valid_checksum_is_still_caught(good_file):
    # a body that passes the CRC but ends early: the reader names the field it could not read
    body = good_file[:-4][:30]
    with pytest.raises(ValueError, match="truncated file: layer 0"):
        bs.decode_layers(body + zlib.crc32(body).to_bytes(4, "big"))


def test_inconsistent_slimmed_block_is_refused():
    layer, (out_mask, in_mask) = group_pruned_layer((10, 100), 5, 20, grid(8), 1)
    out_mask = np.roll(out_mask, 1)
    with pytest.raises(ValueError, match="does not reproduce"):
        bs.encode_layers([layer], [(out_mask, in_mask)])
