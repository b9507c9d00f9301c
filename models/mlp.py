"""A multilayer perceptron for 1x28x28 inputs: flatten, affine(784->256)-ReLU, affine(256->128)-ReLU,
affine(128->10)."""
from lowbit.train.layers import Affine, Flatten, ReLU
from lowbit.train.net import Net

RECIPE = dict(epochs=10, batch_size=100, optimizer="adam", lr=1e-3, schedule="cosine", min_lr=1e-5,
              max_shift=0, max_rotate=0.0)


def build(seed=0):
    """The network, He-initialised from ``seed``."""
    net = Net(seed, (1, 28, 28))
    rng = net.init_rng
    net.add("flatten", Flatten())
    net.add("fc1", Affine(784, 256, rng))
    net.add("relu1", ReLU())
    net.add("fc2", Affine(256, 128, rng))
    net.add("relu2", ReLU())
    net.add("fc3", Affine(128, 10, rng))
    return net
