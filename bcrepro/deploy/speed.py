"""Inference time of a compressed network against the original (paper §5 "fast prediction"; docs/workflow.md speed.json).

Variants, all in eval mode without gradients and with the same input:

- ``original``: the uncompressed network with the test-time weights (all groups kept);
- ``masked``: the same shapes with the pruned weights set to zero (what pruning without export gives: no speed-up);
- ``slim``: the slimmed export (``bcrepro.deploy.slim``), physically smaller layers;
- ``csr``: unstructured methods only, the masked network with every weight matrix in ``torch.sparse`` CSR form
  (``bcrepro.deploy.csr``).

Each record also holds ``macs_per_example``, the multiply-accumulates of the variant's conv and linear layers for one
input (its FLOPs are twice that), so measured speed-ups can be set beside the theoretical ones; the masked variant
counts every weight (its zeros are multiplied all the same).

Variants are timed round-robin within each repeat, so machine noise hits them alike; each record holds the median and
the inter-quartile range in milliseconds. Every variant goes through the same exact pooling rewrite
(``bcrepro.pooling.fast_inference``) unless ``stock_pooling`` asks for the modules as built; records say which
(``pooling``: ``strided`` or ``stock``). On CPU the intra-op thread count is fixed for the measurement (and restored
after), and ``allocator`` records whether freed memory stayed in the process (``bcrepro.deploy.cpu_memory``:
``keep-freed``, what ``bcrepro speedup`` sets by default, or ``system``); on CUDA every forward pass is bracketed by
synchronisation.

``memory_format`` (records too) is the layout of the image input and the conv weights of every variant: ``contiguous``
(NCHW, PyTorch's default) or ``channels_last`` (NHWC). It changes which kernels run, and not by the same factor for
every variant, so it changes the measured speed-up too (``docs/benchmarks.md``). Non-image inputs have no such layout
and are always ``contiguous``.

``compiler`` (``compiled`` in the records) is ``none`` (eager PyTorch) or ``torchscript``: every variant traced on a
small batch, frozen and passed through ``torch.jit.optimize_for_inference``, the deployment route whose CPU graph runs
convolutions with pre-packed oneDNN weights, fuses conv + ReLU, and keeps activations in oneDNN's layout between
them. Each compiled variant must reproduce its eager outputs on a batch of another size before it is timed. A variant
that cannot be traced (the sparse CSR one) is timed eager, with a warning, and says ``none``. Under ``torchscript``,
``bcrepro speedup`` times torch's own pooling (``--stock-pooling``): inside the frozen graph oneDNN pools faster than
the strided rewrite.

Command: ``bcrepro speedup --run results/runs/lenet5/bc-ghs/seed0 --batch-sizes 1 64 1024``.
"""
from __future__ import annotations

import logging
import statistics
import time
import warnings
from contextlib import contextmanager
from typing import Mapping, Sequence

import torch
from torch import nn

from ..compress.layer_view import eval_mode, is_conv
from ..compress.masks import LayerMask, deterministic_net, full_masks
from ..pooling import fast_inference, pays_off, pooling_kind
from . import cpu_memory, csr, slim

log = logging.getLogger(__name__)

VARIANTS = ("original", "masked", "slim", "csr")
MEMORY_FORMATS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}
COMPILERS = ("none", "torchscript")
TRACE_BATCH, CHECK_BATCH = 2, 3  # the compiled graph must generalise from the traced batch size to another


