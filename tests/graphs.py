"""Small ONNX graphs shaped like real exporter output, for whole-graph tests.

Each public builder returns an ``onnx.ModelProto`` with one float32 input
``(N, C, H, W)`` whose batch dimension is the symbol ``"N"``, random weights
drawn from a fixed seed, and sizes small enough that a test runs in well
under a second.  The graphs copy the *structure* of the classic CNN families
(and of the quirks of the exporters that produced them), not their sizes.

``BUILDERS`` maps a short name to a zero-argument builder; the whole-graph
tests iterate over it.  Nothing here imports lowbit: these graphs are inputs
to the comparison with onnxruntime, never derived from lowbit itself.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT = TensorProto.FLOAT


class _GraphBuilder:
    """Accumulates nodes and initializers with unique, exporter-like names."""

    def __init__(self, seed: int, prefix: str = ""):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.prefix = prefix
        self._counts: dict[str, int] = {}

    def fresh(self, stem: str) -> str:
        n = self._counts.get(stem, 0)
        self._counts[stem] = n + 1
        return f"{self.prefix}{stem}_{n}"

    def init(self, array, stem: str) -> str:
        name = self.fresh(stem)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type: str, inputs, n_out: int = 1, name: str | None = None, outputs=None, **attrs):
        name = name or self.fresh(op_type)
        if outputs is None:
            outputs = [f"{name}_out{i}" if n_out > 1 else f"{name}_out" for i in range(n_out)]
        self.nodes.append(helper.make_node(op_type, list(inputs), list(outputs), name=name, **attrs))
        return outputs[0] if len(outputs) == 1 else outputs

    # --- layers with random weights -------------------------------------------------
    def conv(self, x, cin, cout, k, stride=1, pad=0, group=1, bias=True, dilation=1):
        kh, kw = (k, k) if isinstance(k, int) else k
        fan_in = (cin // group) * kh * kw
        w = self.rng.normal(0.0, np.sqrt(2.0 / fan_in), (cout, cin // group, kh, kw)).astype(np.float32)
        inputs = [x, self.init(w, "conv_w")]
        if bias:
            inputs.append(self.init(self.rng.normal(0.0, 0.1, cout).astype(np.float32), "conv_b"))
        return self.op(
            "Conv", inputs,
            kernel_shape=[kh, kw], strides=[stride, stride], pads=[pad, pad, pad, pad],
            group=group, dilations=[dilation, dilation],
        )

    def bn(self, x, c, epsilon=1e-5, **extra):
        scale = self.rng.uniform(0.5, 1.5, c).astype(np.float32)
        shift = self.rng.normal(0.0, 0.2, c).astype(np.float32)
        mean = self.rng.normal(0.0, 0.2, c).astype(np.float32)
        var = self.rng.uniform(0.5, 2.0, c).astype(np.float32)
        names = [self.init(a, s) for a, s in ((scale, "bn_scale"), (shift, "bn_b"), (mean, "bn_mean"), (var, "bn_var"))]
        return self.op("BatchNormalization", [x, *names], epsilon=epsilon, **extra)

    def gemm(self, x, fin, fout, trans_b=1, bias=True, centre=False):
        w = self.rng.normal(0.0, np.sqrt(2.0 / fin), (fout, fin)).astype(np.float32)
        if centre:
            # A classifier on post-ReLU features: zero-sum rows cancel the features' common
            # positive offset, so the predicted class depends on the input (as after training).
            w -= w.mean(axis=1, keepdims=True)
        if not trans_b:
            w = np.ascontiguousarray(w.T)
        inputs = [x, self.init(w, "fc_w")]
        if bias:
            inputs.append(self.init(self.rng.normal(0.0, 0.1, fout).astype(np.float32), "fc_b"))
        return self.op("Gemm", inputs, alpha=1.0, beta=1.0, transB=trans_b)

    def relu(self, x):
        return self.op("Relu", [x])

    def conv_bn_relu(self, x, cin, cout, k, stride=1, pad=None, group=1):
        pad = k // 2 if pad is None else pad
        return self.relu(self.bn(self.conv(x, cin, cout, k, stride, pad, group, bias=False), cout))

    def model(self, name, input_name, in_shape, outputs, opset=13, ir_version=None, initializers_as_inputs=False):
        """``in_shape`` excludes the batch dim; ``outputs`` is a list of (name, rank)."""
        inputs = [helper.make_tensor_value_info(input_name, FLOAT, ["N", *in_shape])]
        if initializers_as_inputs:
            inputs += [
                helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in self.initializers
            ]
        outs = [
            helper.make_tensor_value_info(out, FLOAT, ["N"] + [None] * (rank - 1)) for out, rank in outputs
        ]
        graph = helper.make_graph(self.nodes, name, inputs, outs, initializer=self.initializers)
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="lowbit-tests"
        )
        if ir_version is not None:
            model.ir_version = ir_version
        onnx.checker.check_model(model, full_check=True)
        return model


# --- the families ----------------------------------------------------------------------

def vgg(seed: int = 0) -> onnx.ModelProto:
    """VGG: stacks of 3x3 conv + BN + ReLU, 2x2 max-pools, Flatten, two Gemms with Dropout."""
    g = _GraphBuilder(seed)
    x = "input"
    x = g.conv_bn_relu(x, 3, 8, 3)
    x = g.conv_bn_relu(x, 8, 8, 3)
    x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])           # 16 -> 8
    x = g.conv_bn_relu(x, 8, 16, 3)
    x = g.conv_bn_relu(x, 16, 16, 3)
    x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])           # 8 -> 4
    x = g.op("Flatten", [x], axis=1)
    x = g.relu(g.gemm(x, 16 * 4 * 4, 32))
    x = g.op("Dropout", [x])
    x = g.gemm(x, 32, 10, centre=True)
    return g.model("vgg", "input", [3, 16, 16], [(x, 2)])


def _basic_block(g, x, cin, cout, stride):
    y = g.conv_bn_relu(x, cin, cout, 3, stride)
    y = g.bn(g.conv(y, cout, cout, 3, 1, 1, bias=False), cout)
    if stride != 1 or cin != cout:
        x = g.bn(g.conv(x, cin, cout, 1, stride, 0, bias=False), cout)   # projection shortcut
    return g.relu(g.op("Add", [y, x]))


def resnet(seed: int = 1) -> onnx.ModelProto:
    """ResNet: residual Adds, a stride-2 1x1 projection shortcut, GlobalAveragePool, Gemm."""
    g = _GraphBuilder(seed)
    x = g.conv_bn_relu("input", 3, 8, 3)
    x = _basic_block(g, x, 8, 8, 1)
    x = _basic_block(g, x, 8, 16, 2)          # 16 -> 8, 1x1 stride-2 shortcut
    x = _basic_block(g, x, 16, 16, 1)
    x = g.op("GlobalAveragePool", [x])
    x = g.op("Flatten", [x])
    x = g.gemm(x, 16, 10, centre=True)
    return g.model("resnet", "input", [3, 16, 16], [(x, 2)])


def _inception(g, x, cin, c1, c3r, c3, c5r, c5, cp):
    b1 = g.relu(g.conv(x, cin, c1, 1))
    b2 = g.relu(g.conv(g.relu(g.conv(x, cin, c3r, 1)), c3r, c3, 3, pad=1))
    b3 = g.relu(g.conv(g.relu(g.conv(x, cin, c5r, 1)), c5r, c5, 5, pad=2))
    p = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])
    b4 = g.relu(g.conv(p, cin, cp, 1))
    return g.op("Concat", [b1, b2, b3, b4], axis=1), c1 + c3 + c5 + cp


def inception(seed: int = 2) -> onnx.ModelProto:
    """GoogLeNet: parallel 1x1 / 3x3 / 5x5 / pool branches joined by Concat."""
    g = _GraphBuilder(seed)
    x = g.relu(g.conv("input", 3, 8, 3, pad=1))
    x, c = _inception(g, x, 8, 4, 4, 6, 2, 4, 4)
    x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)   # 12 -> 6 (ceil)
    x, c = _inception(g, x, c, 6, 4, 8, 2, 4, 4)
    x = g.op("GlobalAveragePool", [x])
    x = g.op("Flatten", [x])
    x = g.gemm(x, c, 10, centre=True)
    return g.model("inception", "input", [3, 12, 12], [(x, 2)])


def densenet(seed: int = 3) -> onnx.ModelProto:
    """DenseNet: BN-ReLU-Conv layers whose outputs are Concat'ed onto a growing map, AveragePool transitions."""
    g = _GraphBuilder(seed)
    growth = 4
    x = g.conv("input", 3, 8, 3, pad=1, bias=False)
    c = 8
    for n_layers in (3, 2):
        for _ in range(n_layers):
            y = g.relu(g.bn(x, c))
            y = g.conv(g.relu(g.bn(g.conv(y, c, 2 * growth, 1, bias=False), 2 * growth)), 2 * growth, growth, 3,
                       pad=1, bias=False)
            x = g.op("Concat", [x, y], axis=1)
            c += growth
        if n_layers == 3:   # transition: BN-ReLU-1x1 conv halves the channels, 2x2 average pool
            x = g.conv(g.relu(g.bn(x, c)), c, c // 2, 1, bias=False)
            c //= 2
            x = g.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
    x = g.relu(g.bn(x, c))
    x = g.op("GlobalAveragePool", [x])
    x = g.op("Flatten", [x])
    x = g.gemm(x, c, 10, centre=True)
    return g.model("densenet", "input", [3, 16, 16], [(x, 2)])


def _fire(g, x, cin, s, e1, e3):
    sq = g.relu(g.conv(x, cin, s, 1))
    a = g.relu(g.conv(sq, s, e1, 1))
    b = g.relu(g.conv(sq, s, e3, 3, pad=1))
    return g.op("Concat", [a, b], axis=1), e1 + e3


def squeezenet(seed: int = 4) -> onnx.ModelProto:
    """SqueezeNet: fire modules (squeeze 1x1, expand 1x1 + 3x3, Concat), conv classifier, softmax."""
    g = _GraphBuilder(seed)
    x = g.relu(g.conv("input", 3, 8, 3, stride=2))                                   # 33 -> 16
    x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)      # 16 -> 8 (ceil)
    x, c = _fire(g, x, 8, 4, 8, 8)
    x, c = _fire(g, x, c, 4, 8, 8)
    x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)      # 8 -> 4 (ceil)
    x, c = _fire(g, x, c, 6, 12, 12)
    x = g.op("Dropout", [x])
    x = g.relu(g.conv(x, c, 10, 1))
    x = g.op("GlobalAveragePool", [x])
    x = g.op("Flatten", [x])
    x = g.op("Softmax", [x], axis=1)
    return g.model("squeezenet", "input", [3, 33, 33], [(x, 2)])


