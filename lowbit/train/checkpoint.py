"""Checkpoints: arrays in an .npz (no pickle) plus a JSON sidecar for everything else."""
from __future__ import annotations

import json
import os

import numpy as np


def _sidecar(path):
    return os.path.splitext(os.fspath(path))[0] + ".json"


def save_checkpoint(path, net, optimizer, info):
    """Write ``path`` (.npz: ``net/<key>`` and ``opt/<key>`` arrays) and ``<path stem>.json``.

    Both files are written to a temporary name and renamed, so a crash never
    leaves a half-written checkpoint.

    Parameters
    ----------
    info : dict
        JSON-serialisable training state (epoch, RNG states, history, recipe).
    """
    path = os.fspath(path)
    arrays = {f"net/{k}": v for k, v in net.state().items()}
    opt_arrays, opt_scalars = optimizer.state()
    arrays.update({f"opt/{k}": v for k, v in opt_arrays.items()})
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    side = _sidecar(path)
    with open(side + ".tmp", "w") as f:
        json.dump({**info, "optimizer": {"name": optimizer.name, **opt_scalars}}, f, indent=1)
    os.replace(tmp, path)
    os.replace(side + ".tmp", side)


def load_checkpoint(path, net, optimizer):
    """Restore ``net`` and ``optimizer`` in place from a checkpoint; return the JSON info."""
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
    return info
