"""A small ResNet for 1x28x28 inputs (basic blocks, post-activation as in He et al. 2015).

stem conv3x3(16)-BN-ReLU (28x28);  block(16);  block(32, stride 2) (14x14);  block(64, stride 2) (7x7);
global average pool, affine(64->10).  A block is conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut
(identity, or conv1x1 stride 2 + BN when the shape changes), then Add and ReLU.
"""
from lowbit.train.layers import Add, Affine, BatchNorm, Conv, Flatten, GlobalAvgPool, ReLU
from lowbit.train.net import Net

RECIPE = dict(epochs=2, batch_size=100, optimizer="adam", lr=2e-3, schedule="cosine", min_lr=1e-5,
              max_shift=1, max_rotate=0.0)


def basic_block(net, name, x, cin, cout, stride, rng):
    """Append a residual block reading tensor ``x``; return the name of its output."""
    net.add(f"{name}.conv1", Conv(cin, cout, 3, rng, stride=stride, pad=1, bias=False), inputs=x)
    net.add(f"{name}.bn1", BatchNorm(cout))
    net.add(f"{name}.relu1", ReLU())
    net.add(f"{name}.conv2", Conv(cout, cout, 3, rng, pad=1, bias=False))
    main = net.add(f"{name}.bn2", BatchNorm(cout))
    short = x
    if stride != 1 or cin != cout:
        net.add(f"{name}.down", Conv(cin, cout, 1, rng, stride=stride, bias=False), inputs=x)
        short = net.add(f"{name}.down_bn", BatchNorm(cout))
    net.add(f"{name}.add", Add(), inputs=[main, short])
    return net.add(f"{name}.relu2", ReLU())


def build(seed=0):
    """The network, He-initialised from ``seed``."""
    net = Net(seed, (1, 28, 28))
    rng = net.init_rng
    net.add("stem", Conv(1, 16, 3, rng, pad=1, bias=False))
    net.add("stem_bn", BatchNorm(16))
    x = net.add("stem_relu", ReLU())
    x = basic_block(net, "block1", x, 16, 16, 1, rng)
    x = basic_block(net, "block2", x, 16, 32, 2, rng)
    x = basic_block(net, "block3", x, 32, 64, 2, rng)
    net.add("gap", GlobalAvgPool(), inputs=x)
    net.add("flatten", Flatten())
    net.add("fc", Affine(64, 10, rng))
    return net
