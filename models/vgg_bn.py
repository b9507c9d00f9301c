"""A small VGG-style net with BatchNorm for 1x28x28 inputs.

[conv3x3(16)-BN-ReLU] x2, maxpool2;  [conv3x3(32)-BN-ReLU] x2, maxpool2;
conv3x3(64)-BN-ReLU, maxpool2 (7 -> 3);  flatten, affine(576->64)-BN-ReLU, affine(64->10).
Convs before BatchNorm carry no bias (BN's beta plays that role).
"""
from lowbit.train.layers import Affine, BatchNorm, Conv, Flatten, MaxPool, ReLU
from lowbit.train.net import Net

RECIPE = dict(epochs=2, batch_size=100, optimizer="adam", lr=2e-3, schedule="cosine", min_lr=1e-5,
              max_shift=1, max_rotate=0.0)


def build(seed=0):
    """The network, He-initialised from ``seed``."""
    net = Net(seed, (1, 28, 28))
    rng = net.init_rng
    cin, i = 1, 0
    for block in ([16, 16], [32, 32], [64]):
        for cout in block:
            i += 1
            net.add(f"conv{i}", Conv(cin, cout, 3, rng, pad=1, bias=False))
            net.add(f"bn{i}", BatchNorm(cout))
            net.add(f"relu{i}", ReLU())
            cin = cout
        net.add(f"pool{i}", MaxPool(2))
    net.add("flatten", Flatten())
    net.add("fc1", Affine(64 * 3 * 3, 64, rng))
    net.add("bn_fc1", BatchNorm(64))
    net.add("relu_fc1", ReLU())
    net.add("fc2", Affine(64, 10, rng))
    return net
