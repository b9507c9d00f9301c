"""AdaRound: learned rounding of the weights, layer by layer (Nagel et al., "Up or Down?", 2020).

Rounding each weight to nearest is not what minimises a layer's output
error.  AdaRound keeps each weight on the per-channel grid ``s·q`` and learns,
for every weight, whether ``q`` is ``floor(w/s)`` or ``floor(w/s) + 1``:

    W̃ = s · clip(floor(W / s) + h(V), -qmax, qmax)
    h(V) = clip(σ(V) · (ζ - γ) + γ, 0, 1),   ζ = 1.1, γ = -0.1   (rectified sigmoid)

minimising, over minibatches of the layer's calibration inputs,

    ‖f(W̃ x̃ + b) - f(W x + b)‖²  +  λ Σ (1 - |2h(V) - 1|^β)

where ``f`` is the layer's fused clamp (ReLU), ``x`` its input in the fp32
model, ``x̃`` its input in the quantized model with every earlier layer
already rounded (``quantized_inputs=True``, the default; else ``x̃ = x``),
``‖·‖²`` the squared error summed over output channels and averaged over
output positions.  The regulariser pushes every ``h`` to 0 or 1: it is off
for the first 20% of the iterations, then ``β`` anneals linearly from 20 to 2.
``V`` starts where ``h(V)`` equals the fractional part of ``w/s`` and is
trained with Adam (:class:`lowbit.train.optim.Adam`); the result is the hard
rounding ``q = clip(floor(w/s) + [h(V) ≥ 0.5], -qmax, qmax)`` — every ``q`` is
the floor or the ceiling of ``w/s`` (or the clip bound).

Grid: ``qmax = 2^(k-1) - 1`` for int-k weights, 1 for ternary
(``{-α, 0, +α}``).  Before rounding, each output channel's scale is the
``s = ρ · max|W_m| / qmax`` (``ρ`` over a grid in (0, 1]) that minimises
``‖W_m - s·round(W_m/s)‖²``: at 8 bits this is max-abs, at 2-3 bits and
ternary it clips the largest weights.  A Conv is an im2col matrix product:
the rows are output positions sampled from the calibration images (at most
``max_rows``), each with its patch and its fp32 target.
"""
from __future__ import annotations

import time

import numpy as np

from ..formats.precision import get as get_precision
from ..train.optim import Adam
from .layer_io import activate, anchor_nodes, layer_inputs, patches, pre_activation
from .weights import layer_weights

ZETA, GAMMA = 1.1, -0.1
DEFAULTS = {"iterations": 1000, "batch_size": 512, "learning_rate": 1e-2, "weight": 0.01, "beta": (20.0, 2.0),
            "warmup": 0.2, "max_rows": 1 << 16, "quantized_inputs": True, "seed": 0}


