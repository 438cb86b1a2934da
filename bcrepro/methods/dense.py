"""``dense``: the uncompressed reference network, plain ``nn.Linear``/``nn.Conv2d`` layers, no KL."""
from ..models import PLAIN
from .registry import Method, register
from .schedules import DENSE_CIFAR, DENSE_MNIST, TRAINING

DENSE = register(Method(
    name="dense",
    description="uncompressed reference network (the 'original' of the paper's table)",
    layer_factory=lambda arch, hp: PLAIN,
    hyperparameters={
        "lenet300": dict(DENSE_MNIST),
        "lenet5": dict(DENSE_MNIST),
        "vgg16": dict(DENSE_CIFAR),
    },
    forms=TRAINING,
))
