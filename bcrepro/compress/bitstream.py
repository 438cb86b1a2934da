"""Deep Compression's storage format as real bytes: ``encode_layers`` writes the pruned, quantised weights of a network
in exactly the representation that ``accounting.layer_max_storage`` counts, ``decode_layers`` reads them back.

The weights as the accounting counts them, then each layer's biases (which the rates do not count, as the paper), so
that the file alone rebuilds the network (``bcrepro.deploy.artefact``). numpy only, no torch: arrays in, arrays out.

The file is one MSB-first bit stream, zero-padded to a whole byte, then a CRC-32 of those bytes. Field widths in bits:

    magic "BCDC" (32) | version (8) | layers (32) | layer ... | bias ... | padding (0-7) | crc32 (32)
    layer:   ndim (8) | shape (32 each) | format (8: 0 sparse, 1 dense) | index_bits p (8) | dense or sparse part
    dense:   out mask (shape[0]) | in mask (shape[1]) | value stream of the kept_out x kept_in x k^2 block
    sparse:  entries n (32) | [n > 0: Huffman table over 0 .. 2^p - 1 | its payload] | value stream of the n entries
    values:  mode (8: 0 raw, 1 Huffman) | raw: n float32 | Huffman: codebook size k (32) | k float32 | Huffman table
             over the codebook | its payload
    Huffman table: w (8) | one code length per symbol, w bits each (0 = symbol absent) | payload length (32)
    bias:    present (8: 0 none, 1) | [1: nonzero mask (shape[0]) | float32 of each nonzero bias]

The sparse part is the module docstring's convention of ``accounting``: the tensor flattened row-major, one
relative index code per stored entry (fillers included), the entry's value at position ``cumsum(code + 1) - 1``. The
value stream is raw float32 exactly when ``accounting.value_stream_bits`` finds raw no dearer (no weight sharing),
else a canonical Huffman code (RFC 1951 §3.2.2) of indices into a float32 codebook. Canonical codes are fixed by
their code lengths, so a table stores only those, ``w = bit length of the longest code`` bits each.

Bits on disk = the computed ``sum_l layer_max_storage(l)`` (both Huffman payloads, the codebooks or raw values)
+ overhead that the computed rate does not count: the file's 111 bits (magic, version, layer count, padding, CRC), the
biases (per layer 8 bits, and with biases ``shape[0]`` + 32 per nonzero bias) and per layer at most ``24 + 32 ndim`` (geometry) + ``80 + k w`` (value stream header and table, ``k`` codebook entries)
+ for a sparse layer ``72 + 2^p w`` (entry count, index table) or for a dense layer ``out + in`` (the unit masks that
place the slimmed block back, which the rate counts as architecture, not as storage). Huffman codes of fewer than 2^32
entries are shorter than 64 bits, so ``w <= 6``. Every zero decodes as +0.0 (a -0.0 that rounding left in the weights
compares equal to it).
"""
from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np

from . import accounting
from .accounting import FLOAT_BITS, EncodedLayer

MAGIC = b"BCDC"
VERSION = 2  # 1: no bias section (still read)
FORMATS = ("sparse", "dense")  # the names accounting.layer_max_storage returns, coded by position
RAW, HUFFMAN = 0, 1  # value stream modes
BYTE_BITS = 8  # small fields: ndim, format, index bits, value mode, code-length width
COUNT_BITS = 32  # shape dimensions, entry and symbol counts, payload lengths, the CRC
MAX_INDEX_BITS = 16  # the index table stores 2^p code lengths
MAX_CODE_LENGTH = 62  # canonical codes are computed in int64


