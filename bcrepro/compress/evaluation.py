"""Validation error of many networks that differ only from some layer on, without recomputing what they share.

The automatic threshold rule (``thresholds.select_auto``) and the threshold curve evaluate hundreds of pruned
networks that differ from one another in one layer's threshold only. Pruning a layer changes that layer (and the
layers its units connect to) but not the layers before it, so every network tried for one layer computes the same
activations up to there. Evaluated from scratch, nearly all of ``bcrepro compress``'s time on CPU goes into forward
passes repeating the same first layers (``docs/benchmarks.md``; ``benchmarks/threshold_search.py`` measures both).

``PrefixReusingErrorRate(x, y)`` is a drop-in for ``lambda net: train.error_rate(net, x, y)``: called with a network
it returns the same error in percent, computed the same way (eval mode, the same batches, the same pooling rewrite on
CPU), so every value it returns is bit-for-bit the one ``error_rate`` would. ``mistakes(net)`` returns which images
the network gets wrong instead, at the same cost: the ``paired`` acceptance of the threshold search compares a pruned
network with the unpruned one image by image (``thresholds.paired_counts``). Between calls it keeps the activations at
the input of the first module where the last network differed from the one before it. A later network whose modules
up to that point equal those of the network that produced them starts there. Modules are equal when their ``repr``
(type, settings, children) and every parameter and buffer are equal: the modules of ``models.Net``'s chain (linear,
conv, batch norm, ReLU, pooling, dropout, flatten) hold no other state.

Networks without ``module_chain()`` (``models.Net`` has it) are evaluated whole, and so are networks with an in-place
module (``inplace=True``), which could overwrite kept activations. Nothing is kept where the activations would exceed
``max_cache_bytes``.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import pooling
from ..data import minibatches

DEFAULT_MAX_CACHE_BYTES = 2 * 1024 ** 3  # VGG-16's largest layer input for 5,000 CIFAR images is 1.3 GB


def same_module(a: nn.Module, b: nn.Module) -> bool:
    """Whether ``a`` and ``b`` compute the same function: same ``repr`` and equal parameters and buffers."""
    if a is b:
        return True
    if type(a) is not type(b) or a.training != b.training or repr(a) != repr(b):
        return False
    state_a, state_b = a.state_dict(keep_vars=True), b.state_dict(keep_vars=True)
    return state_a.keys() == state_b.keys() and all(
        state_a[k].dtype == state_b[k].dtype and state_a[k].device == state_b[k].device
        and torch.equal(state_a[k], state_b[k]) for k in state_a)


def shared_prefix(chain: list[nn.Module], other: list[nn.Module], at_most: int | None = None) -> int:
    """How many leading modules ``chain`` and ``other`` have in common (comparing at most ``at_most`` of them)."""
    n = min(len(chain), len(other), len(chain) if at_most is None else at_most)
    for position in range(n):
        if not same_module(chain[position], other[position]):
            return position
    return n


class PrefixReusingErrorRate:
    """Error in percent of eval-mode networks on (``x``, ``y``), reusing the activations they share (module docstring).

    ``evaluations`` counts calls; ``modules_run`` and ``modules_skipped`` count module applications per batch done and
    avoided; ``last_start`` is the chain position the last call started from (0: from the input).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048,
                 max_cache_bytes: int = DEFAULT_MAX_CACHE_BYTES):
        if len(x) != len(y):
            raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
        self.x, self.y, self.batch_size, self.max_cache_bytes = x, y, batch_size, max_cache_bytes
        self._last_chain: list[nn.Module] | None = None  # the last network's modules
        self._cached_chain: list[nn.Module] | None = None  # the modules that produced the kept activations
        self._cached_position = 0  # the kept activations are the inputs of module [position] of that chain
        self._cached_batches: list[torch.Tensor] = []
        self.evaluations = self.modules_run = self.modules_skipped = self.last_start = 0

    def clear(self) -> None:
        """Forget the kept activations (and the last network)."""
        self._last_chain = self._cached_chain = None
        self._cached_batches, self._cached_position = [], 0

    def __call__(self, net: nn.Module) -> float:
        wrong = self._mistakes(net)
        return 100.0 * int(wrong.sum()) / max(1, len(self.y))

    def mistakes(self, net: nn.Module) -> torch.Tensor:
        """Whether ``net`` gets each image wrong: bool [n] on the CPU, in the order of ``y``."""
        return self._mistakes(net).cpu()

    @torch.no_grad()
    def _mistakes(self, net: nn.Module) -> torch.Tensor:
        self.evaluations += 1
        was_training = net.training
        net.eval()
        try:
            fast = pooling.fast_inference(net) if pooling.pays_off(self.x.device) else net
            if not hasattr(fast, "module_chain") or any(getattr(m, "inplace", False) for m in fast.modules()):
                self.clear()
                self.last_start = 0
                return self._run(lambda index, xb, kept: fast(xb), keep=False)[0]
            return self._chain_mistakes(list(fast.module_chain()))
        finally:
            net.train(was_training)

    def _chain_mistakes(self, chain: list[nn.Module]) -> torch.Tensor:
        start = 0
        if self._cached_chain is not None and len(self._cached_chain) == len(chain) and \
                shared_prefix(chain, self._cached_chain, self._cached_position) == self._cached_position:
            start = self._cached_position
        # keep the activations where this network starts to differ from the last one: the next network is most
        # likely another candidate for the same layer, differing there again
        keep_at = None
        if self._last_chain is not None and len(self._last_chain) == len(chain):
            keep_at = shared_prefix(chain, self._last_chain)
            if keep_at <= start:
                keep_at = None  # nothing deeper to keep than what is kept already
        self.last_start = start
        self._last_chain = chain

        def forward(index: int, xb: torch.Tensor, kept: list[torch.Tensor] | None) -> torch.Tensor:
            h = self._cached_batches[index] if start else xb
            for position in range(start, len(chain)):
                if kept is not None and position == keep_at:
                    kept.append(h)
                h = chain[position](h)
            if kept is not None and keep_at == len(chain):
                kept.append(h)
            self.modules_run += len(chain) - start
            self.modules_skipped += start
            return h

        wrong, kept = self._run(forward, keep=keep_at is not None)
        if kept is not None:  # (when too large to keep, what was kept before stays: it is still valid)
            self._cached_chain, self._cached_position, self._cached_batches = chain, keep_at, kept
        return wrong

    def _run(self, forward, keep: bool) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """Which images are misclassified (bool [n] on the data's device) by ``forward(batch index, batch, list to
        keep activations in, or None)`` over the batches, and the activations kept (None when not asked for, or too
        large for ``max_cache_bytes``)."""
        wrong: list[torch.Tensor] = []
        kept: list[torch.Tensor] | None = [] if keep else None
        for index, (xb, yb) in enumerate(minibatches(self.x, self.y, self.batch_size, shuffle=False)):
            wrong.append(forward(index, xb, kept).argmax(1) != yb)  # [batch]
            if kept:
                seen = min(len(self.y), (index + 1) * self.batch_size)
                per_example = sum(t.numel() * t.element_size() for t in kept) / seen
                if per_example * len(self.y) > self.max_cache_bytes:
                    kept = None  # too large to keep for the whole set: the next networks run whole
        return (torch.cat(wrong) if wrong else torch.zeros(0, dtype=torch.bool, device=self.x.device)), kept
