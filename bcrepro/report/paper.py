"""The paper's published numbers, as plain data: what ``bcrepro.report.table`` puts beside the measured ones.

Sources (the BC paper's Tables 1 and 2, and ``docs/baselines.md``):

- Table 1 of Louizos, Ullrich, Welling, "Bayesian Compression for Deep Learning" (NIPS 2017): the compression results.
  Its LeNet-5-Caffe and VGG rows are also in the README of the authors' tutorial
  (``KarenUllrich/Tutorial_BayesianCompressionForDL``); the BC bit widths and the LeNet-300-100 BC rates are
  re-derived by the arithmetic of docs/method.md (unit-tested in ``tests/test_accounting.py``).
- Table 2 of the same paper: the learned architectures (units left per layer after pruning).
- Each baseline's own paper (``OWN_PAPER_RESULTS``): Deep Compression, DNS, Soft Weight-Sharing and Sparse VD as their
  authors published them, with the kind of compression rate each used (``docs/baselines.md`` §1).

Column meanings of Table 1, as stored in ``PaperRow``: ``nonzero_pct`` = |W≠0|/|W| in %; ``bits`` = bits per stored
weight per layer (a single number when one width serves all layers); ``compression_pruning`` = "fast prediction"
(pruned, 32-bit) and ``compression_precision`` = the number in its parentheses (pruned, precision-reduced);
``compression_max`` = "maximum compression" (Deep Compression storage with Huffman coding). ``starred`` marks a
pruning-only figure that the paper calls a "best case guess": the baseline's own paper did not report it.

The paper's numbers are for MNIST (LeNets) and CIFAR-10 (VGG); ``PAPER_DATASET`` names them so a table can say when
the measured run used another data set.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..data import ARCH_DATASETS

PAPER_DATASET = ARCH_DATASETS  # architecture -> the data set of its published numbers; held once in bcrepro.data

# The error of the uncompressed network each row of Table 1 starts from ("Model (original error %)" in Table 1).
ORIGINAL_ERROR_PCT = {"lenet300": 1.6, "lenet5": 0.9, "vgg16": 8.4}

# Units per layer of the uncompressed networks, in Table 2's convention: the input groups of each layer that can be
# pruned (FC: input features; conv: output filters, then FC inputs). VGG: 13 conv layers + the two FC inputs.
ORIGINAL_ARCHITECTURE = {
    "lenet300": [784, 300, 100],  # Table 2, "LeNet-300-100, 784-300-100"
    "lenet5": [20, 50, 800, 500],  # Table 2, "LeNet-5-Caffe, 20-50-800-500"
    "vgg16": [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512],  # "2x64-2x128-3x256-8x512"
}


@dataclass(frozen=True)
class PaperRow:
    """One row of the paper's Table 1 (``None`` where the table shows "–")."""

    error_pct: float
    nonzero_pct: float | None
    bits: list[int] | None
    compression_pruning: float | None
    compression_precision: float | None
    compression_max: float | None
    starred: bool = False


def _row(error_pct, nonzero_pct, bits, pruning, precision, maximum, starred=False) -> PaperRow:
    return PaperRow(error_pct=error_pct, nonzero_pct=nonzero_pct, bits=bits, compression_pruning=pruning,
                    compression_precision=precision, compression_max=maximum, starred=starred)


def _dense(arch: str) -> PaperRow:
    """The uncompressed reference: only its error is published; it compresses by 1 by definition."""
    return _row(ORIGINAL_ERROR_PCT[arch], 100.0, None, 1.0, None, 1.0)


