"""Codebook quantisation of weights: the maths of two baselines' weight sharing, independent of training.

- **Deep Compression** (Han, Mao, Dally 2016 §3.1-3.3; ``docs/baselines.md`` §2.1 steps 4-5): per layer, 1-D k-means with
  ``k = 2^bits`` over the surviving (unpruned) weights, centroids initialised evenly over ``[min, max]``; every weight
  then stores a ``ceil(log2 k)``-bit index into a float32 codebook (``Codebook``). Fine-tuning moves the centroids
  only, with the gradient ``dL/dC_k = sum_ij dL/dW_ij 1(I_ij = k)`` (``centroid_gradients``).
- **Soft Weight-Sharing** post-processing (Ullrich, Meeds, Welling 2017; ``docs/baselines.md`` §4.3, the authors'
  ``helpers.discretesize``): merge mixture components whose Gaussians are nearly identical
  (``merge_close_components``), set the merged mean closest to 0 to exactly 0, then move every weight to the mean of
  its most responsible component (``snap_to_means``).

What this gives to storage accounting (``bcrepro.compress.accounting``): the quantised weight tensor and, per weight,
the index of its shared value (``Codebook.assignments``, ``assign_components``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

DEFAULT_MERGE_KL = 1e-10  # SWS tutorial's threshold on the KL divergence between two components (helpers.discretesize)
SNAP_CHUNK = 1 << 20  # weights per block when scoring responsibilities, so the [n, J] matrix stays small


# ---- k-means in one dimension (Deep Compression) ---------------------------------------------------------------------
def linear_init(values: torch.Tensor, k: int) -> torch.Tensor:
    """DC's linear initialisation: ``k`` centroids evenly spaced over ``[min(values), max(values)]`` (DC §3.2).

    DC prefers it to Forgy and density-based initialisation because it keeps a centroid near the few large-magnitude
    weights, which matter most. Returns ``[k]`` in ``values``' dtype.
    """
    return torch.linspace(float(values.min()), float(values.max()), k, dtype=values.dtype, device=values.device)


def density_init(values: torch.Tensor, k: int) -> torch.Tensor:
    """DC's density-based initialisation: ``k`` points evenly spaced on the CDF's y-axis, mapped back to weights
    (quantiles ``0, 1/(k-1), ..., 1``, linearly interpolated). Returns ``[k]`` in ``values``' dtype."""
    q = torch.linspace(0.0, 1.0, k, dtype=values.dtype, device=values.device)
    return torch.quantile(values.flatten(), q)


INITIALISERS: dict[str, Callable[[torch.Tensor, int], torch.Tensor]] = {
    "linear": linear_init,
    "density": density_init,
}


