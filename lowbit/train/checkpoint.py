"""Checkpoints: arrays in an .npz (no pickle) plus a JSON sidecar for everything else."""
from __future__ import annotations

import json
import os

import numpy as np


def _sidecar(path):
    return os.path.splitext(os.fspath(path))[0] + ".json"


def save_checkpoint(path, net, optimizer, info, average=None):
    """Write ``path`` (.npz: ``net/<key>``, ``opt/<key>`` and ``avg/<key>`` arrays) and ``<path stem>.json``.

    Both files are written to a temporary name and renamed, so a crash never
    leaves a half-written checkpoint.

    Parameters
    ----------
    info : dict
        JSON-serialisable training state (epoch, RNG states, history, recipe).
    average : dict, optional
        ``{"node.param": array}`` of averaged parameters (the trainer's ``ema``).
    """
    path = os.fspath(path)
    arrays = {f"net/{k}": v for k, v in net.state().items()}
    opt_arrays, opt_scalars = optimizer.state()
    arrays.update({f"opt/{k}": v for k, v in opt_arrays.items()})
    arrays.update({f"avg/{k}": v for k, v in (average or {}).items()})
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    side = _sidecar(path)
    with open(side + ".tmp", "w") as f:
        json.dump({**info, "optimizer": {"name": optimizer.name, **opt_scalars}}, f, indent=1)
    os.replace(tmp, path)
    os.replace(side + ".tmp", side)


def load_checkpoint(path, net, optimizer, average=None):
    """Restore ``net``, ``optimizer`` (and the arrays of ``average``) in place; return the JSON info.

    Raises
    ------
    ValueError
        ``average`` is given but the checkpoint lacks one of its arrays.
    """
    path = os.fspath(path)
    with open(_sidecar(path)) as f:
        info = json.load(f)
    with np.load(path, allow_pickle=False) as d:
        arrays = {k: d[k] for k in d.files}
    net.load_state({k[4:]: v for k, v in arrays.items() if k.startswith("net/")})
    opt = info["optimizer"]
    if opt["name"] != optimizer.name:
        raise ValueError(f"checkpoint optimizer {opt['name']!r} differs from {optimizer.name!r}")
    optimizer.load_state({k[4:]: v for k, v in arrays.items() if k.startswith("opt/")}, opt)
    for k, v in (average or {}).items():
        if f"avg/{k}" not in arrays:
            raise ValueError(f"checkpoint {path} holds no average of {k!r}; it was written without ema")
        np.copyto(v, arrays[f"avg/{k}"])
    return info