def rectified_sigmoid(v: np.ndarray) -> np.ndarray:
    """``h(V) = clip(σ(V)·(ζ - γ) + γ, 0, 1)``."""
    return np.clip(1.0 / (1.0 + np.exp(-v)) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def grid_qmax(precision) -> int:
    """Largest grid level of a weight precision: ``2^(k-1) - 1`` (int-k), 1 (ternary)."""
    spec = get_precision(precision)
    if spec.kind == "int":
        return spec.qmax
    if spec.kind == "ternary":
        return 1
    raise ValueError(f"AdaRound rounds int2..int8 and ternary weights, not {spec.name}")


def mse_scale(w: np.ndarray, qmax: int, steps: int = 100) -> np.ndarray:
    """Per-output-channel scale ``ρ·max|W_m|/qmax`` with the least rounding error ``‖W_m - s·round(W_m/s)‖²``."""
    flat = np.asarray(w, np.float64).reshape(len(w), -1)
    amax = np.abs(flat).max(axis=1)
    best, best_err = np.where(amax > 0, amax / qmax, 1.0), np.full(len(flat), np.inf)
    for ratio in np.linspace(1.0, 1.0 / steps, steps):
        s = np.where(amax > 0, ratio * amax / qmax, 1.0)
        err = ((flat - s[:, None] * np.clip(np.rint(flat / s[:, None]), -qmax, qmax)) ** 2).sum(axis=1)
        better = err < best_err
        best, best_err = np.where(better, s, best), np.where(better, err, best_err)
    return best


def layer_rows(node, x: np.ndarray, x_q: np.ndarray, w: np.ndarray, bias, max_rows: int, rng) -> tuple:
    """Sampled rows ``(patches of x̃ (R, G, K/G), fp32 targets f(W x + b) (R, M))``."""
    if node.op_type != "Conv":
        x, x_q = x.reshape(len(x), -1), x_q.reshape(len(x_q), -1)
        keep = np.sort(rng.choice(len(x), size=min(len(x), max_rows), replace=False))
        target = activate(node, pre_activation(node, x[keep], w, bias))
        return np.ascontiguousarray(x_q[keep], dtype=np.float32)[:, None, :], target.astype(np.float32)
    kernel = w.shape[2:]
    y = pre_activation(node, x[:1], w, bias)
    per_image = y.shape[2] * y.shape[3]
    total = len(x) * per_image
    keep = np.sort(rng.choice(total, size=min(total, max_rows), replace=False))
    rows_q, targets = [], []
    chunk = max(1, (1 << 22) // max(1, per_image * w[0].size))  # images per im2col chunk (~16 MB)
    for start in range(0, len(x), chunk):
        lo, hi = start * per_image, min(len(x), start + chunk) * per_image
        sel = keep[(keep >= lo) & (keep < hi)] - lo
        if not len(sel):
            continue
        rows_q.append(patches(node, x_q[start:start + chunk], kernel)[sel])
        y = activate(node, pre_activation(node, x[start:start + chunk], w, bias))
        targets.append(y.transpose(0, 2, 3, 1).reshape(-1, y.shape[1])[sel])
    return np.concatenate(rows_q), np.concatenate(targets).astype(np.float32)


def round_layer(node, w: np.ndarray, bias, scale: np.ndarray, qmax: int, rows: np.ndarray, targets: np.ndarray,
                *, iterations: int, batch_size: int, learning_rate: float, weight: float, beta=(20.0, 2.0),
                warmup: float = 0.2, rng=None) -> tuple:
    """Learn the rounding of one layer; returns ``(q int8 in w's shape, {"loss_nearest", "loss_adaround"})``.

    ``rows`` are ``(R, G, K/G)`` input patches, ``targets`` ``(R, M)``.
    """
    rng = rng or np.random.default_rng(0)
    m = len(w)
    group = rows.shape[1]
    flat = np.asarray(w, np.float64).reshape(m, -1) / scale[:, None]
    base = np.floor(flat)
    rest = np.clip(flat - base, 1e-4, 1 - 1e-4)
    v = (-np.log((ZETA - GAMMA) / (rest - GAMMA) - 1.0)).astype(np.float32)
    base = base.astype(np.float32)
    s = scale.astype(np.float32)[:, None]
    b = np.zeros(m, np.float32) if bias is None else np.asarray(bias, np.float32)
    lo, hi = node.attrs.get("clip_min", -np.inf), node.attrs.get("clip_max", np.inf)

    def forward(q_levels, x):
        """``x`` (G, B, K/G) → (B, M)."""
        wg = (s * q_levels).reshape(group, m // group, -1)
        if group == 1:
            return x[0] @ wg[0].T + b
        return np.matmul(x, wg.transpose(0, 2, 1)).transpose(1, 0, 2).reshape(x.shape[1], m) + b

    rows = np.ascontiguousarray(rows.transpose(1, 0, 2))  # (G, R, K/G): minibatches stay contiguous

    def loss(q_levels):
        total = 0.0
        for start in range(0, rows.shape[1], 8192):
            out = np.clip(forward(q_levels, rows[:, start:start + 8192]), lo, hi)
            total += float(((out - targets[start:start + 8192]) ** 2).sum())
        return total / rows.shape[1]

    nearest = np.clip(np.rint(flat), -qmax, qmax).astype(np.float32)
    optimizer = Adam()
    params = {"v": v}
    start_reg = int(warmup * iterations)
    for step in range(iterations):
        pick = rng.integers(0, rows.shape[1], size=min(batch_size, rows.shape[1]))
        x, target = rows[:, pick], targets[pick]
        sig = 1.0 / (1.0 + np.exp(-v))
        h_raw = sig * (ZETA - GAMMA) + GAMMA
        h = np.clip(h_raw, 0.0, 1.0)
        level = base + h
        inside = (level >= -qmax) & (level <= qmax)
        out = forward(np.clip(level, -qmax, qmax), x)
        diff = np.clip(out, lo, hi) - target
        grad_out = (2.0 / len(target)) * diff * ((out >= lo) & (out <= hi))
        if group == 1:
            grad_w = grad_out.T @ x[0]                                            # (M, K)
        else:
            gg = np.ascontiguousarray(grad_out.reshape(len(target), group, m // group).transpose(1, 2, 0))
            grad_w = np.matmul(gg, x).reshape(m, -1)                              # (G, M/G, B) @ (G, B, K/G)
        grad_h = grad_w * s * inside
        if step >= start_reg:
            t = (step - start_reg) / max(1, iterations - start_reg)
            exponent = beta[0] + (beta[1] - beta[0]) * t
            u = 2.0 * h - 1.0
            grad_h = grad_h - weight * exponent * np.abs(u) ** (exponent - 1.0) * np.sign(u) * 2.0
        grad_v = grad_h * (ZETA - GAMMA) * sig * (1.0 - sig) * ((h_raw > 0.0) & (h_raw < 1.0))
        optimizer.step(params, {"v": grad_v.astype(np.float32)}, learning_rate)
    q = np.clip(base + (rectified_sigmoid(v) >= 0.5), -qmax, qmax)
    return q.astype(np.int8).reshape(w.shape), {"loss_nearest": loss(nearest), "loss_adaround": loss(q)}


def adaround(graph, calibration, convert, *, fixed_weights=None, **settings) -> tuple:
    """Learn the rounding of every integer Conv/Gemm of ``graph``, in order.

    Parameters
    ----------
    graph : Graph
        fp32 graph to convert (after equalization, if any).
    calibration : ndarray or dict
    convert : callable
        ``convert(graph, fixed_weights) -> integer graph`` (every other setting fixed).
    settings
        Overrides of :data:`DEFAULTS` (iterations, batch_size, learning_rate,
        weight = λ, beta, warmup, max_rows, quantized_inputs, seed).

    Returns
    -------
    fixed_weights : dict
        ``{weight constant: (q, scale, 0)}`` for :func:`lowbit.quant.convert_int.convert_int`.
    info : dict
        Settings, seconds, and per layer the reconstruction loss with nearest and learned rounding.
    """
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown AdaRound settings {unknown}; expected some of {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **settings}
    rng = np.random.default_rng(opts["seed"])
    fixed = dict(fixed_weights or {})
    start = time.perf_counter()
    layers = {}
    for node in anchor_nodes(graph):
        if node.inputs[1] in fixed or not (node.op_type == "Conv" or (
                node.op_type == "Gemm" and node.attrs.get("transB", 0) and node.attrs.get("alpha", 1.0) == 1.0)):
            continue
        quantized = convert(graph, fixed)
        qnode = next((n for n in quantized.nodes if n.name == node.name), None)
        if qnode is None or "w_scale" not in qnode.quant or get_precision(qnode.precision).kind not in ("int", "ternary"):
            continue
        qmax = grid_qmax(qnode.precision)
        w, bias = layer_weights(graph, node)
        x = layer_inputs(graph, node.name, calibration)
        x_q = layer_inputs(quantized, node.name, calibration) if opts["quantized_inputs"] else x
        rows, targets = layer_rows(node, x, x_q, w, bias, opts["max_rows"], rng)
        del x, x_q
        scale = mse_scale(w, qmax)
        q, losses = round_layer(node, w, bias, scale, qmax, rows, targets, iterations=opts["iterations"],
                                batch_size=opts["batch_size"], learning_rate=opts["learning_rate"],
                                weight=opts["weight"], beta=opts["beta"], warmup=opts["warmup"], rng=rng)
        fixed[node.inputs[1]] = (q, scale, 0)
        layers[node.name] = {"precision": qnode.precision, "rows": int(len(rows)), **losses}
    info = {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.items()}
    info.update(layers=layers, seconds=time.perf_counter() - start)
    return fixed, info
