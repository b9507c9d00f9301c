"""fp32 LSTM (ONNX opsets 7 and 14): the recurrent layer of CRNN-style text recognizers.

For each direction, with gates in ONNX's ``i, o, f, c`` order, weights ``W`` (4H, I), ``R`` (4H, H), biases
``Wb + Rb`` and peepholes ``P = [Pi, Po, Pf]``::

    i_t = f(X_t W_i^T + H_{t-1} R_i^T + P_i ⊙ C_{t-1} + b_i)
    f_t = f(X_t W_f^T + H_{t-1} R_f^T + P_f ⊙ C_{t-1} + b_f)      (1 - i_t with input_forget=1)
    c_t = g(X_t W_c^T + H_{t-1} R_c^T + b_c)
    C_t = f_t ⊙ C_{t-1} + i_t ⊙ c_t
    o_t = f(X_t W_o^T + H_{t-1} R_o^T + P_o ⊙ C_t + b_o)
    H_t = o_t ⊙ h(C_t)

``f, g, h`` default to Sigmoid, Tanh, Tanh; ``clip`` bounds every gate input to ``[-clip, clip]``. A batch entry
stops at its ``sequence_lens``: later steps of ``Y`` are 0 and ``Y_h``/``Y_c`` keep its last state. The input
projection of all steps is one matrix product; each step then adds ``H_{t-1} R^T`` (numpy's BLAS: the work is a
chain of small products, which a Numba loop would not beat). Arithmetic in float32, as onnxruntime's.
"""
from __future__ import annotations

import numpy as np

_ACTIVATIONS = {
    "sigmoid": (0, lambda x, a, b: 1.0 / (1.0 + np.exp(-x))),
    "tanh": (0, lambda x, a, b: np.tanh(x)),
    "relu": (0, lambda x, a, b: np.maximum(x, 0)),
    "hardsigmoid": (2, lambda x, a, b: np.clip(a * x + b, 0, 1)),
    "affine": (2, lambda x, a, b: a * x + b),
    "leakyrelu": (1, lambda x, a, b: np.where(x >= 0, x, a * x)),
    "thresholdedrelu": (1, lambda x, a, b: np.where(x > a, x, 0)),
    "scaledtanh": (2, lambda x, a, b: a * np.tanh(b * x)),
    "elu": (1, lambda x, a, b: np.where(x >= 0, x, a * (np.exp(x) - 1))),
    "softsign": (0, lambda x, a, b: x / (1 + np.abs(x))),
    "softplus": (0, lambda x, a, b: np.log1p(np.exp(x))),
}
_DEFAULT_ALPHA = {"hardsigmoid": 0.2, "leakyrelu": 0.01, "thresholdedrelu": 1.0, "elu": 1.0, "affine": 1.0,
                  "scaledtanh": 1.0}
_DEFAULT_BETA = {"hardsigmoid": 0.5, "affine": 0.0, "scaledtanh": 1.0}


def _activation_functions(names, alphas, betas, count):
    """The ``count`` activation functions (name, alpha, beta consumed in order as the spec says)."""
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in names] if names else []
    alphas, betas = list(alphas or ()), list(betas or ())
    if len(names) != count:
        raise ValueError(f"LSTM: {count} activations expected (3 per direction), got {names}")
    out = []
    for name in names:
        key = name.lower()
        if key not in _ACTIVATIONS:
            raise ValueError(f"LSTM: activation {name!r} is not one of {sorted(_ACTIVATIONS)}")
        arity, fn = _ACTIVATIONS[key]
        a = alphas.pop(0) if arity >= 1 and alphas else _DEFAULT_ALPHA.get(key, 0.0)
        b = betas.pop(0) if arity >= 2 and betas else _DEFAULT_BETA.get(key, 0.0)
        out.append(lambda x, fn=fn, a=np.float32(a), b=np.float32(b): fn(x, a, b).astype(np.float32))
    return out