@contextmanager
def cpu_threads(threads: int | None):
    """Fix torch's intra-op thread count inside the block (None leaves it)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _quartiles(samples: Sequence[float]) -> tuple[float, float, float]:
    if len(samples) < 2:
        return samples[0], samples[0], samples[0]
    q1, q2, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return q1, q2, q3


@torch.no_grad()
def time_forward(modules: Mapping[str, nn.Module], x: torch.Tensor, repeats: int,
                 warmup: int) -> dict[str, list[float]]:
    """Seconds of ``repeats`` forward passes of each module on ``x``, interleaved round-robin, after ``warmup``
    passes."""
    cuda = x.device.type == "cuda"
    for module in modules.values():
        module.eval()
        for _ in range(warmup):
            module(x)
    if cuda:
        torch.cuda.synchronize(x.device)
    times: dict[str, list[float]] = {name: [] for name in modules}
    for _ in range(repeats):
        for name, module in modules.items():
            tic = time.perf_counter()
            module(x)
            if cuda:
                torch.cuda.synchronize(x.device)
            times[name].append(time.perf_counter() - tic)
    return times


def stock_pooling_for(device: torch.device, compiler: str = "none") -> bool:
    """Whether timing should use torch's own pooling rather than the strided rewrite: on CUDA, where the rewrite does
    not pay off (``pays_off``), and under a compiler, whose frozen graph pools faster with oneDNN."""
    return compiler != "none" or not pays_off(device)


@torch.no_grad()
def variants(net, masks: Sequence[LayerMask], single_weights: bool = False,
             stock_pooling: bool = False) -> dict[str, nn.Module]:
    """The networks ``measure`` times for a pruned ``net``: ``original`` (every group kept), ``masked``, ``slim``, and
    with ``single_weights`` (unstructured pruning) ``csr``, all with the exact pooling rewrite of
    ``bcrepro.pooling`` unless ``stock_pooling``. A conv that keeps no filter leaves the slimmed network a constant
    with no layers to time: then there is no ``slim`` (a warning says so)."""
    with eval_mode(net):
        built = {"original": deterministic_net(net, full_masks(net)),
                 "masked": deterministic_net(net, masks)}
        if any(is_conv(layer) and not mask.out_mask.any()
               for layer, mask in zip(net.prunable_layers(), masks)):
            log.warning("a conv layer keeps no filter: the slimmed network is a constant and has no layers to time; "
                        "speed.json gets no slim variant")
        else:
            built["slim"] = slim.slim_net(built["masked"], masks)
        if single_weights:
            built["csr"] = csr.csr_net(built["masked"])  # single weights pruned: sparse kernels, not slimming
    if stock_pooling:
        return built
    return {name: fast_inference(module) for name, module in built.items()}


@torch.no_grad()
def multiply_adds(module: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of the ``nn.Conv2d`` and ``nn.Linear`` layers of ``module`` for one input of
    ``input_shape`` (no batch axis): out elements x (in channels / groups x kernel taps) for a conv, in x out for a
    linear layer; a sparse layer (``bcrepro.deploy.csr``) counts its stored weights only. Counted with forward hooks on
    one pass over zeros on the module's device."""
    total = 0

    def count(layer, inputs, output):
        nonlocal total
        if hasattr(layer, "sparse_multiply_adds"):
            total += layer.sparse_multiply_adds(output[:1])
        elif isinstance(layer, nn.Conv2d):
            taps = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
            total += output[0].numel() * taps
        else:  # each output element of one example reads every input feature
            total += output[0].numel() * layer.in_features

    hooks = [m.register_forward_hook(count) for m in module.modules()
             if isinstance(m, (nn.Conv2d, nn.Linear)) or hasattr(m, "sparse_multiply_adds")]
    try:
        with eval_mode(module):
            module(torch.zeros(1, *input_shape, device=_module_device(module)))
    finally:
        for hook in hooks:
            hook.remove()
    return total


