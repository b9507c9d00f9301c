"""A network as an ordered list of named layers wired by name (a small DAG)."""
from __future__ import annotations

import numpy as np

from lowbit.train.layers import Dropout


class Net:
    """Layers in topological order; each node reads named tensors and writes its own name.

    ``"input"`` names the network input; the last node's output is the network output
    (logits). Backward runs the nodes in reverse, summing gradients where a tensor
    feeds several nodes.

    Parameters
    ----------
    seed : int
        Seeds weight init (:attr:`init_rng`) and dropout masks (:attr:`dropout_rng`).
    input_shape : tuple of int
        ``(C, H, W)`` of one image, recorded in the exported ONNX graph.
    """

    INPUT = "input"

    def __init__(self, seed=0, input_shape=(1, 28, 28)):
        init_ss, drop_ss = np.random.SeedSequence([seed, 0]).spawn(2)
        self.init_rng = np.random.default_rng(init_ss)
        self.dropout_rng = np.random.default_rng(drop_ss)
        self.input_shape = tuple(input_shape)
        self.nodes = []  # (name, layer, [input names])
        self._names = {self.INPUT}

    def add(self, name, layer, inputs=None):
        """Append a layer; ``inputs`` default to the previous node's output.

        Returns
        -------
        str
            ``name``, to wire later nodes.
        """
        if name in self._names:
            raise ValueError(f"duplicate node name {name!r}")
        if inputs is None:
            inputs = [self.nodes[-1][0] if self.nodes else self.INPUT]
        elif isinstance(inputs, str):
            inputs = [inputs]
        unknown = [i for i in inputs if i not in self._names]
        if unknown:
            raise ValueError(f"node {name!r} reads unknown tensor(s) {unknown}; known: {sorted(self._names)}")
        layer.need_dx = any(i != self.INPUT for i in inputs)
        if isinstance(layer, Dropout):
            layer.rng = self.dropout_rng
        self.nodes.append((name, layer, list(inputs)))
        self._names.add(name)
        return name

    @property
    def output(self):
        return self.nodes[-1][0]

    def forward(self, x, train=False):
        """Logits of a batch; ``train`` enables dropout, batch statistics and caching for backward."""
        values = {self.INPUT: x}
        for name, layer, inputs in self.nodes:
            values[name] = layer.forward(*(values[i] for i in inputs), train=train)
        return values[self.output]

    def backward(self, dout):
        """Fill every layer's ``grads`` from the gradient of the loss w.r.t. the logits."""
        grads = {self.output: dout}
        for name, layer, inputs in reversed(self.nodes):
            dy = grads.pop(name, None)
            if dy is None:  # the output of this node does not reach the loss
                continue
            dxs = layer.backward(dy)
            for i, dx in zip(inputs, dxs):
                if i == self.INPUT or dx is None:
                    continue
                grads[i] = dx if i not in grads else grads[i] + dx

    def predict(self, x, batch_size=500):
        """Inference-mode logits, computed in batches."""
        return np.concatenate([self.forward(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])

    def parameters(self):
        """``{"node.param": array}`` of all trainable arrays (the live arrays, not copies)."""
        return {f"{n}.{k}": v for n, layer, _ in self.nodes for k, v in layer.params.items()}

    def gradients(self):
        return {f"{n}.{k}": layer.grads[k] for n, layer, _ in self.nodes for k in layer.params}

    def state(self):
        """Params and buffers, ``{"node.name": array}`` (for checkpoints)."""
        out = {}
        for n, layer, _ in self.nodes:
            for store in (layer.params, layer.buffers):
                out.update({f"{n}.{k}": v for k, v in store.items()})
        return out

    def load_state(self, arrays):
        """Copy arrays saved by :meth:`state` into the layers (shapes must match)."""
        for n, layer, _ in self.nodes:
            for store in (layer.params, layer.buffers):
                for k, v in store.items():
                    key = f"{n}.{k}"
                    if key not in arrays:
                        raise KeyError(f"state lacks {key!r}")
                    if arrays[key].shape != v.shape:
                        raise ValueError(f"{key}: saved shape {arrays[key].shape} != {v.shape}")
                    store[k] = np.array(arrays[key], dtype=v.dtype)

    def astype(self, dtype):
        for _, layer, _ in self.nodes:
            layer.astype(dtype)
        return self

    def param_count(self):
        return int(sum(v.size for v in self.parameters().values()))