# ---- bits -----------------------------------------------------------------------------------------------------------
class BitWriter:
    """Bits appended most significant first; ``getvalue`` packs them into bytes, zero-padding the last one."""

    def __init__(self):
        self._chunks: list[np.ndarray] = []  # uint8 arrays of 0/1

    @property
    def n_bits(self) -> int:
        return sum(chunk.size for chunk in self._chunks)

    def uints(self, values, width: int) -> None:
        """Unsigned integers, ``width`` bits each (1..63)."""
        values = np.asarray(values, dtype=np.uint64).ravel()
        if not 0 < width < 64:
            raise ValueError(f"field width must be 1..63 bits, got {width}")
        if values.size and int(values.max()) >> width:
            raise ValueError(f"value {int(values.max())} does not fit in a {width}-bit field")
        bits = np.unpackbits(values.astype(">u8").view(np.uint8).reshape(-1, 8), axis=1)  # [n, 64]
        self._chunks.append(bits[:, 64 - width:].ravel())

    def uint(self, value: int, width: int) -> None:
        self.uints([value], width)

    def floats(self, values) -> None:
        """float32 bit patterns, 32 bits each."""
        self.uints(np.asarray(values, dtype=np.float32).ravel().view(np.uint32), FLOAT_BITS)

    def codes(self, codes, lengths) -> None:
        """Variable-length codes (a Huffman payload): ``codes[i]`` in its low ``lengths[i]`` bits."""
        codes = np.asarray(codes, dtype=np.uint64).ravel()
        lengths = np.asarray(lengths, dtype=np.int64).ravel()
        if not codes.size:
            return
        n_bytes = -(-int(lengths.max()) // 8)
        aligned = codes << (8 * n_bytes - lengths).astype(np.uint64)  # each code at the top of n_bytes bytes
        big_endian = aligned.astype(">u8").view(np.uint8).reshape(-1, 8)[:, 8 - n_bytes:]
        bits = np.unpackbits(big_endian, axis=1)  # [n, 8 n_bytes]
        self._chunks.append(bits[np.arange(8 * n_bytes) < lengths[:, None]])

    def getvalue(self) -> bytes:
        return np.packbits(np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.uint8)).tobytes()


class BitReader:
    """Reads what ``BitWriter`` wrote; running past the end is a ValueError naming the field."""

    def __init__(self, data: bytes):
        self._bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
        self.position = 0

    @property
    def remaining(self) -> int:
        return self._bits.size - self.position

    def take(self, n: int, what: str) -> np.ndarray:
        """The next ``n`` bits (uint8 0/1)."""
        if n > self.remaining:
            raise ValueError(f"truncated file: {what} needs {n} bits at bit {self.position}, {self.remaining} left")
        bits = self._bits[self.position:self.position + n]
        self.position += n
        return bits

    def uints(self, n: int, width: int, what: str) -> np.ndarray:
        bits = self.take(n * width, what).reshape(n, width)
        padded = np.zeros((n, 64), dtype=np.uint8)
        padded[:, 64 - width:] = bits
        return np.packbits(padded, axis=1).view(">u8").ravel().astype(np.uint64)

    def uint(self, width: int, what: str) -> int:
        return int(self.uints(1, width, what)[0])

    def floats(self, n: int, what: str) -> np.ndarray:
        return self.uints(n, FLOAT_BITS, what).astype(np.uint32).view(np.float32)


