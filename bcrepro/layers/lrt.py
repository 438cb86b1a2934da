"""The training forward of a group layer as one autograd node with its backward written out: local
reparameterisation of the pre-activations and the Gaussian weight KL (paper Eq. 8), which share ``exp(logvar)``.

Autograd over the plain expressions (``Linear/Conv2dGeometry._lrt_moments``, kept as the reference the tests compare
against) allocates a fresh tensor for almost every step of the maths; on CPU a fresh tensor of a megabyte costs
several times what the same pass costs in place, because new memory has to be faulted in (docs/benchmarks.md). It
also walks each weight matrix about a dozen times: ``exp(logvar)`` twice (forward and KL), ``expm1`` and three
products in the KL's backward, two gradient accumulations. Here:

- ``exp(logvar)`` is computed once and serves the variance path and the KL;
- the gradients of ``weight_mu`` and ``weight_logvar`` are the matmul outputs updated in place by the KL's closed-form
  gradient (d/dmu = g_kl mu, d/dlogvar = g_var var + g_kl (var - 1) / 2);
- on CPU the variance floor ``MIN_VARIANCE`` is applied (and its zero gradient masked) only when some bias variance is
  below it: the pre-activation variance is a sum of non-negative terms plus the bias variance, so otherwise nothing can
  fall under the floor (on CUDA it always applies: asking would synchronise the device);
- the matmuls (or convolutions) are the ones the maths needs: two forward, and per path one for the weight gradient
  and one for the input gradient.

Values and gradients are those of the reference expressions for the same random state (conv: wherever z > 0; see
``conv2d_lrt``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# Smallest pre-activation variance passed to sqrt; its gradient is zero below it, so an underflowing variance cannot
# blow up the step.
MIN_VARIANCE = 1e-16


def weight_variance_and_kl(mu, logvar):
    """exp(logvar) and KL(N(mu, exp(logvar)) || N(0, 1)) summed (paper Eq. 8)."""
    var = logvar.exp()
    flat_mu = mu.reshape(-1)
    kl = 0.5 * (var.sum() - logvar.sum() + torch.dot(flat_mu, flat_mu) - mu.numel())
    return var, kl


def _weight_grads(grad_mu, grad_var, grad_kl, mu, var):
    """Gradients of (mu, logvar) from those of the mean path's weight (``grad_mu``), the variance path's weight
    (``grad_var``, d loss / d exp(logvar)) and the KL; the first two are buffers this backward owns, updated in
    place."""
    if grad_kl is None:
        return grad_mu, grad_var.mul_(var)
    half = 0.5 * grad_kl
    # var * (g_var + g_kl / 2) - g_kl / 2
    return grad_mu.addcmul_(mu, grad_kl), grad_var.add_(half).mul_(var).sub_(half)


def _std_and_floor(variance: torch.Tensor, bias_var: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """sqrt(max(variance, MIN_VARIANCE)) in place, and whether the floor can have been hit.

    On CPU the floor is skipped when every bias variance is above it (nothing can then reach it); on an accelerator
    reading that answer back would stall the stream, which costs more than the clamp, so the floor always applies."""
    floored = variance.device.type != "cpu" or bool((bias_var <= MIN_VARIANCE).any())
    if floored:
        variance.clamp_min_(MIN_VARIANCE)
    return variance.sqrt_(), floored


def _twice_variance_gradient_(grad_times_noise, std, floored):
    """2 d loss / d variance for out = mean + std * noise, from grad * noise (divided by std in place); zero where the
    floor was hit."""
    twice = grad_times_noise.div_(std)
    if floored:
        twice.masked_fill_(std <= MIN_VARIANCE ** 0.5, 0.0)
    return twice


def _saved_for_backward(ctx, grad):
    """(x, z, weight_mu, weight_var, noise, grad) of a fused node, ``grad`` zeros where only the KL was used; marks the
    node as backpropagated (the layer's KL cache must not hand out its KL after this)."""
    ctx.backward_done = True
    x, z, weight_mu, weight_var, noise = ctx.saved_tensors
    return x, z, weight_mu, weight_var, noise, torch.zeros_like(noise) if grad is None else grad


class _LinearLRT(torch.autograd.Function):
    """out = (x z) W_mu^T + b_mu + sqrt((x z)^2 exp(W_logvar)^T + b_var) * noise, z scaling the inputs."""

    @staticmethod
    def forward(ctx, x, z, weight_mu, weight_logvar, bias_mu, bias_var):
        weight_var, weight_kl = weight_variance_and_kl(weight_mu, weight_logvar)
        xz = x * z
        xz_sq = xz.square()
        mean = torch.addmm(bias_mu, xz, weight_mu.t())
        std, floored = _std_and_floor(torch.addmm(bias_var, xz_sq, weight_var.t()), bias_var)
        noise = torch.randn_like(mean)
        ctx.save_for_backward(x, z, weight_mu, weight_var, noise)
        ctx.xz, ctx.xz_sq, ctx.std, ctx.floored = xz, xz_sq, std, floored
        ctx.set_materialize_grads(False)
        return mean.addcmul_(std, noise), weight_kl

    @staticmethod
    def backward(ctx, grad, grad_kl):
        x, z, weight_mu, weight_var, noise, grad = _saved_for_backward(ctx, grad)
        need = ctx.needs_input_grad
        twice_grad_var = _twice_variance_gradient_(grad * noise, ctx.std, ctx.floored)
        grad_x = grad_z = None
        if need[0] or need[1]:
            # d/d(xz) = grad W_mu + 2 xz (grad_var W_var)
            grad_xz = grad.mm(weight_mu).addcmul_(twice_grad_var.mm(weight_var), ctx.xz)
            grad_z = grad_xz * x if need[1] else None
            grad_x = grad_xz.mul_(z) if need[0] else None
        grad_var = twice_grad_var.mul_(0.5)
        grad_w_mu, grad_w_var = _weight_grads(grad.t().mm(ctx.xz), grad_var.t().mm(ctx.xz_sq), grad_kl, weight_mu,
                                              weight_var)
        return grad_x, grad_z, grad_w_mu, grad_w_var, grad.sum(0), grad_var.sum(0)


def linear_lrt(x, z, weight_mu, weight_logvar, bias_mu, bias_var):
    """Sampled pre-activations of a linear group layer (``LinearGeometry``), the output noise drawn here, and the
    layer's Gaussian weight KL.  # [batch, out], scalar"""
    return _LinearLRT.apply(x, z, weight_mu, weight_logvar, bias_mu, bias_var)


class _Conv2dLRT(torch.autograd.Function):
    """out = z (W_mu * x + b_mu + sqrt(exp(W_logvar) * x^2 + b_var) * noise), z scaling each output filter."""

    @staticmethod
    def forward(ctx, x, z, weight_mu, weight_logvar, bias_mu, bias_var, stride, padding, dilation):
        weight_var, weight_kl = weight_variance_and_kl(weight_mu, weight_logvar)
        x_sq = x.square()
        conv_std, floored = _std_and_floor(F.conv2d(x_sq, weight_var, bias_var, stride, padding, dilation), bias_var)
        noise = torch.randn_like(conv_std)
        # pre = W_mu * x + b_mu + std * noise, the filter outputs before z
        pre = F.conv2d(x, weight_mu, bias_mu, stride, padding, dilation).addcmul_(conv_std, noise)
        ctx.save_for_backward(x, z, weight_mu, weight_var, noise)
        ctx.x_sq, ctx.pre, ctx.conv_std, ctx.floored = x_sq, pre, conv_std, floored
        ctx.geometry = dict(stride=stride, padding=padding, dilation=dilation, transposed=False,
                            output_padding=(0, 0), groups=1)
        ctx.set_materialize_grads(False)
        return pre * z[:, :, None, None], weight_kl

    @staticmethod
    def backward(ctx, grad, grad_kl):
        x, z, weight_mu, weight_var, noise, grad = _saved_for_backward(ctx, grad)
        need = ctx.needs_input_grad
        grad_z = torch.linalg.vecdot(grad.flatten(2), ctx.pre.flatten(2)) if need[1] else None
        grad_pre = grad * z[:, :, None, None]
        grad_x_mean, grad_w_mu, grad_b_mu = torch.ops.aten.convolution_backward(
            grad_pre, x, weight_mu, [weight_mu.shape[0]], **ctx.geometry, output_mask=[need[0], True, need[4]])
        twice_grad_var = _twice_variance_gradient_(grad_pre.mul_(noise), ctx.conv_std, ctx.floored)
        grad_x_sq2, grad_w_var2, grad_b_var2 = torch.ops.aten.convolution_backward(
            twice_grad_var, ctx.x_sq, weight_var, [weight_var.shape[0]], **ctx.geometry,
            output_mask=[need[0], True, need[5]])
        # twice_grad_var is 2 d/d(variance): halve its weight and bias gradients; x^2's gradient needs the 2 anyway
        grad_x = grad_x_mean.addcmul_(grad_x_sq2, x) if need[0] else None
        grad_w_mu, grad_w_var = _weight_grads(grad_w_mu, grad_w_var2.mul_(0.5), grad_kl, weight_mu, weight_var)
        grad_b_var = grad_b_var2.mul_(0.5) if need[5] else None
        return grad_x, grad_z, grad_w_mu, grad_w_var, grad_b_mu, grad_b_var, None, None, None


def conv2d_lrt(x, z, weight_mu, weight_logvar, bias_mu, bias_var, stride, padding, dilation):
    """Sampled pre-activations of a conv group layer (``Conv2dGeometry``), the output noise drawn here, and the
    layer's Gaussian weight KL.  # [batch, out, h, w], scalar

    The noise is drawn for the filter outputs before z scales them: ``z (m + s eps)`` rather than the reference's
    ``z m + |z| s eps``. Both are the same distribution (eps is symmetric and independent of z) and the same numbers
    wherever z > 0; a GNJ z that crosses zero flips the sign of its eps here.
    """
    return _Conv2dLRT.apply(x, z, weight_mu, weight_logvar, bias_mu, bias_var, stride, padding, dilation)