def _channel_shuffle(g, x, groups, c, h, w):
    x = g.op("Reshape", [x, g.init(np.array([-1, groups, c // groups, h, w], np.int64), "shape")])
    x = g.op("Transpose", [x], perm=[0, 2, 1, 3, 4])
    return g.op("Reshape", [x, g.init(np.array([0, -1, h, w], np.int64), "shape")])


def mobilenet(seed: int = 5) -> onnx.ModelProto:
    """ShuffleNet / MobileNet: grouped and depthwise convs, channel shuffle, HardSwish,
    a squeeze-excite gate with HardSigmoid, Clip(0, 6) as ReLU6."""
    g = _GraphBuilder(seed)
    zero = g.init(np.array(0.0, np.float32), "clip_min")
    six = g.init(np.array(6.0, np.float32), "clip_max")
    x = g.op("HardSwish", [g.bn(g.conv("input", 3, 8, 3, stride=2, pad=1, bias=False), 8)])    # 16 -> 8
    x = g.op("Clip", [g.bn(g.conv(x, 8, 8, 3, pad=1, group=8, bias=False), 8), zero, six])     # depthwise
    x = g.relu(g.bn(g.conv(x, 8, 16, 1, group=2, bias=False), 16))                            # grouped 1x1
    x = _channel_shuffle(g, x, 2, 16, 8, 8)
    x = g.bn(g.conv(x, 16, 16, 3, pad=1, group=16, bias=False), 16)                            # depthwise
    # squeeze-excite: GAP -> 1x1 -> ReLU -> 1x1 -> HardSigmoid -> scale the channels
    s = g.op("GlobalAveragePool", [x])
    s = g.relu(g.conv(s, 16, 4, 1))
    s = g.op("HardSigmoid", [g.conv(s, 4, 16, 1)], alpha=1.0 / 6.0, beta=0.5)   # torch's hardsigmoid
    x = g.op("Mul", [x, s])
    x = g.conv(x, 16, 24, 1, group=4, bias=False)
    x = _channel_shuffle(g, x, 4, 24, 8, 8)
    x = g.op("Clip", [g.bn(g.conv(x, 24, 24, 3, stride=2, pad=1, group=24, bias=False), 24), zero, six])  # 8 -> 4
    x = g.op("HardSwish", [g.bn(g.conv(x, 24, 32, 1, bias=False), 32)])
    x = g.op("HardSigmoid", [x])     # default alpha 0.2, beta 0.5 (saturates at both ends here)
    x = g.op("GlobalAveragePool", [x])
    x = g.op("Flatten", [x])
    x = g.gemm(x, 32, 10, centre=True)
    return g.model("mobilenet", "input", [3, 16, 16], [(x, 2)], opset=14)


def alexnet(seed: int = 6) -> onnx.ModelProto:
    """AlexNet: 11x11 stride-4 conv, LRN, overlapping 3x3/2 max-pools with ceil_mode, Dropout, Gemms."""
    g = _GraphBuilder(seed)
    lrn = dict(size=5, alpha=0.05, beta=0.75, bias=1.0)   # alpha raised from 1e-4 so the LRN matters
    x = g.relu(g.conv("input", 3, 8, 11, stride=4, pad=2))                           # 67 -> 16
    x = g.op("LRN", [x], **lrn)
    x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)      # 16 -> 8 (floor: 7)
    x = g.relu(g.conv(x, 8, 16, 5, pad=2))
    x = g.op("LRN", [x], **lrn)
    x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)      # 8 -> 4 (floor: 3)
    x = g.relu(g.conv(x, 16, 16, 3, pad=1))
    x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)      # 4 -> 2 (floor: 1)
    x = g.op("Flatten", [x])
    x = g.op("Dropout", [x])
    x = g.relu(g.gemm(x, 16 * 2 * 2, 32))
    x = g.op("Dropout", [x])
    x = g.gemm(x, 32, 10, centre=True)
    return g.model("alexnet", "input", [3, 67, 67], [(x, 2)])


def pytorch_style(head: str = "LogSoftmax", seed: int = 7) -> onnx.ModelProto:
    """What ``torch.onnx.export`` writes for a small eval-mode CNN (opset 17).

    BatchNorm already folded into the convs; tensor names like ``/conv1/Conv_output_0``;
    input normalisation with scalar Constant nodes; a weight shared through an
    Identity node; ``x.view(x.size(0), -1)`` as Shape -> Gather -> Unsqueeze ->
    Concat -> Reshape; Linear layers as Gemm(transB=1) and as MatMul + Add;
    ``head`` (LogSoftmax or Softmax) at the end.
    """
    g = _GraphBuilder(seed)
    rng = g.rng
    nodes = g.nodes

    def const(name, array):
        out = f"/{name}/Constant_output_0"
        nodes.append(helper.make_node("Constant", [], [out], name=f"/{name}/Constant",
                                      value=numpy_helper.from_array(np.asarray(array))))
        return out

    def init(name, array):
        g.initializers.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
        return name

    def node(op, name, inputs, **attrs):
        out = f"/{name}/{op}_output_0"
        nodes.append(helper.make_node(op, inputs, [out], name=f"/{name}/{op}", **attrs))
        return out

    def conv(name, x, cin, cout, k, stride=1, pad=0, w=None):
        w = w or init(f"{name}.weight", rng.normal(0, np.sqrt(2 / (cin * k * k)), (cout, cin, k, k)))
        b = init(f"{name}.bias", rng.normal(0, 0.1, cout))
        return node("Conv", name, [x, w, b], dilations=[1, 1], group=1, kernel_shape=[k, k],
                    pads=[pad] * 4, strides=[stride, stride])

    x = node("Sub", "norm", ["input.1", const("norm", np.array(0.1307, np.float32))])
    x = node("Div", "norm_1", [x, const("norm_1", np.array(0.3081, np.float32))])
    x = node("Relu", "relu", [conv("conv1", x, 1, 8, 3, pad=1)])
    x = node("MaxPool", "pool", [x], ceil_mode=0, dilations=[1, 1], kernel_shape=[2, 2], pads=[0, 0, 0, 0],
             strides=[2, 2])                                                                        # 28 -> 14
    x = node("Relu", "relu_1", [conv("conv2", x, 8, 8, 3, pad=1)])
    x = node("MaxPool", "pool_1", [x], ceil_mode=0, dilations=[1, 1], kernel_shape=[2, 2], pads=[0, 0, 0, 0],
             strides=[2, 2])                                                                        # 14 -> 7
    # conv3 reuses conv2's weight: the exporter routes the shared parameter through an Identity
    shared = node("Identity", "conv3_w", ["conv2.weight"])
    x = node("Relu", "relu_2", [conv("conv3", x, 8, 8, 3, pad=1, w=shared)])
    # x.view(x.size(0), -1)
    shape = node("Shape", "shape", [x])
    batch = node("Gather", "gather", [shape, const("gather", np.array(0, np.int64))], axis=0)
    batch = node("Unsqueeze", "unsqueeze", [batch, const("unsqueeze", np.array([0], np.int64))])
    target = node("Concat", "concat", [batch, const("concat", np.array([-1], np.int64))], axis=0)
    x = node("Reshape", "view", [x, target])
    x = node("Relu", "fc1_relu", [node("Gemm", "fc1", [x, init("fc1.weight", rng.normal(0, 0.06, (32, 8 * 7 * 7))),
                                                       init("fc1.bias", rng.normal(0, 0.1, 32))],
                                       alpha=1.0, beta=1.0, transB=1)])
    # a Linear applied as MatMul with the pre-transposed weight, then Add of the bias
    x = node("MatMul", "fc2", [x, init("onnx::MatMul_99", rng.normal(0, 0.25, (32, 10)))])
    x = node("Add", "fc2", [x, init("fc2.bias", rng.normal(0, 0.1, 10))])
    nodes.append(helper.make_node(head, [x], ["output"], name=f"/{head}", axis=1))
    return g.model(f"torch_jit_{head.lower()}", "input.1", [1, 28, 28], [("output", 2)], opset=17)


def old_ir(opset: int = 9, seed: int = 8) -> onnx.ModelProto:
    """An IR-version-3 model at opset 7 or 9, as old converters wrote it.

    Initializers are also listed as graph inputs; Clip takes ``min``/``max``
    attributes; Pad takes a ``pads`` attribute; Unsqueeze an ``axes`` attribute;
    Dropout a ``ratio``; Sum joins two branches; and the final Softmax(axis=1)
    on an (N, 2, 5) tensor has the legacy meaning: the input is coerced to
    (N, 10) and normalised over all ten values (opset 13 would use only axis 1).
    """
    g = _GraphBuilder(seed)
    bn_extra = {"spatial": 1} if opset < 9 else {}
    x = g.op("Pad", ["input"], mode="constant", pads=[0, 0, 1, 1, 0, 0, 1, 1], value=0.0)
    x = g.op("Clip", [g.bn(g.conv(x, 1, 8, 3, bias=False), 8, **bn_extra)], min=0.0, max=6.0)
    x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])                    # 28 -> 14
    a = g.relu(g.conv(x, 8, 8, 3, pad=1))
    b = g.relu(g.conv(x, 8, 8, 1))
    x = g.op("Sum", [a, b])
    x = g.op("Pad", [x], pads=[0, 0, 0, 0, 0, 0, 1, 1])                             # 14 -> 15 (asymmetric)
    x = g.op("AveragePool", [x], kernel_shape=[3, 3], strides=[2, 2])                # 15 -> 7
    x = g.op("Flatten", [x], axis=1)
    x = g.op("Dropout", [x], ratio=0.3)
    x = g.op("Clip", [g.gemm(x, 8 * 7 * 7, 32)], min=-1.0, max=1.0)
    x = g.gemm(x, 32, 10, centre=True)
    x = g.op("Unsqueeze", [x], axes=[1])                                             # (N, 1, 10)
    x = g.op("Reshape", [x, g.init(np.array([0, 2, 5], np.int64), "shape")])         # (N, 2, 5)
    x = g.op("Softmax", [x], axis=1)
    return g.model(f"old_ir_opset{opset}", "input", [1, 28, 28], [(x, 3)], opset=opset, ir_version=3,
                   initializers_as_inputs=True)


BUILDERS = {
    "vgg": vgg,
    "resnet": resnet,
    "inception": inception,
    "densenet": densenet,
    "squeezenet": squeezenet,
    "mobilenet": mobilenet,
    "alexnet": alexnet,
    "pytorch_logsoftmax": lambda: pytorch_style("LogSoftmax"),
    "pytorch_softmax": lambda: pytorch_style("Softmax"),
    "old_ir_opset7": lambda: old_ir(7),
    "old_ir_opset9": lambda: old_ir(9),
}
