"""A small GoogLeNet-style net for 1x28x28 inputs: Inception blocks joined by Concat.

stem conv3x3(16)-ReLU, maxpool2 (14x14);  inception A (-> 40 ch), maxpool2 (7x7);
inception B (-> 80 ch);  global average pool, affine(80->10).
An Inception block has four branches concatenated on channels: conv1x1;
conv1x1-conv3x3; conv1x1-conv5x5; maxpool3x3 (stride 1, pad 1)-conv1x1 (each conv followed by ReLU).
"""
from lowbit.train.layers import Affine, Concat, Conv, Flatten, GlobalAvgPool, MaxPool, ReLU
from lowbit.train.net import Net

RECIPE = dict(epochs=6, batch_size=100, optimizer="adam", lr=3e-3, schedule="cosine", min_lr=1e-5,
              max_shift=1, max_rotate=0.0)


def conv_relu(net, name, x, cin, cout, k, rng):
    net.add(name, Conv(cin, cout, k, rng, pad=k // 2), inputs=x)
    return net.add(f"{name}.relu", ReLU())


def inception(net, name, x, cin, c1, c3r, c3, c5r, c5, cp, rng):
    """Append an Inception block reading ``x``; output has ``c1 + c3 + c5 + cp`` channels."""
    b1 = conv_relu(net, f"{name}.b1", x, cin, c1, 1, rng)
    b3 = conv_relu(net, f"{name}.b3r", x, cin, c3r, 1, rng)
    b3 = conv_relu(net, f"{name}.b3", b3, c3r, c3, 3, rng)
    b5 = conv_relu(net, f"{name}.b5r", x, cin, c5r, 1, rng)
    b5 = conv_relu(net, f"{name}.b5", b5, c5r, c5, 5, rng)
    bp = net.add(f"{name}.pool", MaxPool(3, 1, 1), inputs=x)
    bp = conv_relu(net, f"{name}.bp", bp, cin, cp, 1, rng)
    return net.add(f"{name}.concat", Concat(), inputs=[b1, b3, b5, bp])


def build(seed=0):
    """The network, He-initialised from ``seed``."""
    net = Net(seed, (1, 28, 28))
    rng = net.init_rng
    x = conv_relu(net, "stem", "input", 1, 16, 3, rng)
    x = net.add("pool1", MaxPool(2), inputs=x)
    x = inception(net, "incA", x, 16, 8, 8, 16, 4, 8, 8, rng)
    x = net.add("pool2", MaxPool(2), inputs=x)
    x = inception(net, "incB", x, 40, 16, 16, 32, 8, 16, 16, rng)
    net.add("gap", GlobalAvgPool(), inputs=x)
    net.add("flatten", Flatten())
    net.add("fc", Affine(80, 10, rng))
    return net
