"""One intra-op thread for the whole suite: on a 2-core machine a second OpenMP thread waiting on a busy core makes
small kernels tens of times slower, and the tests' tensors are small."""
import torch

torch.set_num_threads(1)