# Keyed by (arch, method) with the method names of ``bcrepro methods``.
PAPER_RESULTS: dict[tuple[str, str], PaperRow] = {
    ("lenet300", "dense"): _dense("lenet300"),
    ("lenet5", "dense"): _dense("lenet5"),
    ("vgg16", "dense"): _dense("vgg16"),

    # LeNet-300-100 (paper Table 1; no LeNet-300-100 rows in the tutorial README)
    #                  error  |W≠0|%  bits           fast  (prec)  max   starred
    ("lenet300", "dc"): _row(1.6, 8.0, [6, 5, 5], None, None, 40),  # paper Table 1 (DC's own 40x, Han et al. 2016)
    ("lenet300", "dns"): _row(2.0, 1.8, None, 28, None, None, starred=True),  # paper Table 1
    ("lenet300", "sws"): _row(1.9, 4.3, [3], 12, None, 64, starred=True),  # paper Table 1 (SWS's own 64x)
    ("lenet300", "sparse-vd"): _row(1.8, 2.2, [8, 11, 14], 21, 84, 113),  # paper Table 1
    ("lenet300", "bc-gnj"): _row(1.8, 10.8, [8, 9, 14], 9, 36, 58),  # paper Table 1; 10.8 %, 9(36) by the accounting of docs/method.md
    ("lenet300", "bc-ghs"): _row(2.0, 10.6, [13, 11, 10], 9, 23, 59),  # paper Table 1; 10.6 %, 9(23) by the same accounting

    # LeNet-5-Caffe (paper Table 1; error and "fast prediction" rates also in the tutorial README)
    ("lenet5", "dc"): _row(0.7, 8.0, [8, 8, 5, 5], 6, None, 39, starred=True),  # paper Table 1 + README
    ("lenet5", "dns"): _row(0.9, 0.9, None, 55, None, 108, starred=True),  # paper Table 1 + README
    ("lenet5", "sws"): _row(1.0, 0.5, [3], 100, None, 162, starred=True),  # paper Table 1 + README
    ("lenet5", "sparse-vd"): _row(1.0, 0.7, [13, 10, 8, 12], 63, 228, 365),  # paper Table 1 + README
    ("lenet5", "bc-gnj"): _row(1.0, 0.9, [18, 10, 7, 9], 108, 361, 573),  # paper Table 1 + README
    ("lenet5", "bc-ghs"): _row(1.0, 0.6, [10, 10, 14, 13], 156, 419, 771),  # paper Table 1 + README

    # VGG on CIFAR-10 (paper Table 1 + README; bits re-derived by the accounting of docs/method.md from Table 2's architectures)
    ("vgg16", "bc-gnj"): _row(8.6, 6.7, [10, 10, 10, 10, 8, 8, 8, 5, 5, 5, 5, 5, 6, 7, 11], 14, 56, 95),
    ("vgg16", "bc-ghs"): _row(9.0, 5.5, [11, 12, 9, 14, 10, 8, 5, 5, 6, 6, 6, 8, 11, 17, 10], 18, 59, 116),
}

# Table 2 of the paper ("neurons left after pruning"), same convention as ORIGINAL_ARCHITECTURE. Table 2 also lists
# Generalized Dropout and Group Lasso on LeNet-5, methods this package does not implement, so they are left out.
PAPER_ARCHITECTURES: dict[tuple[str, str], list[int]] = {
    ("lenet300", "sparse-vd"): [512, 114, 72],  # paper Table 2
    ("lenet300", "bc-gnj"): [278, 98, 13],  # paper Table 2 (reproduces 9(36) by the accounting of docs/method.md)
    ("lenet300", "bc-ghs"): [311, 86, 14],  # paper Table 2 (reproduces 9(23))
    ("lenet5", "sparse-vd"): [14, 19, 242, 131],  # paper Table 2
    ("lenet5", "bc-gnj"): [8, 13, 88, 13],  # paper Table 2, also quoted by the L0-FLOPs paper
    ("lenet5", "bc-ghs"): [5, 10, 76, 16],  # paper Table 2, also quoted by the L0-FLOPs paper (reproduces 156(419))
    ("vgg16", "bc-gnj"): [63, 64, 128, 128, 245, 155, 63, 26, 24, 20, 14, 12, 11, 11, 15],  # Table 2 (14(56))
    ("vgg16", "bc-ghs"): [51, 62, 125, 128, 228, 129, 38, 13, 9, 6, 5, 6, 6, 6, 20],  # Table 2 (18(59))
}


