"""Bayesian group-sparsity layers. ``from bcrepro import layers as BayesianLayers`` gives the authors' usage."""
from .base import GroupScaleLayer, standard_normal_kl
from .group_hs import Conv2dGroupHS, LinearGroupHS
from .group_nj import Conv2dGroupNJ, LinearGroupNJ
from .sparse_vd import Conv2dSVDO, LinearSVDO

__all__ = ["GroupScaleLayer", "standard_normal_kl", "LinearGroupNJ", "Conv2dGroupNJ", "LinearGroupHS",
           "Conv2dGroupHS", "LinearSVDO", "Conv2dSVDO"]
