"""Quantization-aware fine-tuning: fp32 ONNX CNN -> STE training -> low-precision model.

Data flow::

    model.onnx --net_from_onnx--> trainable Net (float layers)
               --qat_net--------> same Net with fake-quantized layers (lowbit.train.ste)
               --train----------> latent float weights fitted to the quantized forward pass
               --to_onnx/load---> float lowbit.Model --quantize(precision)--> packed model

The latent float weights exist only while training: :func:`finetune` returns
``lowbit.quantize(...)`` of the exported float net, whose weights the converter
stores as packed integers/bits and scales.

Per precision (matching :func:`lowbit.quantize`):

* ``binary`` -- every weighted layer but the first and the last becomes binary:
  inputs ``sign(x)``, weights ``α_m sign(W_m)``. A BatchNorm follows each binary
  layer (folded into ``α_m, b_m`` at inference) and a ReLU whose output reaches a
  binary layer is replaced by a BatchNorm (``sign(ReLU(y))`` would always be +1).
* ``ternary`` / ``intK`` -- the middle layers get ternary / K-bit weights (and
  8-bit / K-bit inputs), the first and last layers int8 weights and inputs.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

from .errors import InputError, LowbitError

PRECISIONS = ("binary", "ternary", "int4", "int2")

#: Training recipes per precision (keys of :data:`lowbit.train.DEFAULT_RECIPE`).  Binary
#: training normalises with BatchNorm statistics frozen at their first estimate (γ and β
#: still learn): with batch statistics the sign thresholds of training and inference
#: differ, and the test accuracy swung by up to 8 points between epochs (models/deep_convnet_binary.md).
RECIPES = {
    "binary": dict(batch_size=100, optimizer="adam", lr=1e-3, schedule="cosine", min_lr=1e-6, max_shift=1,
                   freeze_batchnorm=True),
    "ternary": dict(batch_size=100, optimizer="adam", lr=2e-4, schedule="cosine", min_lr=1e-6, max_shift=1),
    "int4": dict(batch_size=100, optimizer="adam", lr=1e-4, schedule="cosine", min_lr=1e-6, max_shift=1),
    "int2": dict(batch_size=100, optimizer="adam", lr=5e-4, schedule="cosine", min_lr=1e-6, max_shift=1),
}


def _attr(node, name, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def net_from_onnx(source, seed=0):
    """A trainable :class:`lowbit.train.Net` with the layers and weights of a sequential ONNX CNN.

    Supports chains of Conv (square kernel, symmetric pads, no dilation), Gemm,
    BatchNormalization, Relu, MaxPool, AveragePool, GlobalAveragePool and Flatten
    (Dropout/Identity are skipped), each node reading the previous node's output.

    Parameters
    ----------
    source : str, os.PathLike or onnx.ModelProto
    seed : int
        Seeds the Net's random generators (the weights come from the file).

    Raises
    ------
    lowbit.errors.InputError
        Unreadable file or a graph outside the supported family (names the node).
    """
    import onnx
    from onnx import numpy_helper

    from .train import Net
    from .train.layers import Affine, AvgPool, BatchNorm, Conv, Flatten, GlobalAvgPool, MaxPool, ReLU

    if isinstance(source, onnx.ModelProto):
        model = source
    else:
        try:
            model = onnx.load(os.fspath(source))
        except Exception as e:  # onnx raises several unrelated types for unreadable files
            raise InputError(f"cannot read ONNX model {source}: {e}") from None
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1:
        raise InputError(f"fine-tuning needs a model with one input; got {[i.name for i in inputs]}")
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or not all(dims[1:]):
        raise InputError(f"fine-tuning needs an NCHW input with fixed C, H, W; got shape {dims}")
    net = Net(seed, tuple(dims[1:]))
    rng = net.init_rng
    current = inputs[0].name
    for i, nd in enumerate(g.node):
        name = nd.name or f"{nd.op_type.lower()}{i}"
        op = nd.op_type
        if nd.input[0] != current:
            raise InputError(f"node {name!r} ({op}) reads {nd.input[0]!r}, not the previous output {current!r}; "
                             "fine-tuning supports sequential CNNs only")
        consts = [inits[n] for n in nd.input[1:] if n]
        if op == "Conv":
            w = consts[0]
            k = w.shape[2]
            pads = list(_attr(nd, "pads", [0, 0, 0, 0]))
            strides = list(_attr(nd, "strides", [1, 1]))
            if w.shape[2] != w.shape[3] or len(set(pads)) != 1 or strides[0] != strides[1] \
                    or set(_attr(nd, "dilations", [1, 1])) != {1} or _attr(nd, "auto_pad", b"NOTSET") != b"NOTSET":
                raise InputError(f"Conv {name!r}: only square kernels, symmetric pads, equal strides and "
                                 "no dilation are supported for fine-tuning")
            group = _attr(nd, "group", 1)
            layer = Conv(w.shape[1] * group, w.shape[0], k, rng, stride=strides[0], pad=pads[0], groups=group,
                         bias=len(consts) > 1)
            layer.params["W"] = w
            if len(consts) > 1:
                layer.params["b"] = consts[1]
        elif op == "Gemm":
            if _attr(nd, "transA", 0) or _attr(nd, "alpha", 1.0) != 1.0 or _attr(nd, "beta", 1.0) != 1.0:
                raise InputError(f"Gemm {name!r}: only transA=0, alpha=beta=1 are supported for fine-tuning")
            w = consts[0] if _attr(nd, "transB", 0) else consts[0].T
            layer = Affine(w.shape[1], w.shape[0], rng)
            layer.params["W"] = np.ascontiguousarray(w)
            if len(consts) > 1:
                layer.params["b"] = np.broadcast_to(consts[1], (w.shape[0],)).astype(np.float32)
        elif op == "BatchNormalization":
            layer = BatchNorm(consts[0].shape[0], eps=_attr(nd, "epsilon", 1e-5))
            layer.params.update(gamma=consts[0], beta=consts[1])
            layer.buffers.update(mean=consts[2], var=consts[3])
        elif op == "Relu":
            layer = ReLU()
        elif op in ("MaxPool", "AveragePool"):
            ks, st = list(_attr(nd, "kernel_shape")), list(_attr(nd, "strides", _attr(nd, "kernel_shape")))
            pads = list(_attr(nd, "pads", [0, 0, 0, 0]))
            if ks[0] != ks[1] or st[0] != st[1] or len(set(pads)) != 1:
                raise InputError(f"{op} {name!r}: only square windows and symmetric pads are supported")
            layer = (MaxPool if op == "MaxPool" else AvgPool)(ks[0], st[0], pads[0])
        elif op == "GlobalAveragePool":
            layer = GlobalAvgPool()
        elif op == "Flatten":
            if _attr(nd, "axis", 1) != 1:
                raise InputError(f"Flatten {name!r}: only axis=1 is supported for fine-tuning")
            layer = Flatten()
        elif op in ("Dropout", "Identity"):
            current = nd.output[0]  # the identity at inference
            continue
        else:
            raise InputError(f"node {name!r}: op {op} is not supported for fine-tuning; expected Conv, Gemm, "
                             "BatchNormalization, Relu, MaxPool, AveragePool, GlobalAveragePool, Flatten")
        net.add(name, layer)
        current = nd.output[0]
    if not net.nodes:
        raise InputError("the model has no layers to fine-tune")
    return net


def _weighted(layer):
    from .train.layers import Affine, Conv

    return isinstance(layer, (Conv, Affine))


def _out_channels(layer):
    return layer.params["W"].shape[0]


def qat_net(float_net, precision, seed=0, sign_backward="hardtanh"):
    """The fake-quantized version of ``float_net`` for ``precision`` (see the module docstring).

    Layers are shared with ``float_net`` (its weights become the latent weights).
    ``sign_backward`` names the binary layers' surrogate gradient of sign
    (:data:`lowbit.train.ste.SIGN_GRADIENTS`).

    Returns
    -------
    lowbit.train.Net
    """
    from .train import Net
    from .train.layers import BatchNorm, ReLU
    from .train.layers.quantized import Quantized

    layers = [(n, layer) for n, layer, _ in float_net.nodes]
    weighted = [i for i, (_, layer) in enumerate(layers) if _weighted(layer)]
    if len(weighted) < 3:
        raise InputError(f"{precision} fine-tuning needs at least 3 weighted layers (the first and last stay "
                         f"at higher precision); the model has {len(weighted)}")
    first, last = weighted[0], weighted[-1]
    middle = set(weighted[1:-1])
    net = Net(seed, float_net.input_shape)
    if precision != "binary":
        abits = 8 if precision == "ternary" else int(precision[3:])  # lowbit's activation bits
        for i, (name, layer) in enumerate(layers):
            if i in middle:
                layer = Quantized(layer, precision, inputs=abits)
            elif i in (first, last):
                layer = Quantized(layer, "int8", inputs=8)
            net.add(name, layer)
        return net

    def next_weighted(i):
        return next((j for j in weighted if j > i), None)

    last_out = None
    for i, (name, layer) in enumerate(layers):
        if _weighted(layer):
            last_out = _out_channels(layer)
            if i in middle:
                net.add(name, Quantized(layer, "binary", inputs="sign", sign_backward=sign_backward))
                follower = layers[i + 1][1] if i + 1 < len(layers) else None
                if not isinstance(follower, BatchNorm):
                    net.add(f"{name}_bn", BatchNorm(last_out))
                continue
        elif isinstance(layer, ReLU) and next_weighted(i) in middle:
            # sign(ReLU(y)) would be +1 everywhere: a BatchNorm sets the sign thresholds instead
            if not isinstance(net.nodes[-1][1], BatchNorm):
                net.add(f"{name}_bn", BatchNorm(last_out))
            continue
        net.add(name, layer)
    return net


def init_batchnorm(net, x, batch_size=500):
    """Set every BatchNorm's running statistics to the average of its batch statistics over ``x``.

    ``x`` runs through the net in train mode in batches of ``batch_size``
    (each BatchNorm normalises with its batch's statistics, as in training);
    batch ``k`` (from 0) enters each running statistic with weight
    :math:`1 / (k + 1)`, so after :math:`K` batches

    .. math:: \\mu = \\frac{1}{K} \\sum_k \\mu_k, \\quad
              \\sigma^2 = \\frac{1}{K} \\sum_k \\sigma^2_k

    (:math:`\\sigma^2_k` the unbiased variance of batch :math:`k`).  Used to
    initialise new BatchNorms (one batch); over many batches it replaces the
    exponential moving averages of training by a full-data estimate.
    """
    from .train.layers import BatchNorm

    bns = [layer for _, layer, _ in net.nodes if isinstance(layer, BatchNorm)]
    saved = [b.momentum for b in bns]
    for k, start in enumerate(range(0, len(x), batch_size)):
        for b in bns:
            b.momentum = k / (k + 1)
        net.forward(x[start:start + batch_size], train=True)
    for b, m in zip(bns, saved):
        b.momentum, b.cache = m, None
    for _, layer, _ in net.nodes:  # drop what the forward pass cached for backward
        for attr in ("cols", "x", "mask"):
            if getattr(layer, attr, None) is not None:
                setattr(layer, attr, None)
        if hasattr(layer, "layer"):
            layer.layer.cols = None
            layer.layer.x = None


def finetune(model_path, precision, x_train, y_train, *, epochs, x_val=None, y_val=None, seed=0,
             progress=True, recipe=None, checkpoint=None, resume=False, distill=0.0, temperature=1.0,
             sign_backward="hardtanh"):
    """Fine-tune an fp32 ONNX CNN for ``precision`` with the straight-through estimator.

    The float net is restructured for ``precision`` (:func:`qat_net`), its new
    BatchNorms get the statistics of 500 training images (:func:`init_batchnorm`;
    for ``binary`` they stay frozen there), and it is trained with
    Adam, a cosine learning-rate schedule and small random shifts
    (:data:`RECIPES`) on softmax cross-entropy of the *quantized* forward pass,
    exported to ONNX with its latent float weights, loaded with
    :func:`lowbit.load` and quantized with :func:`lowbit.quantize`.

    Parameters
    ----------
    model_path : str, os.PathLike or onnx.ModelProto
        A sequential float32 ONNX CNN.
    precision : {"binary", "ternary", "int4", "int2"}
    x_train, y_train : numpy.ndarray
        float32 ``(N, C, H, W)`` images and integer labels.
    epochs : int
    x_val, y_val : numpy.ndarray, optional
        Evaluated (quantized forward pass) after every epoch.
    seed : int
        Seeds shuffling, augmentation and the new layers.
    progress : bool
        Progress bar on stderr.
    recipe : dict, optional
        Overrides of :data:`RECIPES`.
    checkpoint : str, optional
        Per-epoch checkpoint path (``resume=True`` continues from it).
    distill, temperature : float
        Knowledge distillation from the fp32 model itself (run by lowbit on
        each augmented batch): the loss is :math:`(1 - \\lambda) L_{CE} +
        \\lambda L_{KD}` with :math:`\\lambda` = ``distill``
        (:func:`lowbit.train.loss.distillation` at ``temperature``).

    Returns
    -------
    lowbit.Model
        The quantized model; ``model.graph.metadata["finetune"]`` holds the recipe,
        the per-epoch history and the training time.
    """
    from . import api
    from .quant.quantize import quantize
    from .train import to_onnx, train

    if precision not in PRECISIONS:
        raise InputError(f"unknown fine-tuning precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise InputError(f"epochs must be a positive integer; got {epochs!r}")
    x_train = np.ascontiguousarray(x_train, dtype=np.float32)
    y_train = np.asarray(y_train)
    if x_train.ndim != 4 or len(x_train) != len(y_train) or len(x_train) == 0:
        raise InputError(f"need float32 (N, C, H, W) images and N labels; got {x_train.shape} and {y_train.shape}")
    net = qat_net(net_from_onnx(model_path, seed), precision, seed, sign_backward=sign_backward)
    if tuple(x_train.shape[1:]) != net.input_shape:
        raise InputError(f"images are {x_train.shape[1:]}, the model expects {net.input_shape}")
    r = {**RECIPES[precision], **(recipe or {}), "epochs": int(epochs), "distill": float(distill),
         "temperature": float(temperature)}
    teacher = None
    if distill:
        import onnx

        fp32 = api.load(model_path.SerializeToString() if isinstance(model_path, onnx.ModelProto) else model_path)
        teacher = lambda xb: fp32.run(xb, threads=1)  # noqa: E731
    r["batch_size"] = min(r["batch_size"], len(x_train))
    init_batchnorm(net, x_train[np.random.default_rng(seed).permutation(len(x_train))[:500]])
    t0 = time.perf_counter()
    info = train(net, x_train, y_train, r, seed=seed, x_test=x_val, y_test=y_val, checkpoint=checkpoint,
                 resume=resume, stream=sys.stderr if progress else None, teacher=teacher)
    seconds = time.perf_counter() - t0
    float_model = api.load(to_onnx(net, name=f"finetuned_{precision}").SerializeToString())
    q = quantize(float_model, precision, calibration=x_train[:1000])
    q.graph.metadata["finetune"] = {"precision": precision, "recipe": info["recipe"], "seed": seed,
                                    "sign_backward": sign_backward,
                                    "history": info["history"], "train_seconds": seconds}
    return q


def load_training_data(path):
    """``(x_train, y_train, x_test, y_test)`` of an .npz dataset (test arrays ``None`` when absent)."""
    from .data.npz import load_npz, read_npz

    x, y = load_npz(path, "train")
    try:
        read_npz(path, ["x_test", "y_test"])
    except LowbitError:
        return x, y, None, None
    xt, yt = load_npz(path, "test")
    return x, y, xt, yt


def main_finetune(args):
    """``lowbit finetune MODEL --precision P --data DATA.npz [--epochs N] [--seed S] -o OUT.lowbit``.

    ``args`` has ``model``, ``precision``, ``data``, ``epochs`` (None: 10),
    ``output``, ``seed`` (None: 0) and optionally ``distill``, ``temperature``, ``ema``
    (the recipe's moving-average decay, :func:`lowbit.train.train`) and ``sign_grad``.
    Writes ``output`` atomically; returns 0.
    """
    from . import api

    if not str(args.output).endswith(".lowbit"):
        raise InputError(f"output {args.output!r} must end in .lowbit")
    if not os.path.exists(args.model):
        raise InputError(f"model {args.model!r} does not exist")
    x, y, xt, yt = load_training_data(args.data)
    epochs = 10 if args.epochs is None else args.epochs
    q = finetune(args.model, args.precision, x, y, epochs=epochs, x_val=xt, y_val=yt,
                 seed=args.seed or 0, progress=True, distill=getattr(args, "distill", 0.0) or 0.0,
                 temperature=getattr(args, "temperature", 1.0) or 1.0,
                 recipe={"ema": getattr(args, "ema", 0.0) or 0.0},
                 sign_backward=getattr(args, "sign_grad", None) or "hardtanh")
    api.save(q, args.output)
    if xt is not None:
        acc = float((q.run(xt).argmax(axis=1) == yt).mean())
        print(f"{args.precision} fine-tuned: test accuracy {acc:.4f}; {args.output}")
    else:
        print(f"{args.precision} fine-tuned; {args.output}")
    return 0