# ---- canonical Huffman ----------------------------------------------------------------------------------------------
def canonical_codes(lengths) -> np.ndarray:
    """The canonical prefix code with these code lengths (0 = symbol absent), RFC 1951 §3.2.2: shorter codes first,
    equal lengths in symbol order, each code the previous one plus one, shifted left by the length increase.

    Equivalently ``code_i = K_i 2^(L_i)`` with ``K_i`` the Kraft sum ``sum 2^-L_j`` of the codes before it; a Kraft sum
    over 1 (no prefix code has these lengths) is a ValueError.  # uint64 [symbols]
    """
    lengths = np.asarray(lengths, dtype=np.int64).ravel()
    codes = np.zeros(lengths.size, dtype=np.uint64)
    present = np.flatnonzero(lengths)
    if not present.size:
        return codes
    longest = int(lengths.max())
    if lengths.min() < 0 or longest > MAX_CODE_LENGTH:
        raise ValueError(f"code lengths must be 0..{MAX_CODE_LENGTH}, got {lengths.min()}..{longest}")
    order = present[np.argsort(lengths[present], kind="stable")]
    kraft = np.left_shift(1, longest - lengths[order])  # 2^-L in units of 2^-longest
    before = np.cumsum(kraft) - kraft
    if int(before[-1] + kraft[-1]) > 1 << longest:
        raise ValueError(f"code lengths {lengths[present].tolist()} violate Kraft's inequality: not a prefix code")
    codes[order] = (before >> (longest - lengths[order])).astype(np.uint64)
    return codes


def canonical_decode(bits: np.ndarray, lengths, n: int) -> tuple[np.ndarray, int]:
    """The first ``n`` symbols of the canonical Huffman stream ``bits`` (uint8 0/1) and the bits they took.

    Vectorised over bit positions: the symbol a code starting at each position would give, then a walk from position
    0 along the code lengths.
    """
    lengths = np.asarray(lengths, dtype=np.int64).ravel()
    codes = canonical_codes(lengths)
    if n == 0:
        return np.zeros(0, dtype=np.int64), 0
    if not lengths.any():
        raise ValueError(f"a Huffman stream of {n} symbols needs at least one code, the table has none")
    longest = int(lengths.max())
    size = bits.size
    padded = np.concatenate([bits, np.zeros(longest, dtype=np.uint8)]).astype(np.int64)
    window = np.zeros(size, dtype=np.int64)  # the next `longest` bits at every position
    for k in range(longest):
        window = (window << 1) | padded[k:k + size]
    length_at = np.zeros(size, dtype=np.int64)
    symbol_at = np.zeros(size, dtype=np.int64)
    for length in np.unique(lengths[lengths > 0]):
        symbols = np.flatnonzero(lengths == length)  # their codes are consecutive, in symbol order
        relative = (window >> (longest - length)) - int(codes[symbols[0]])
        hit = (relative >= 0) & (relative < symbols.size)  # prefix-free: at most one length hits
        length_at[hit] = length
        symbol_at[hit] = symbols[relative[hit]]
    steps = length_at.tolist()
    starts, position = [], 0
    for _ in range(n):
        if position >= size or steps[position] == 0:
            raise ValueError(f"corrupt Huffman stream: no code at bit {position} of {size} after {len(starts)} of "
                             f"{n} symbols")
        starts.append(position)
        position += steps[position]
    if position > size:
        raise ValueError(f"corrupt Huffman stream: the last code runs past its {size} bits")
    return symbol_at[starts], position


def _write_huffman(writer: BitWriter, lengths: np.ndarray, symbols: np.ndarray) -> None:
    """Table (code lengths) and payload of a Huffman-coded stream of symbol indices."""
    width = int(lengths.max()).bit_length()
    writer.uint(width, BYTE_BITS)
    writer.uints(lengths, width)
    codes = canonical_codes(lengths)
    writer.uint(int(lengths[symbols].sum()), COUNT_BITS)
    writer.codes(codes[symbols], lengths[symbols])


def _read_huffman(reader: BitReader, n_symbols: int, n: int, what: str) -> np.ndarray:
    width = reader.uint(BYTE_BITS, f"{what} code-length width")
    if not 0 < width <= MAX_CODE_LENGTH.bit_length():
        raise ValueError(f"corrupt file: {what} code-length width {width} outside 1..{MAX_CODE_LENGTH.bit_length()}")
    lengths = reader.uints(n_symbols, width, f"{what} code lengths").astype(np.int64)
    n_bits = reader.uint(COUNT_BITS, f"{what} payload length")
    symbols, used = canonical_decode(reader.take(n_bits, f"{what} payload"), lengths, n)
    if used != n_bits:
        raise ValueError(f"corrupt file: {what} decoded {n} symbols from {used} bits, the header says {n_bits}")
    return symbols