# ---- each baseline's own paper ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class OwnPaperRow:
    """What a baseline's own paper published for one network (``docs/baselines.md`` §2.3, §3.4, §4.4, §5.3).

    ``rate_kind`` says which compression rate ``rate`` is (``docs/baselines.md`` §1, never to be mixed up): ``"parameters"``
    = |W| / |W≠0| (Han'15 pruning, DNS, Sparse VD) or ``"storage"`` = 32|W| over the bits of Deep Compression's
    encoding (DC, SWS), comparable with our ``compression_max``. ``kept_pct``: per-layer |W≠0|/|W| in %, where
    published. ``original_error_pct``: the reference network the paper started from (each trained its own).
    """

    source: str
    original_error_pct: float | None
    error_pct: float
    nonzero_pct: float
    rate: float
    rate_kind: str
    kept_pct: tuple[float, ...] | None = None


OWN_PAPER_RESULTS: dict[tuple[str, str], OwnPaperRow] = {
    # Han, Mao, Dally, ICLR 2016, Table 1 (storage with 6/5-bit codes, relative indices and Huffman); per-layer kept %
    # as tabulated by Sparse VD from Han'15 (the pruning stage).
    ("lenet300", "dc"): OwnPaperRow("Han et al. 2016, Table 1", 1.64, 1.58, 8.0, 40, "storage", (8.0, 9.0, 26.0)),
    ("lenet5", "dc"): OwnPaperRow("Han et al. 2016, Table 1", 0.80, 0.74, 8.0, 39, "storage", (66.0, 12.0, 8.0, 19.0)),
    # Guo, Yao, Chen, NIPS 2016, Tables 1-2 (parameter ratios); per-layer kept % via Sparse VD's Table 1.
    ("lenet300", "dns"): OwnPaperRow("Guo et al. 2016, Tables 1-2", 2.28, 1.99, 1.8, 56, "parameters",
                                     (1.8, 1.8, 5.5)),
    ("lenet5", "dns"): OwnPaperRow("Guo et al. 2016, Tables 1-2", 0.91, 0.91, 0.9, 108, "parameters",
                                   (14.2, 3.1, 0.7, 4.3)),
    # Ullrich, Meeds, Welling, ICLR 2017, Table 1 (storage, Han's format); LeNet-300-100's per-layer kept % from the
    # text (96 / 90 / 18 % pruned in the initial run).
    ("lenet300", "sws"): OwnPaperRow("Ullrich et al. 2017, Table 1", 1.89, 1.94, 4.3, 64, "storage", (4.0, 10.0, 82.0)),
    ("lenet5", "sws"): OwnPaperRow("Ullrich et al. 2017, Table 1", 0.88, 0.97, 0.5, 162, "storage"),
    # Molchanov, Ashukha, Vetrov, ICML 2017, Table 1 (parameter ratios; trained from scratch, so no own reference);
    # |W≠0|/|W| = 1/68 and 1/280, per-layer kept % = 100 - their pruned %.
    ("lenet300", "sparse-vd"): OwnPaperRow("Molchanov et al. 2017, Table 1", None, 1.92, 1.47, 68, "parameters",
                                           (1.1, 2.8, 38.0)),
    ("lenet5", "sparse-vd"): OwnPaperRow("Molchanov et al. 2017, Table 1", None, 0.75, 0.36, 280, "parameters",
                                         (33.0, 2.0, 0.2, 5.0)),
}


def own_paper_row(arch: str, method: str) -> OwnPaperRow | None:
    """The baseline's own published result for ``arch`` (``None`` for BC, whose own paper is Table 1, and others)."""
    return OWN_PAPER_RESULTS.get((arch, method))


def paper_row(arch: str, method: str) -> PaperRow | None:
    """Table 1's row for (arch, method), or ``None`` where the paper has none (e.g. VGG with DC, or a new method)."""
    return PAPER_RESULTS.get((arch, method))


def paper_architecture(arch: str, method: str) -> list[int] | None:
    """Table 2's learned architecture for (arch, method), or ``None`` where the paper gives none."""
    architecture = PAPER_ARCHITECTURES.get((arch, method))
    return None if architecture is None else list(architecture)
