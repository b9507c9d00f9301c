"""Write the small committed conformance models to ``tests/data/conformance/``.

Tiny versions (8-32 channels, 32x32 to 64x64 inputs) of the corpus's network
shapes: a ResNet-style block net, a MobileNetV3-style net (depthwise, SE,
HardSwish), and the YOLOv8-, DBNet- and CRNN/SVTR-style models of
``hand_models.py``; each exported with the TorchScript exporter (opset 17) and
the dynamo exporter (opset 18) where it works, with seeded weights and
BatchNorm statistics re-estimated on smooth images.

The dynamo exporter writes per-node ``metadata_props`` (the Python stack
trace with this machine's paths, FX node text); they are debug information
with no effect on the graph, so they are removed before the files are
committed.  ``inputs.json`` in that folder gives each file's input shape
(C, H, W) and normalisation for ``tests/test_conformance_small.py``.

Usage (torch from the ``corpus`` extra; run from the repository root)::

    nice -n 10 python eval/conformance/build_small.py [--out tests/data/conformance]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

DEFAULT_OUT = os.path.join(ROOT, "tests", "data", "conformance")
MAX_BYTES = 300_000

#: name -> (hand_models constructor, input (C, H, W), dynamic height/width, argmax spec for run_corpus.py)
SMALL = {
    "resnet_blocks": ("TinyResNet", (3, 32, 32), False, {"axis": 1}),
    "mobilenetv3_like": ("TinyMobileNetV3", (3, 64, 64), False, {"axis": 1}),
    "yolov8_like": ("small_yolo", (3, 64, 64), True, {"axis": 1, "start": 4}),
    "dbnet_like": ("small_dbnet", (3, 64, 64), False, None),
    "crnn_svtr_like": ("small_crnn", (3, 32, 64), False, {"axis": -1}),
}


def strip_metadata(path):
    """Drop node ``metadata_props`` and doc strings (exporter debug info) and rewrite the file."""
    import onnx

    model = onnx.load(path)
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    model.graph.doc_string = ""
    onnx.save(model, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--models", help=f"comma-separated subset of {', '.join(SMALL)} (others kept in inputs.json)")
    args = parser.parse_args(argv)

    import torch

    import hand_models
    from exporting import describe, export_both, reestimate_batchnorm

    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    inputs = {}
    failed = []
    names = args.models.split(",") if args.models else list(SMALL)
    if os.path.exists(os.path.join(args.out, "inputs.json")):
        with open(os.path.join(args.out, "inputs.json")) as f:
            inputs = {k: v for k, v in json.load(f).items() if k.split(".")[0] not in names}
    for name in names:
        ctor, shape, dynamic_hw, argmax = SMALL[name]
        print(f"[{name}]", flush=True)
        torch.manual_seed(0)
        model = reestimate_batchnorm(getattr(hand_models, ctor)(), shape, batches=10)
        for entry in export_both(model, name, shape, args.out, dynamic_hw=dynamic_hw):
            if entry["status"] != "ok":
                failed.append(f"{entry['name']}: {entry['reason']}")
                continue
            path = os.path.join(args.out, entry["file"])
            strip_metadata(path)
            size = describe(path)["bytes"]
            if size > MAX_BYTES:
                print(f"  warning: {entry['file']} is {size} bytes (> {MAX_BYTES})")
            inputs[entry["file"]] = {"shape": list(shape), "mean": entry.get("mean", [0.485, 0.456, 0.406]),
                                     "std": entry.get("std", [0.229, 0.224, 0.225]), "exporter": entry["exporter"],
                                     "opset": entry["opset"], "bytes": size, "ops": entry["ops"],
                                     "argmax": argmax}
    with open(os.path.join(args.out, "inputs.json"), "w") as f:
        json.dump(inputs, f, indent=1, sort_keys=True)
    print(f"wrote {len(inputs)} models to {args.out}")
    for line in failed:
        print(f"not written: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