def _huffman_lengths(counts: np.ndarray) -> np.ndarray:
    return np.asarray(accounting.huffman_code_lengths(counts), dtype=np.int64)


# ---- streams --------------------------------------------------------------------------------------------------------
def _write_values(writer: BitWriter, values: np.ndarray) -> None:
    """The value stream as ``accounting.value_stream_bits`` counts it: raw float32 when that is cheaper (ties too)."""
    if accounting.value_stream_bits(values) == FLOAT_BITS * values.size:
        writer.uint(RAW, BYTE_BITS)
        writer.floats(values)
        return
    codebook, symbols, counts = np.unique(values, return_inverse=True, return_counts=True)
    writer.uint(HUFFMAN, BYTE_BITS)
    writer.uint(codebook.size, COUNT_BITS)
    writer.floats(codebook)
    _write_huffman(writer, _huffman_lengths(counts), symbols.ravel())


def _read_values(reader: BitReader, n: int, what: str) -> np.ndarray:
    mode = reader.uint(BYTE_BITS, f"{what} value mode")
    if mode == RAW:
        return reader.floats(n, f"{what} raw values")
    if mode != HUFFMAN:
        raise ValueError(f"corrupt file: {what} value mode {mode}, expected {RAW} (raw) or {HUFFMAN} (Huffman)")
    size = reader.uint(COUNT_BITS, f"{what} codebook size")
    codebook = reader.floats(size, f"{what} codebook")
    return codebook[_read_huffman(reader, size, n, f"{what} values")]


def _write_sparse(writer: BitWriter, flat: np.ndarray, index_bits: int) -> None:
    codes, _ = accounting.relative_index_codes(flat != 0, index_bits)
    writer.uint(codes.size, COUNT_BITS)
    if codes.size:
        present, symbols, counts = np.unique(codes, return_inverse=True, return_counts=True)
        lengths = np.zeros(1 << index_bits, dtype=np.int64)  # over the whole alphabet 0 .. 2^p - 1
        lengths[present] = _huffman_lengths(counts)
        _write_huffman(writer, lengths, codes)
    _write_values(writer, flat[np.cumsum(codes + 1) - 1])  # fillers read a zero of the tensor


def _read_sparse(reader: BitReader, shape: tuple[int, ...], index_bits: int, what: str) -> np.ndarray:
    n = reader.uint(COUNT_BITS, f"{what} entry count")
    codes = _read_huffman(reader, 1 << index_bits, n, f"{what} indices") if n else np.zeros(0, np.int64)
    positions = np.cumsum(codes + 1) - 1
    flat = np.zeros(int(np.prod(shape)), dtype=np.float32)
    if n and positions[-1] >= flat.size:
        raise ValueError(f"corrupt file: {what} indices reach position {positions[-1]} of a {flat.size}-weight tensor")
    flat[positions] = _read_values(reader, n, what)
    return flat.reshape(shape)


def _write_dense(writer: BitWriter, slim_values: np.ndarray, out_mask: np.ndarray, in_mask: np.ndarray) -> None:
    writer.uints(out_mask, 1)
    writer.uints(in_mask, 1)
    _write_values(writer, slim_values.ravel())


def _read_dense(reader: BitReader, shape: tuple[int, ...], what: str) -> np.ndarray:
    out_index = np.flatnonzero(reader.take(shape[0], f"{what} output mask"))
    in_index = np.flatnonzero(reader.take(shape[1], f"{what} input mask"))
    block_shape = (out_index.size, in_index.size, *shape[2:])
    block = _read_values(reader, int(np.prod(block_shape)), what).reshape(block_shape)
    full = np.zeros(shape, dtype=np.float32)
    full[np.ix_(out_index, in_index)] = block
    return full