def lstm(X, W, R, B=None, sequence_lens=None, initial_h=None, initial_c=None, P=None, *, activation_alpha=None,
         activation_beta=None, activations=None, clip=None, direction="forward", hidden_size=None, input_forget=0,
         layout=0):
    """ONNX ``LSTM`` in float32 (see the module docstring for the equations).

    Parameters
    ----------
    X : ndarray
        (seq, batch, input) with ``layout=0``, (batch, seq, input) with ``layout=1``.
    W, R, B, sequence_lens, initial_h, initial_c, P
        As in the ONNX operator (``num_directions`` leading; ``B`` is ``[Wb, Rb]``, ``P`` is ``[Pi, Po, Pf]``).
    activation_alpha, activation_beta, activations, clip, direction, hidden_size, input_forget, layout
        As in the ONNX operator.

    Returns
    -------
    tuple of ndarray
        ``Y`` (seq, num_directions, batch, hidden) (batch-major with ``layout=1``), ``Y_h`` and ``Y_c``
        (num_directions, batch, hidden) (batch-major with ``layout=1``).
    """
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction not in ("forward", "reverse", "bidirectional"):
        raise ValueError(f"LSTM: direction {direction!r}; expected forward, reverse or bidirectional")
    dirs = 2 if direction == "bidirectional" else 1
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 3:
        raise ValueError(f"LSTM: X must be 3-D, got shape {X.shape}")
    if layout:
        X = X.transpose(1, 0, 2)
    seq, batch, isize = X.shape
    W, R = np.asarray(W, np.float32), np.asarray(R, np.float32)
    hidden = W.shape[1] // 4 if hidden_size is None else int(hidden_size)
    if W.shape != (dirs, 4 * hidden, isize) or R.shape != (dirs, 4 * hidden, hidden):
        raise ValueError(f"LSTM: W {W.shape} and R {R.shape} do not fit {dirs} direction(s), hidden size {hidden} "
                         f"and input size {isize}")
    B = np.zeros((dirs, 8 * hidden), np.float32) if B is None else np.asarray(B, np.float32)
    P = np.zeros((dirs, 3 * hidden), np.float32) if P is None else np.asarray(P, np.float32)
    if B.shape != (dirs, 8 * hidden) or P.shape != (dirs, 3 * hidden):
        raise ValueError(f"LSTM: B {B.shape} must be ({dirs}, {8 * hidden}) and P {P.shape} ({dirs}, {3 * hidden})")
    lens = np.full(batch, seq, np.int64) if sequence_lens is None else np.asarray(sequence_lens, np.int64).reshape(-1)
    if lens.shape != (batch,) or (lens < 0).any() or (lens > seq).any():
        raise ValueError(f"LSTM: sequence_lens {lens.tolist()} must hold {batch} lengths in [0, {seq}]")
    def state(value):
        if value is None:
            return np.zeros((dirs, batch, hidden), np.float32)
        value = np.asarray(value, np.float32)
        return value.transpose(1, 0, 2) if layout and value.ndim == 3 else value

    h0, c0 = state(initial_h), state(initial_c)
    if h0.shape != (dirs, batch, hidden) or c0.shape != (dirs, batch, hidden):
        raise ValueError(f"LSTM: initial states {h0.shape}, {c0.shape}; expected ({dirs}, {batch}, {hidden})")
    funcs = _activation_functions(activations or ["Sigmoid", "Tanh", "Tanh"] * dirs, activation_alpha,
                                  activation_beta, 3 * dirs)
    Y = np.zeros((seq, dirs, batch, hidden), np.float32)
    Y_h = np.empty((dirs, batch, hidden), np.float32)
    Y_c = np.empty((dirs, batch, hidden), np.float32)
    for d in range(dirs):
        f, g, h = funcs[3 * d:3 * d + 3]
        backward = direction == "reverse" or d == 1
        gates_x = X @ W[d].T + (B[d, :4 * hidden] + B[d, 4 * hidden:])     # (seq, batch, 4H)
        p_i, p_o, p_f = P[d, :hidden], P[d, hidden:2 * hidden], P[d, 2 * hidden:]
        h_t, c_t = h0[d].copy(), c0[d].copy()
        for step in range(seq):
            live = lens > step
            # Reverse order runs each sequence from its own last valid step.
            t = np.where(live, lens - 1 - step, 0) if backward else np.full(batch, step)
            z = gates_x[t, np.arange(batch)] + h_t @ R[d].T
            if clip is not None:
                z = np.clip(z, -clip, clip)
            zi, zo, zf, zc = (z[:, k * hidden:(k + 1) * hidden] for k in range(4))
            i_t = f(zi + p_i * c_t)
            f_t = (np.float32(1) - i_t) if input_forget else f(zf + p_f * c_t)
            c_new = f_t * c_t + i_t * g(zc)
            o_t = f(zo + p_o * c_new)
            h_new = o_t * h(c_new)
            h_t = np.where(live[:, None], h_new, h_t)
            c_t = np.where(live[:, None], c_new, c_t)
            Y[t[live], d, np.nonzero(live)[0]] = h_new[live]
        Y_h[d], Y_c[d] = h_t, c_t
    if layout:
        return Y.transpose(2, 0, 1, 3).copy(), Y_h.transpose(1, 0, 2).copy(), Y_c.transpose(1, 0, 2).copy()
    return Y, Y_h, Y_c