def nearest_centroid(values: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest of ascending ``centroids`` [k] for each of ``values`` [n]; int64 [n].

    The nearest centroid in 1-D is found by locating each value among the midpoints between neighbouring centroids
    (``searchsorted``, O(n log k)). A value exactly on a midpoint goes to the lower centroid, as ``argmin`` would.
    """
    mids = (centroids[1:] + centroids[:-1]) / 2  # [k - 1]
    return torch.searchsorted(mids, values, side="left")


def kmeans_1d(values: torch.Tensor, n_clusters: int, init: str = "linear", max_iter: int = 100,
              tol: float = 1e-7) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means (minimum within-cluster sum of squares, DC eq. 2) on a flat tensor of weights; DC §3.1-3.2.

    Returns ``(centroids, assignments)``: ``centroids`` ascending, in ``values``' dtype, ``[k]`` with
    ``k = min(n_clusters, number of distinct values)`` (with no more clusters than distinct values, the distinct
    values themselves are the optimum); ``assignments`` int64 ``[n]``, each the nearest of the returned centroids.

    - ``init``: ``"linear"`` (DC's choice, ``linear_init``) or ``"density"`` (``density_init``). Both are
      deterministic, so the whole function is.
    - An empty cluster keeps its centroid where it is (it stays a codebook entry that no weight uses) instead of being
      re-seeded: re-seeding would need a random choice, and linear init deliberately keeps centroids in sparse regions.
    - Stops when the assignment no longer changes (Lloyd's fixed point), when no centroid moves more than
      ``tol * (max - min)``, or after ``max_iter`` updates.

    One sort of the values makes each iteration O(k log n): in 1-D a cluster is a contiguous run of the sorted values,
    found by ``searchsorted`` of the midpoints, and its sum is a difference of a cumulative sum. Arithmetic is float64.
    """
    if n_clusters < 1:
        raise ValueError(f"kmeans_1d needs n_clusters >= 1, got {n_clusters}")
    if init not in INITIALISERS:
        raise ValueError(f"unknown k-means init {init!r}: expected one of {sorted(INITIALISERS)}")
    flat = values.detach().flatten()
    if flat.numel() == 0:
        raise ValueError("kmeans_1d got no values to cluster (is every weight of the layer pruned?)")
    x = flat.to(torch.float64)
    xs, _ = torch.sort(x)
    distinct = torch.unique_consecutive(xs)
    if distinct.numel() <= n_clusters:
        centroids = distinct
    else:
        centroids, _ = torch.sort(INITIALISERS[init](xs, n_clusters))
        cumsum = torch.cat([xs.new_zeros(1), torch.cumsum(xs, 0)])  # [n + 1]: sum of xs[a:b] = cumsum[b] - cumsum[a]
        starts = torch.zeros(1, dtype=torch.int64, device=xs.device)
        ends = torch.full((1,), xs.numel(), dtype=torch.int64, device=xs.device)
        scale = float(xs[-1] - xs[0])
        bounds = None
        for _ in range(max_iter):
            mids = (centroids[1:] + centroids[:-1]) / 2
            # cluster j holds the sorted values in (mids[j-1], mids[j]]: the same tie rule as nearest_centroid
            new_bounds = torch.cat([starts, torch.searchsorted(xs, mids, side="right"), ends])  # [k + 1]
            if bounds is not None and torch.equal(new_bounds, bounds):
                break
            bounds = new_bounds
            counts = bounds[1:] - bounds[:-1]  # [k]
            sums = cumsum[bounds[1:]] - cumsum[bounds[:-1]]
            updated = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
            shift = float((updated - centroids).abs().max())
            centroids, _ = torch.sort(updated)
            if shift <= tol * scale:
                break
    centroids = centroids.to(flat.dtype)
    # assign against the centroids as returned (after the cast), so every weight maps to its nearest stored entry
    assignments = nearest_centroid(x, centroids.to(torch.float64))
    return centroids, assignments


# ---- per-layer codebook (Deep Compression) ---------------------------------------------------------------------------
@dataclass
class Codebook:
    """One layer's shared weights: ``centroids`` float32 [k] and, per weight, the index of its centroid.

    ``assignments`` has the weight's shape, int64, and is -1 where the weight is pruned (stored as 0, not in the
    codebook: DC keeps zero out of the codebook and encodes it by sparsity).
    """

    centroids: torch.Tensor  # [k] float32
    assignments: torch.Tensor  # weight's shape, int64; -1 = pruned

    @property
    def mask(self) -> torch.Tensor:
        """Surviving weights (bool, the weight's shape)."""
        return self.assignments >= 0

    @property
    def n_entries(self) -> int:
        """Codebook entries k (at most ``2^bits``; fewer when the layer has fewer distinct surviving weights)."""
        return int(self.centroids.numel())

    @property
    def index_bits(self) -> int:
        """Bits of one weight's index into the codebook, ``ceil(log2 k)`` (0 for a single entry or none)."""
        return math.ceil(math.log2(self.n_entries)) if self.n_entries > 1 else 0

    def dequantize(self) -> torch.Tensor:
        """The weight tensor the codebook stands for: each surviving weight its centroid, pruned weights exactly 0."""
        out = torch.zeros(self.assignments.shape, dtype=self.centroids.dtype, device=self.centroids.device)
        mask = self.mask
        out[mask] = self.centroids[self.assignments[mask]]
        return out


def share_weights(weight: torch.Tensor, mask: torch.Tensor, bits: int) -> Codebook:
    """DC weight sharing of one layer: k-means with ``k = 2^bits`` (linear init) over ``weight[mask]`` (DC §3.1-3.2).

    ``mask`` is bool with the weight's shape, True for surviving weights. Fewer than ``2^bits`` entries come back when
    the surviving weights have fewer distinct values; none when every weight is pruned.
    """
    if mask.shape != weight.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match weight shape {tuple(weight.shape)}")
    if bits < 0:
        raise ValueError(f"share_weights needs bits >= 0, got {bits}")
    mask = mask.to(torch.bool)
    assignments = torch.full(weight.shape, -1, dtype=torch.int64, device=weight.device)
    surviving = weight.detach()[mask]  # [n_kept]
    if surviving.numel() == 0:
        return Codebook(torch.zeros(0, dtype=torch.float32, device=weight.device), assignments)
    centroids, kept_assignments = kmeans_1d(surviving.to(torch.float32), 2 ** bits, init="linear")
    assignments[mask] = kept_assignments.to(weight.device)
    return Codebook(centroids, assignments)


def centroid_gradients(weight_grad: torch.Tensor, codebook: Codebook) -> torch.Tensor:
    """DC's centroid fine-tuning gradient (DC §3.3, eq. 3): ``dL/dC_k = sum_ij dL/dW_ij 1(I_ij = k)``, shape [k].

    ``weight_grad`` is the gradient of the loss with respect to the (dequantised) weight; pruned weights contribute
    nothing. Assignments and the zero mask stay fixed during fine-tuning.
    """
    if weight_grad.shape != codebook.assignments.shape:
        raise ValueError(f"gradient shape {tuple(weight_grad.shape)} does not match the codebook's weight shape "
                         f"{tuple(codebook.assignments.shape)}")
    mask = codebook.mask
    grads = torch.zeros(codebook.n_entries, dtype=weight_grad.dtype, device=weight_grad.device)
    return grads.scatter_add_(0, codebook.assignments[mask], weight_grad[mask])


# ---- Soft Weight-Sharing post-processing -----------------------------------------------------------------------------
def gaussian_kl(means: torch.Tensor, log_precisions: torch.Tensor) -> torch.Tensor:
    """Pairwise ``KL(N_i || N_j)`` [J, J] between 1-D Gaussians with means ``mu`` and precisions ``lambda = exp(.)``:
    ``1/2 (log lambda_i - log lambda_j) + lambda_j / 2 (1/lambda_i + (mu_i - mu_j)^2) - 1/2`` (the SWS tutorial's
    ``KL``)."""
    mu = means.to(torch.float64)
    log_lam = log_precisions.to(torch.float64)
    lam = log_lam.exp()
    return (0.5 * (log_lam[:, None] - log_lam[None, :])
            + lam[None, :] / 2 * (1 / lam[:, None] + (mu[:, None] - mu[None, :]) ** 2) - 0.5)


def merge_close_components(means: torch.Tensor, log_precisions: torch.Tensor, log_pis: torch.Tensor,
                           threshold: float = DEFAULT_MERGE_KL) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SWS post-processing steps 1-2 (``docs/baselines.md`` §4.3): merge nearly identical mixture components, then put the
    merged mean closest to 0 at exactly 0.

    Arguments are the whole mixture, zero component included, each [J]: ``means``, ``log_precisions``
    (``log lambda = -log sigma^2``) and ``log_pis`` (log mixing proportions; a common offset does not matter).
    Returns the merged ``(means, log_precisions, log_pis)``, each [J'] with J' <= J, in the input's dtype; merged
    components are ordered by their lowest original index, so a zero component given first stays first.

    Rule ("KL below a threshold", the authors' ``discretesize``): components i and j are merged when
    ``KL(N_i || N_j) < threshold`` or ``KL(N_j || N_i) < threshold`` (the authors take every pair of the full,
    asymmetric KL matrix below 1e-10), and merging is transitive (groups are the connected components of that
    relation). A group is replaced by its moment match as ``docs/baselines.md`` §4.3 writes it:
    ``pi = sum pi_i``, ``mu = sum pi_i mu_i / pi``, ``sigma^2 = sum pi_i sigma_i^2 / pi``. (The authors' code averages
    the precisions instead of the variances; at KL < 1e-10 the merged Gaussians are the same to that precision.)
    """
    if not (means.shape == log_precisions.shape == log_pis.shape) or means.dim() != 1:
        raise ValueError(f"expected three 1-D tensors of one length J, got shapes {tuple(means.shape)}, "
                         f"{tuple(log_precisions.shape)}, {tuple(log_pis.shape)}")
    n = means.numel()
    kl = gaussian_kl(means, log_precisions)  # [J, J]
    close = (kl < threshold) | (kl < threshold).T
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in close.nonzero().tolist():
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root(i), []).append(i)
    members = [torch.tensor(g) for _, g in sorted(groups.items())]

    mu = means.to(torch.float64)
    log_var = -log_precisions.to(torch.float64)
    log_pi = log_pis.to(torch.float64)
    new_log_pi = torch.stack([torch.logsumexp(log_pi[g], 0) for g in members])  # [J']
    weights = [torch.softmax(log_pi[g], 0) for g in members]  # pi_i / pi within each group
    new_mu = torch.stack([(w * mu[g]).sum() for w, g in zip(weights, members)])
    new_log_var = torch.stack([torch.logsumexp(w.log() + log_var[g], 0) for w, g in zip(weights, members)])
    new_mu[new_mu.abs().argmin()] = 0.0
    dtype = means.dtype
    return new_mu.to(dtype), (-new_log_var).to(dtype), new_log_pi.to(dtype)


def assign_components(weight: torch.Tensor, means: torch.Tensor, log_precisions: torch.Tensor,
                      log_pis: torch.Tensor) -> torch.Tensor:
    """Index of each weight's most responsible component, ``argmax_j pi_j N(w | mu_j, 1/lambda_j)`` (the SWS
    authors' ``compute_responsibilies``); int64 with the weight's shape.

    Scored in log space, ``log pi_j + 1/2 log lambda_j - lambda_j / 2 (w - mu_j)^2``, in blocks of ``SNAP_CHUNK``
    weights so the [n, J] matrix stays small.
    """
    flat = weight.detach().flatten().to(torch.float64)
    mu = means.to(torch.float64)
    log_lam = log_precisions.to(torch.float64)
    offset = log_pis.to(torch.float64) + 0.5 * log_lam  # [J]
    lam = log_lam.exp()
    out = torch.empty(flat.numel(), dtype=torch.int64, device=flat.device)
    for start in range(0, flat.numel(), SNAP_CHUNK):
        w = flat[start:start + SNAP_CHUNK, None]  # [chunk, 1]
        out[start:start + SNAP_CHUNK] = (offset - 0.5 * lam * (w - mu) ** 2).argmax(dim=1)
    return out.view(weight.shape)


def snap_to_means(weight: torch.Tensor, means: torch.Tensor, log_precisions: torch.Tensor,
                  log_pis: torch.Tensor) -> torch.Tensor:
    """SWS post-processing step 3: every weight becomes the mean of its most responsible component
    (``assign_components``); same shape and dtype as ``weight``.

    Pass the mixture after ``merge_close_components``: then one mean is exactly 0 and the weights it wins are exactly
    0, which is what makes them prunable.
    """
    return means.to(weight.dtype)[assign_components(weight, means, log_precisions, log_pis)]