# ---- layers and files -----------------------------------------------------------------------------------------------
def _checked_layer(layer: EncodedLayer, units) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(values, slim values, out mask, in mask) as float32 with +0.0 zeros and bool, after checking they agree."""
    values = np.asarray(layer.values, dtype=np.float32) + np.float32(0)  # -0.0 + 0.0 = +0.0
    slim = np.asarray(layer.slim_values, dtype=np.float32) + np.float32(0)
    out_mask, in_mask = (np.asarray(mask, dtype=bool).ravel() for mask in units)
    if values.ndim < 2:
        raise ValueError(f"a layer's values must be [out, in] or [out, in, kh, kw], got shape {values.shape}")
    if np.isnan(values).any():
        raise ValueError("a layer's values contain NaN; only finite weights can be stored")
    if not 1 <= layer.index_bits <= MAX_INDEX_BITS:
        raise ValueError(f"index_bits must be 1..{MAX_INDEX_BITS}, got {layer.index_bits}")
    if (out_mask.size, in_mask.size) != values.shape[:2]:
        raise ValueError(f"unit masks of sizes ({out_mask.size}, {in_mask.size}) do not match a layer of shape "
                         f"{values.shape}; pass (out_mask, in_mask) over the layer's outputs and inputs")
    block_shape = (int(out_mask.sum()), int(in_mask.sum()), *values.shape[2:])
    placed = np.zeros_like(values)
    if slim.shape == block_shape:
        placed[np.ix_(np.flatnonzero(out_mask), np.flatnonzero(in_mask))] = slim
    if slim.shape != block_shape or not np.array_equal(placed, values):
        raise ValueError(f"the slimmed block {slim.shape} placed at the kept units {block_shape[:2]} does not "
                         f"reproduce the layer's values {values.shape}; build slim_values from the same masks")
    return values, slim, out_mask, in_mask


def encode_layers(layers: Sequence[EncodedLayer], units: Sequence[tuple[np.ndarray, np.ndarray]],
                  biases: Sequence[np.ndarray | None] | None = None) -> bytes:
    """The file (module docstring) of these layers, each in the format ``accounting.layer_max_storage`` chooses.

    ``units[l] = (out_mask, in_mask)``: boolean, which outputs and inputs of layer ``l`` its slimmed block keeps.
    ``biases[l]``: layer ``l``'s bias over its ``shape[0]`` outputs, or None (none stored; default for every layer).
    """
    if len(layers) != len(units):
        raise ValueError(f"need one (out_mask, in_mask) pair per layer: got {len(units)} for {len(layers)} layers")
    biases = [None] * len(layers) if biases is None else list(biases)
    if len(biases) != len(layers):
        raise ValueError(f"need one bias (or None) per layer: got {len(biases)} for {len(layers)} layers")
    writer = BitWriter()
    writer.uints(np.frombuffer(MAGIC, dtype=np.uint8), 8)
    writer.uint(VERSION, BYTE_BITS)
    writer.uint(len(layers), COUNT_BITS)
    for layer, layer_units in zip(layers, units):
        values, slim, out_mask, in_mask = _checked_layer(layer, layer_units)
        _, chosen = accounting.layer_max_storage(EncodedLayer(values, slim, layer.index_bits))
        writer.uint(values.ndim, BYTE_BITS)
        writer.uints(values.shape, COUNT_BITS)
        writer.uint(FORMATS.index(chosen), BYTE_BITS)
        writer.uint(layer.index_bits, BYTE_BITS)
        if chosen == "dense":
            _write_dense(writer, slim, out_mask, in_mask)
        else:
            _write_sparse(writer, values.ravel(), layer.index_bits)
    for layer, bias in zip(layers, biases):
        _write_bias(writer, bias, np.shape(layer.values)[0])
    body = writer.getvalue()
    return body + zlib.crc32(body).to_bytes(COUNT_BITS // 8, "big")


def _write_bias(writer: BitWriter, bias, n_out: int) -> None:
    if bias is None:
        writer.uint(0, BYTE_BITS)
        return
    bias = np.asarray(bias, dtype=np.float32).ravel() + np.float32(0)
    if bias.size != n_out or not np.isfinite(bias).all():
        raise ValueError(f"a bias must hold {n_out} finite values (one per output), got {bias.size}")
    writer.uint(1, BYTE_BITS)
    nonzero = bias != 0
    writer.uints(nonzero, 1)
    writer.floats(bias[nonzero])


def _read_bias(reader: BitReader, n_out: int, what: str) -> np.ndarray | None:
    present = reader.uint(BYTE_BITS, f"{what} bias flag")
    if present not in (0, 1):
        raise ValueError(f"corrupt file: {what} has bias flag {present}, expected 0 or 1")
    if not present:
        return None
    nonzero = reader.take(n_out, f"{what} bias mask").astype(bool)
    bias = np.zeros(n_out, np.float32)
    bias[nonzero] = reader.floats(int(nonzero.sum()), f"{what} biases")
    return bias


def decode_layers(data: bytes) -> list[np.ndarray]:
    """The float32 weight tensors, in their original shapes, of a file written by ``encode_layers``."""
    return [weight for weight, _ in decode(data)]


def decode(data: bytes) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(weight, bias) per layer of a file written by ``encode_layers``: float32, in their original shapes; the bias
    is None where none was stored (and in version-1 files, which have no biases)."""
    data = bytes(data)
    if data[:len(MAGIC)] != MAGIC:
        raise ValueError(f"not a bcrepro compressed file: expected magic {MAGIC!r}, found {data[:len(MAGIC)]!r}")
    body, crc = data[:-COUNT_BITS // 8], data[-COUNT_BITS // 8:]
    if len(data) < len(MAGIC) + COUNT_BITS // 8 or zlib.crc32(body).to_bytes(COUNT_BITS // 8, "big") != crc:
        raise ValueError(f"checksum mismatch: the {len(data)}-byte file is truncated or corrupted; rewrite it with "
                         f"`bcrepro compress`")
    reader = BitReader(body)
    reader.take(8 * len(MAGIC), "magic")
    version = reader.uint(BYTE_BITS, "version")
    if version not in (1, VERSION):
        raise ValueError(f"file format version {version}, this bcrepro reads versions 1 to {VERSION}")
    tensors = []
    for l in range(reader.uint(COUNT_BITS, "layer count")):
        what = f"layer {l}"
        ndim = reader.uint(BYTE_BITS, f"{what} ndim")
        if ndim < 2:
            raise ValueError(f"corrupt file: {what} has {ndim} dimensions, expected at least 2")
        shape = tuple(int(s) for s in reader.uints(ndim, COUNT_BITS, f"{what} shape"))
        chosen = reader.uint(BYTE_BITS, f"{what} format")
        index_bits = reader.uint(BYTE_BITS, f"{what} index bits")
        if chosen >= len(FORMATS) or not 1 <= index_bits <= MAX_INDEX_BITS:
            raise ValueError(f"corrupt file: {what} has format {chosen} and index bits {index_bits}, expected "
                             f"0..{len(FORMATS) - 1} and 1..{MAX_INDEX_BITS}")
        if FORMATS[chosen] == "dense":
            tensors.append(_read_dense(reader, shape, what))
        else:
            tensors.append(_read_sparse(reader, shape, index_bits, what))
    biases = [None if version == 1 else _read_bias(reader, tensor.shape[0], f"layer {l}")
              for l, tensor in enumerate(tensors)]
    left = reader.remaining
    if left >= 8 or reader.take(left, "padding").any():
        raise ValueError(f"corrupt file: {left} bits left after the last layer, expected at most 7 zero bits")
    return list(zip(tensors, biases))