@torch.no_grad()
def torchscript_frozen(module: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """``module`` traced on ``example``, frozen (weights become constants) and optimised for inference."""
    with warnings.catch_warnings():  # torch.jit's deprecation notice: still the frozen-graph route PyTorch ships
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(module.eval(), example, check_trace=False)
        return torch.jit.optimize_for_inference(torch.jit.freeze(traced))


@torch.no_grad()
def compiled_variants(modules: Mapping[str, nn.Module], compiler: str, input_shape: Sequence[int],
                      device: torch.device, layout: torch.memory_format = torch.contiguous_format, seed: int = 0
                      ) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """Each module compiled with ``compiler`` (``COMPILERS``), and what each one got (``none`` where tracing failed).

    A compiled module must give its eager outputs (to 1e-4 relative) on a batch of ``CHECK_BATCH`` inputs, while it
    was traced on ``TRACE_BATCH``; otherwise this raises, naming the variant."""
    if compiler not in COMPILERS:
        raise ValueError(f"unknown compiler {compiler!r}; expected one of {COMPILERS}")
    if compiler == "none":
        return dict(modules), {name: "none" for name in modules}
    generator = torch.Generator().manual_seed(seed)
    example, check = (torch.randn(n, *input_shape, generator=generator).to(device).contiguous(memory_format=layout)
                      for n in (TRACE_BATCH, CHECK_BATCH))
    compiled, kinds = {}, {}
    for name, module in modules.items():
        try:
            frozen = torchscript_frozen(module, example)
        except Exception as err:  # e.g. sparse CSR weights, which tracing cannot hold as constants
            log.warning("variant %s cannot be compiled with %s (%s: %s); timing it eager", name, compiler,
                        type(err).__name__, str(err).splitlines()[0] if str(err) else "")
            compiled[name], kinds[name] = module, "none"
            continue
        expected, got = module.eval()(check), frozen(check)
        scale = float(expected.abs().max()) if expected.numel() else 0.0
        if got.shape != expected.shape:
            raise ValueError(f"the {compiler} graph of variant {name} gives outputs of shape {list(got.shape)}, its "
                             f"module {list(expected.shape)}; time it with compile 'none'")
        if not torch.allclose(got, expected, rtol=1e-4, atol=1e-5 * max(1.0, scale)):
            raise ValueError(f"the {compiler} graph of variant {name} differs from its eager outputs (max |diff| "
                             f"{float((got - expected).abs().max()):.3g}); time it with compile 'none'")
        compiled[name], kinds[name] = frozen, compiler
    return compiled, kinds


def _module_device(module: nn.Module) -> torch.device:
    """Where a module's tensors live: its first parameter or buffer, or a plain ``weight`` tensor (CSR layers)."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    for sub in module.modules():
        if isinstance(getattr(sub, "weight", None), torch.Tensor):
            return sub.weight.device
    return torch.device("cpu")


def measure(modules: Mapping[str, nn.Module], input_shape: Sequence[int], batch_sizes: Sequence[int],
            device: torch.device, repeats: int = 100, warmup: int = 10, threads: int | None = 1,
            seed: int = 0, memory_format: str = "contiguous", compiler: str = "none") -> list[dict]:
    """speed.json records ``{variant, device, batch, median_ms, iqr_ms, repeats, threads, macs_per_example, pooling,
    allocator, memory_format, compiled}`` for each module and batch (``threads`` and ``allocator`` null on CUDA).

    ``modules`` maps a variant name (one of ``VARIANTS``) to a network taking inputs of ``input_shape`` (no batch axis).
    With ``memory_format="channels_last"`` and image inputs (``input_shape`` of three axes), the modules' 4-D weights
    are converted in place and every input is made channels-last. ``compiler``: ``none`` or ``torchscript`` (module
    docstring); multiply-adds and pooling are read from the eager modules.
    """
    unknown = sorted(set(modules) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown speed variant(s) {unknown}; expected names from {VARIANTS}")
    if repeats < 1 or warmup < 0 or any(b < 1 for b in batch_sizes):
        raise ValueError(f"repeats must be >= 1, warmup >= 0 and batch sizes >= 1, got {repeats}, {warmup}, "
                         f"{list(batch_sizes)}")
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f"unknown memory format {memory_format!r}; expected one of {sorted(MEMORY_FORMATS)}")
    if compiler not in COMPILERS:
        raise ValueError(f"unknown compiler {compiler!r}; expected one of {COMPILERS}")
    if memory_format != "contiguous" and len(input_shape) != 3:
        log.warning("memory format %s applies to image inputs only; inputs of shape %s are timed contiguous",
                    memory_format, list(input_shape))
        memory_format = "contiguous"
    layout = MEMORY_FORMATS[memory_format]
    placed = {name: module.to(device, memory_format=layout) for name, module in modules.items()}
    macs = {name: multiply_adds(module, input_shape) for name, module in placed.items()}
    pooling = {name: pooling_kind(module) for name, module in placed.items()}
    generator = torch.Generator().manual_seed(seed)
    records = []
    with cpu_threads(threads if device.type == "cpu" else None):
        timed, compiled = compiled_variants(placed, compiler, input_shape, device, layout, seed)
        for batch in batch_sizes:
            x = torch.randn(batch, *input_shape, generator=generator).to(device).contiguous(memory_format=layout)
            for name, samples in time_forward(timed, x, repeats, warmup).items():
                q1, median, q3 = _quartiles(samples)
                records.append({"variant": name, "device": device.type, "batch": int(batch),
                                "median_ms": 1e3 * median, "iqr_ms": 1e3 * (q3 - q1), "repeats": repeats,
                                "threads": threads if device.type == "cpu" else None,
                                "macs_per_example": macs[name], "pooling": pooling[name],
                                "allocator": cpu_memory.allocator() if device.type == "cpu" else None,
                                "memory_format": memory_format, "compiled": compiled[name]})
    return records


def speedups(records: Sequence[Mapping], over: str = "original") -> list[dict]:
    """Speed-up of every variant over ``over`` at the same device and batch: median time ratio (>1 = faster), and
    the theoretical one, the ratio of multiply-accumulates (``flops_ratio``; None where a record has no count)."""
    base = {(r["device"], r["batch"]): r for r in records if r["variant"] == over}
    gains = []
    for r in records:
        reference = base.get((r["device"], r["batch"]))
        if reference is None or r["median_ms"] <= 0:
            continue
        macs, reference_macs = r.get("macs_per_example"), reference.get("macs_per_example")
        gains.append({"variant": r["variant"], "device": r["device"], "batch": r["batch"],
                      "speedup": reference["median_ms"] / r["median_ms"],
                      "flops_ratio": reference_macs / macs if macs and reference_macs else None})
    return gains
