"""Compression accounting: how many bits a pruned (and quantised) model takes to store. Pure arithmetic on numbers.

Nothing here knows about torch models; ``bcrepro.compress.masks`` turns a network into the numbers and arrays below. The
rules are in ``docs/method.md`` (step 5 of "From posterior to compressed network") and ``docs/baselines.md`` §2.4,
and the published arithmetic they must reproduce is tested in ``tests/test_accounting.py``. Weights only: biases are reported separately, as the authors do; the uncompressed model is
32-bit.

Three rates:

- ``compression_pruning``: 32-bit original over 32-bit pruned model, each layer stored the cheaper way: a dense slimmed
  matrix (pruned rows/columns removed: ``kept_out x kept_in x k^2`` numbers) or CSR (value + column index per non-zero,
  plus ``rows + 1`` row pointers; every number 32-bit).
- ``compression_precision``: the same layout with each layer's values at ``b_l`` bits (indices, pointers stay 32-bit).
- ``compression_max``: Deep Compression's storage (relative indices with fillers, quantised values, Huffman coding of
  both streams, a codebook), per layer the cheaper of that and a Huffman-coded slimmed dense matrix.

Conventions of ``compression_max`` (Han et al. 2016 §2-4 and their ``decode.py``; see ``docs/baselines.md`` §2.4):

- The layer's weight tensor is flattened row-major in its original shape (``[out, in]`` or ``[out, in, kh, kw]``), so no
  row pointers are stored: positions decode as ``cumsum(code + 1) - 1``.
- An entry's index code is the number of zeros skipped since the previous stored entry (the first entry counts from
  position -1), ``0 .. 2^p - 1`` with ``p = index_bits``. A longer run of ``d`` zeros is bridged by ``floor(d / 2^p)``
  filler entries, each with code ``2^p - 1`` and value 0 (a filler skips ``2^p - 1`` zeros and is itself a stored zero),
  then the entry with code ``d mod 2^p``. Trailing zeros after the last non-zero cost nothing.
- Values are symbols (the distinct quantised values, fillers adding the symbol 0). The value stream costs the Huffman
  code of its symbols plus a codebook of 32 bits per distinct symbol, or 32 bits per entry when that is cheaper (float
  weights with no sharing). The index stream costs its Huffman code; the Huffman tables themselves are not counted
  (canonical codes need only the code lengths; DC does not count them either).
- The slimmed dense alternative stores the ``kept_out x kept_in x k^2`` block (zeros inside it included) as one value
  stream, no indices. Which units are kept is part of the architecture and not counted, as in the authors' rates.
- Huffman code lengths are real ones, built with a heap from the symbol counts; a stream of one distinct symbol costs
  one bit per entry.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

FLOAT_BITS = 32  # the uncompressed model, and every index, pointer and codebook entry
DEFAULT_INDEX_BITS = {"linear": 5, "conv": 8}  # Deep Compression's relative-index widths (docs/baselines.md §2.2)


# ---- pruning and precision: dense slimmed matrix or CSR, whichever is cheaper ----------------------------------------
@dataclass(frozen=True)
class LayerCounts:
    """What the storage of one pruned layer depends on.

    ``total``: weights of the original layer; ``nonzero``: weights left after pruning; ``slim``: numbers in the dense
    slimmed matrix (``kept_out * kept_in * k^2``); ``rows``: rows of the original matrix (output units), which sets
    CSR's ``rows + 1`` row pointers.
    """

    total: int
    nonzero: int
    slim: int
    rows: int


def slim_size(kept_out: int, kept_in: int, kernel_area: int = 1) -> int:
    """Numbers in a dense slimmed layer: ``kept_out * kept_in * k^2`` (docs/method.md layer counting)."""
    return int(kept_out) * int(kept_in) * int(kernel_area)


def dense_bits(slim: int, value_bits: float) -> float:
    """A dense slimmed matrix: every kept entry at ``value_bits``."""
    return slim * value_bits


def csr_bits(nonzero: int, rows: int, value_bits: float, index_bits: int = FLOAT_BITS) -> float:
    """CSR: value + column index per non-zero, plus ``rows + 1`` row pointers (Han et al.: ``2a + n + 1`` numbers)."""
    return nonzero * (value_bits + index_bits) + (rows + 1) * index_bits


def layer_storage(counts: LayerCounts, value_bits: float) -> tuple[float, str]:
    """Bits of the cheaper of the two layouts, and which one: ``("dense" | "csr")``."""
    dense = dense_bits(counts.slim, value_bits)
    sparse = csr_bits(counts.nonzero, counts.rows, value_bits)
    return (dense, "dense") if dense <= sparse else (sparse, "csr")


def counts_from_mask(mask: np.ndarray) -> LayerCounts:
    """``LayerCounts`` of a boolean weight mask ``[out, in]`` or ``[out, in, kh, kw]`` (True = kept).

    The slimmed matrix keeps every output row and input column (channel) that still holds a kept weight.
    """
    mask = np.asarray(mask, dtype=bool)
    kernel_area = int(np.prod(mask.shape[2:])) if mask.ndim > 2 else 1
    per_pair = mask.reshape(mask.shape[0], mask.shape[1], -1).any(axis=2)  # [out, in]
    kept_out = int(per_pair.any(axis=1).sum())
    kept_in = int(per_pair.any(axis=0).sum())
    return LayerCounts(total=mask.size, nonzero=int(mask.sum()), slim=slim_size(kept_out, kept_in, kernel_area),
                       rows=mask.shape[0])


def _ratio(original_bits: float, stored_bits: float) -> float:
    return math.inf if stored_bits == 0 else original_bits / stored_bits


def finite_or_none(rate: float | None) -> float | None:
    """A rate as metrics.json holds it: None (null) where it is infinite, a model pruned to nothing."""
    return None if rate is None or not math.isfinite(rate) else float(rate)


def compression_pruning(layers: Sequence[LayerCounts]) -> float:
    """32|W| / sum_l min(dense_l, csr_l) at 32 bits (the table's "after pruning"; docs/method.md)."""
    original = FLOAT_BITS * sum(c.total for c in layers)
    return _ratio(original, sum(layer_storage(c, FLOAT_BITS)[0] for c in layers))


def compression_precision(layers: Sequence[LayerCounts], bits: Sequence[float],
                          codebook_entries: Sequence[int] | None = None) -> float:
    """32|W| / sum_l min(dense_l, csr_l) with values at ``b_l`` bits ("after precision reduction").

    With ``codebook_entries`` (weight sharing: ``b_l`` is the index width), each layer also stores its codebook, 32
    bits per entry (docs/baselines.md §2.4), unless it keeps no weight at all: nothing indexes that codebook. So a network
    pruned to nothing costs nothing under every rate (``inf``), instead of a rate made of codebooks alone.
    """
    if len(bits) != len(layers):
        raise ValueError(f"need one bit width per layer: got {len(bits)} bit widths for {len(layers)} layers")
    if codebook_entries is not None and len(codebook_entries) != len(layers):
        raise ValueError(f"need one codebook size per layer: got {len(codebook_entries)} for {len(layers)} layers")
    codebooks = 0 if codebook_entries is None else FLOAT_BITS * sum(
        entries for entries, counts in zip(codebook_entries, layers) if counts.nonzero > 0)
    original = FLOAT_BITS * sum(c.total for c in layers)
    return _ratio(original, sum(layer_storage(c, b)[0] for c, b in zip(layers, bits)) + codebooks)


# ---- Huffman --------------------------------------------------------------------------------------------------------
def huffman_code_lengths(counts: Sequence[int]) -> list[int]:
    """Code length of each symbol in a Huffman code for these symbol counts (Huffman 1952), built with a heap.

    One symbol gets length 1 (a stream still needs one bit per entry); zero counts are not allowed.
    """
    counts = [int(c) for c in counts]
    if any(c <= 0 for c in counts):
        raise ValueError(f"Huffman counts must be positive, got {counts}")
    if len(counts) <= 1:
        return [1] * len(counts)
    parent = [-1] * len(counts)
    heap = [(c, node) for node, c in enumerate(counts)]
    heapq.heapify(heap)
    while len(heap) > 1:
        weight_a, node_a = heapq.heappop(heap)
        weight_b, node_b = heapq.heappop(heap)
        merged = len(parent)
        parent.append(-1)
        parent[node_a] = parent[node_b] = merged
        heapq.heappush(heap, (weight_a + weight_b, merged))
    depth = [0] * len(parent)
    for node in range(len(parent) - 2, -1, -1):  # parents are created after their children
        depth[node] = depth[parent[node]] + 1
    return depth[:len(counts)]


def huffman_bits_from_counts(counts: Sequence[int]) -> int:
    """sum_s count_s * length_s for the Huffman code of these counts."""
    counts = [int(c) for c in counts if c > 0]
    return sum(c * n for c, n in zip(counts, huffman_code_lengths(counts)))


def huffman_bits(symbols: np.ndarray | Iterable) -> int:
    """Bits of the Huffman-coded stream ``symbols`` (any hashable values; numpy arrays counted with ``np.unique``)."""
    _, counts = np.unique(np.asarray(symbols).ravel(), return_counts=True)
    return huffman_bits_from_counts(counts)


def fixed_length_bits(symbols: np.ndarray | Iterable) -> int:
    """Bits of the same stream with a fixed-length code: ``n * ceil(log2(#distinct))`` (at least one bit per entry)."""
    symbols = np.asarray(symbols).ravel()
    distinct = len(np.unique(symbols))
    return symbols.size * max(1, math.ceil(math.log2(distinct))) if symbols.size else 0


# ---- Deep Compression storage ---------------------------------------------------------------------------------------
def relative_index_codes(flat_nonzero: np.ndarray, index_bits: int) -> tuple[np.ndarray, int]:
    """Relative index codes of the stored entries and the number of fillers among them (module docstring convention).

    ``flat_nonzero``: boolean, True where the flattened tensor holds a non-zero. Returns ``(codes, n_fillers)`` with
    ``codes`` the index stream in storage order (fillers included, code ``2^p - 1``).
    """
    positions = np.flatnonzero(np.asarray(flat_nonzero).ravel())
    span = 1 << index_bits
    gaps = np.diff(np.concatenate(([-1], positions))) - 1  # zeros skipped before each non-zero
    fillers = gaps // span
    last_codes = gaps - fillers * span
    filler_code = span - 1
    codes = np.repeat(np.stack([np.full_like(gaps, filler_code), last_codes], axis=1).ravel(),
                      np.stack([fillers, np.ones_like(fillers)], axis=1).ravel())
    return codes, int(fillers.sum())


def filler_count(flat_nonzero: np.ndarray, index_bits: int) -> int:
    """Number of filler entries the relative-index encoding needs (gaps of ``d`` zeros need ``floor(d / 2^p)``)."""
    return relative_index_codes(flat_nonzero, index_bits)[1]


def value_stream_bits(values: np.ndarray) -> int:
    """Huffman code of the value symbols + 32 bits of codebook per distinct value, or raw 32-bit values if cheaper."""
    values = np.asarray(values).ravel()
    raw = FLOAT_BITS * values.size
    symbols, counts = np.unique(values, return_counts=True)
    codebook = FLOAT_BITS * len(symbols)
    if codebook + values.size >= raw:  # a Huffman code costs at least one bit per entry: it cannot win
        return raw
    return min(raw, huffman_bits_from_counts(counts) + codebook)


def sparse_huffman_bits(flat_values: np.ndarray, index_bits: int) -> int:
    """Deep Compression's sparse layer: Huffman-coded relative indices + the value stream of stored entries."""
    flat_values = np.asarray(flat_values).ravel()
    nonzero = flat_values != 0
    codes, n_fillers = relative_index_codes(nonzero, index_bits)
    stored = np.concatenate([flat_values[nonzero], np.zeros(n_fillers, dtype=flat_values.dtype)])
    if stored.size == 0:
        return 0
    return huffman_bits(codes) + value_stream_bits(stored)


def dense_huffman_bits(slim_values: np.ndarray) -> int:
    """A slimmed dense matrix whose values are Huffman coded (no indices)."""
    slim_values = np.asarray(slim_values).ravel()
    return value_stream_bits(slim_values) if slim_values.size else 0


@dataclass(frozen=True)
class EncodedLayer:
    """One layer for ``compression_max``: the pruned, quantised tensor in its original shape, its slimmed dense block
    (kept rows/columns only) and the relative-index width (5 for linear, 8 for conv by default)."""

    values: np.ndarray
    slim_values: np.ndarray
    index_bits: int


def layer_max_storage(layer: EncodedLayer) -> tuple[int, str]:
    """Bits of the cheaper of Deep Compression's sparse encoding and the Huffman-coded slimmed matrix, and which."""
    sparse = sparse_huffman_bits(layer.values, layer.index_bits)
    dense = dense_huffman_bits(layer.slim_values)
    return (dense, "dense") if dense <= sparse else (sparse, "sparse")


def compression_max(layers: Sequence[EncodedLayer]) -> float:
    """32|W| / sum_l min(sparse Huffman_l, dense Huffman_l): the paper's "maximum compression" (Table 1)."""
    original = FLOAT_BITS * sum(np.asarray(layer.values).size for layer in layers)
    return _ratio(original, sum(layer_max_storage(layer)[0] for layer in layers))


def han_storage_bits(entries: int, weight_bits: int, index_bits: int, codebook_size: int) -> int:
    """Deep Compression with fixed-length codes: ``entries * (weight_bits + index_bits) + 32 * codebook_size``.

    ``entries`` = non-zeros + fillers (``docs/baselines.md`` §2.4: "(#nonzeros + #fillers)(weight bits + index bits) + k32").
    """
    return int(entries) * (int(weight_bits) + int(index_bits)) + FLOAT_BITS * int(codebook_size)
