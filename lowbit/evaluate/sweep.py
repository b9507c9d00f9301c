"""The precision sweep: quantize, save, reload, run the test set, measure.

Every precision's numbers come from the saved ``.lowbit`` file reloaded from
disk, so ``lowbit run`` on that file reproduces them.  Throughput is
measured after a warm-up batch (which also compiles the kernels; its time
is reported as ``compile_seconds``).

The test set is either arrays (:func:`sweep`: each precision in turn, in
worker processes with ``jobs``) or an iterable of ``(x, y)`` batches, ``y``
``None`` without labels (:func:`sweep_batches`: the data is read once, every
precision runs on each batch beside fp32, nothing but one batch is held).
Without labels the accuracy columns are ``None``; agreement with fp32,
top-5 agreement, output SQNR and (for batches) per-layer SQNR are reported
for any output shape (:mod:`lowbit.evaluate.label_free`).

``include`` adds already quantized ``.lowbit`` files (e.g. a fine-tuned
binary model) as rows next to the post-training row of their precision;
``reference=True`` times onnxruntime's fp32 and its own QDQ int8 on the same
images (:mod:`lowbit.evaluate.ort_reference`; a note when it is not installed).
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..formats.precision import get as get_precision
from ..console import Progress, set_quiet
from .label_free import Comparison, LabelScore, LayerSQNR, compare, output_kind
from .metrics import top1, topk


@dataclass
class PrecisionResult:
    """One row of a sweep (see the README for the meaning of each field)."""

    precision: str
    bits: int
    accuracy: float | None
    top5: float | None
    drop: float | None
    agreement: float | None
    size_bytes: int
    images_per_s: float
    calibration_seconds: float
    compile_seconds: float
    overflow: int
    model_file: str
    agreement_top5: float | None = None
    sqnr_db: float | None = None

    def as_dict(self) -> dict:
        """The row as plain JSON values (an infinite SQNR, identical outputs, is written as None)."""
        row = asdict(self)
        if row["sqnr_db"] is not None and not np.isfinite(row["sqnr_db"]):
            row["sqnr_db"] = None
        return row


@dataclass
class SweepResult:
    model: str
    dataset: str
    n_test: int
    results: list = field(default_factory=list)
    calibration: dict = field(default_factory=dict)
    labelled: bool = True
    output: str = "scores"
    skipped: int = 0
    preprocessing: str = ""
    layer_sqnr: dict = field(default_factory=dict)
    reference: dict = field(default_factory=dict)
    command: str = ""
    settings: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        doc = {"model": self.model, "dataset": self.dataset, "n_test": self.n_test,
               "calibration": self.calibration, "results": [r.as_dict() for r in self.results]}
        if self.reference:
            doc["reference"] = self.reference
        if self.command or self.settings:
            doc.update(command=self.command, settings=self.settings)
        if not self.labelled or self.output != "scores" or self.skipped or self.preprocessing or self.layer_sqnr:
            layers = {p: {k: (v if v is None or np.isfinite(v) else None) for k, v in rows.items()}
                      for p, rows in self.layer_sqnr.items()}
            doc.update(labelled=self.labelled, output=self.output, skipped=self.skipped,
                       preprocessing=self.preprocessing, layer_sqnr=layers)
        return doc

    @classmethod
    def from_dict(cls, doc: dict) -> "SweepResult":
        """Read back what :meth:`as_dict` wrote (results.json)."""
        return cls(model=doc["model"], dataset=doc["dataset"], n_test=doc["n_test"],
                   calibration=doc.get("calibration", {}),
                   results=[PrecisionResult(**row) for row in doc["results"]],
                   labelled=doc.get("labelled", True), output=doc.get("output", "scores"),
                   skipped=doc.get("skipped", 0), preprocessing=doc.get("preprocessing", ""),
                   layer_sqnr=doc.get("layer_sqnr", {}), reference=doc.get("reference", {}),
                   command=doc.get("command", ""), settings=doc.get("settings", {}))

    def get(self, precision: str) -> PrecisionResult:
        return next(r for r in self.results if r.precision == precision)


def timed_run(model, x, batch_size: int, threads: int | None) -> tuple:
    """Run ``x``; return ``(outputs, warm seconds, compile seconds)``."""
    start = time.perf_counter()
    model.run(_head(x, 8), batch_size=batch_size, threads=threads)
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    out = model.run(x, batch_size=batch_size, threads=threads)
    seconds = time.perf_counter() - start
    if isinstance(out, dict):
        out = next(iter(out.values()))
    return np.asarray(out), seconds, compile_seconds


def _samples(x) -> int:
    """Number of samples in an array or in a dict ``{input name: array}`` (several inputs)."""
    return len(next(iter(x.values()))) if isinstance(x, dict) else len(x)


def _head(x, n: int):
    """The first ``n`` samples of an array or of every array of a dict."""
    if isinstance(x, dict):
        return {name: value[:n] for name, value in x.items()}
    return x[:n]


def build_precision(source: str, precision: str, calibration, method: str, models_dir: str,
                    options: dict | None = None) -> dict:
    """Quantize ``source`` to ``precision`` and save it as ``models_dir/<precision>.lowbit``.

    Returns the :class:`PrecisionResult` fields known before running:
    precision, bits, size_bytes, calibration_seconds, model_file.
    """
    import lowbit

    spec = get_precision(precision)
    base = lowbit.load(source)
    quantized = lowbit.quantize(base, spec, calibration=calibration, method=method, **(options or {}))
    path = Path(models_dir) / f"{spec.name}.lowbit"
    lowbit.save(quantized, path)
    return dict(precision=spec.name, bits=spec.bits, size_bytes=path.stat().st_size,
                calibration_seconds=float(quantized.graph.metadata.get("calibration_seconds", 0.0)),
                model_file=str(path))


def evaluate_precision(source: str, precision: str, x_test, y_test, calibration, method: str,
                       models_dir: str, batch_size: int = 256, threads: int | None = None,
                       options: dict | None = None) -> tuple:
    """Quantize ``source`` to ``precision``, save it, reload it, run the test set.

    Returns
    -------
    scores : ndarray
        The model's outputs on ``x_test``.
    row : dict
        Every :class:`PrecisionResult` field except ``drop`` and the agreements
        (``accuracy`` and ``top5`` are None when ``y_test`` is None).
    """
    import lowbit

    row = build_precision(source, precision, calibration, method, models_dir, options)
    model = lowbit.load(row["model_file"])
    scores, seconds, compile_seconds = timed_run(model, x_test, batch_size, threads)
    executor = model._executor(batch_size, threads)
    labelled = y_test is not None and output_kind(scores.shape) == "scores"
    row.update(accuracy=top1(scores, y_test) if labelled else None, top5=topk(scores, y_test) if labelled else None,
               images_per_s=_samples(x_test) / seconds, compile_seconds=compile_seconds,
               overflow=int(sum(executor.overflow.values())))
    return scores, row


def included_row(path) -> dict:
    """The :class:`PrecisionResult` fields known before running an included ``.lowbit`` file.

    Its label is its precision and ``(fine-tuned)`` when lowbit's trainer made
    it, else its precision and file name: ``binary (fine-tuned)``.
    """
    import lowbit

    path = Path(path)
    metadata = lowbit.load(path).graph.metadata
    precision = str(metadata.get("precision") or "fp32")
    tuned = "finetune" in metadata or str(metadata.get("producer", "")).startswith("lowbit.train")
    return dict(precision=f"{precision} ({'fine-tuned' if tuned else path.stem})", bits=get_precision(precision).bits,
                size_bytes=path.stat().st_size, calibration_seconds=0.0, model_file=str(path))


def evaluate_included(path, x_test, y_test, batch_size: int = 256, threads: int | None = None) -> tuple:
    """Run an already quantized ``.lowbit`` file on the test set: ``(scores, row)`` as :func:`evaluate_precision`."""
    import lowbit

    row = included_row(path)
    model = lowbit.load(path)
    scores, seconds, compile_seconds = timed_run(model, x_test, batch_size, threads)
    labelled = y_test is not None and output_kind(scores.shape) == "scores"
    row.update(accuracy=top1(scores, y_test) if labelled else None, top5=topk(scores, y_test) if labelled else None,
               images_per_s=_samples(x_test) / seconds, compile_seconds=compile_seconds,
               overflow=int(sum(model._executor(batch_size, threads).overflow.values())))
    return scores, row


def _unique(label: str, taken, path) -> str:
    """``label``, or ``precision (file name)`` when another row already has it."""
    return label if label not in taken else f"{label.split(' (')[0]} ({Path(path).name})"


def _ordered(names, included) -> list:
    """Sweep precisions with each included label right after the precision it shares."""
    order = list(names)
    for label in included:
        base = label.split(" (")[0]
        at = max((i for i, name in enumerate(order) if name.split(" (")[0] == base), default=len(order) - 1)
        order.insert(at + 1, label)
    return order


def _pool(jobs: int):
    context = multiprocessing.get_context("spawn")
    # workers draw no progress bars of their own: the parent's bar counts their results
    return concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=set_quiet)


def sweep(source, x_test, y_test, precisions, *, calibration=None, method: str = "minmax", out_dir=".",
          batch_size: int = 256, threads: int | None = None, jobs: int = 1, model_label: str | None = None,
          dataset_label: str = "", options: dict | None = None, progress=True, include=(),
          reference: bool = False) -> SweepResult:
    """Evaluate ``source`` at every precision in ``precisions``.

    Parameters
    ----------
    source : str
        Path of the fp32 model (.onnx).
    x_test, y_test : ndarray
        float32 NCHW samples and integer labels (``y_test`` None: no labels).
        An iterable of ``(x, y)`` batches instead of arrays goes to
        :func:`sweep_batches` (``y_test`` is then ignored).
    precisions : list of str
        fp32 is always evaluated (first): drops and agreements are against it.
    calibration : ndarray, optional
        Calibration samples for the precisions that need them.
    jobs : int
        Worker processes; accuracies are identical to a serial run, while
        img/s measured by concurrent workers shares the cores.
    include : list of paths
        Quantized ``.lowbit`` files evaluated as extra rows (see :func:`included_row`).
    reference : bool
        Also time onnxruntime fp32 and int8 (``SweepResult.reference``).

    Returns
    -------
    SweepResult
    """
    if not isinstance(x_test, (np.ndarray, dict)):
        return sweep_batches(source, x_test, precisions, calibration=calibration, method=method, out_dir=out_dir,
                             batch_size=batch_size, threads=threads, jobs=jobs, model_label=model_label,
                             dataset_label=dataset_label, options=options, progress=progress, include=include,
                             reference=reference)
    names = _names(precisions)
    models_dir = Path(out_dir) / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    args = dict(x_test=x_test, y_test=y_test, calibration=calibration, method=method, models_dir=str(models_dir),
                batch_size=batch_size, threads=threads, options=options)
    bar = Progress(len(names) + len(include) + bool(reference), label="sweep",
                   stream=None if not progress else __import__("sys").stderr)
    outcomes = {}
    if jobs > 1:
        with _pool(jobs) as pool:
            futures = {pool.submit(evaluate_precision, os.fspath(source), name, **args): name for name in names}
            for future in concurrent.futures.as_completed(futures):
                outcomes[futures[future]] = future.result()
                bar.update(1, images=_samples(x_test))
    else:
        for name in names:
            outcomes[name] = evaluate_precision(os.fspath(source), name, **args)
            bar.update(1, images=_samples(x_test))
    for path in include:
        scores, row = evaluate_included(path, x_test, y_test, batch_size, threads)
        row["precision"] = _unique(row["precision"], outcomes, path)
        outcomes[row["precision"]] = scores, row
        bar.update(1, images=_samples(x_test))
    timings = {}
    if reference:
        from .ort_reference import measure

        timings = measure(source, x_test, y_test, calibration, batch_size=batch_size, threads=threads)
        bar.update(1)
    bar.close()
    names = _ordered(names, [label for label in outcomes if label not in names])
    reference, ref_row = outcomes["fp32"]
    result = SweepResult(model=model_label or Path(source).name, dataset=dataset_label, n_test=_samples(x_test),
                         calibration={"method": method, "samples": 0 if calibration is None else _samples(calibration)},
                         labelled=ref_row["accuracy"] is not None, output=output_kind(reference.shape),
                         reference=timings)
    for name in names:
        scores, row = outcomes[name]
        result.results.append(PrecisionResult(drop=_drop(ref_row["accuracy"], row["accuracy"]),
                                              **compare(reference, scores), **row))
    return result


def _names(precisions) -> list:
    return ["fp32"] + [get_precision(p).name for p in precisions if get_precision(p).name != "fp32"]


def _drop(reference, accuracy):
    return None if reference is None or accuracy is None else 100.0 * (reference - accuracy)


def _first_output(out) -> np.ndarray:
    return np.asarray(next(iter(out.values())) if isinstance(out, dict) else out)


def layer_plan(graph, layers) -> dict:
    """``{fp32 tensor: (tensor to fetch, (scale, zero point) or None)}`` for the tensors of ``graph``.

    An integer graph names its integer tensors ``<name>::q``; a weighted
    layer's output is dequantized with the layer's output scale and zero
    point.  Tensors the graph no longer has are left out.
    """
    producers = graph.producers()
    plan = {}
    for name in layers:
        if name in producers:
            plan[name] = (name, None)
        elif f"{name}::q" in producers and "y_scale" in producers[f"{name}::q"].quant:
            quant = producers[f"{name}::q"].quant
            plan[name] = (f"{name}::q", (float(quant["y_scale"]), int(quant["y_zero_point"])))
    return plan


def run_layers(model, x, plan: dict, batch_size, threads) -> dict:
    """The float values of the tensors in ``plan`` (see :func:`layer_plan`) on ``x``."""
    if not plan:
        return {}
    raw = model.run(x, outputs=sorted({t for t, _ in plan.values()}), batch_size=batch_size, threads=threads)
    values = {}
    for name, (tensor, dequant) in plan.items():
        value = raw[tensor]
        if dequant is not None:
            value = (value.astype(np.float64) - dequant[1]) * dequant[0]
        values[name] = value
    return values


def sweep_batches(source, batches, precisions, *, calibration=None, method: str = "minmax", out_dir=".",
                  batch_size: int = 256, threads: int | None = None, jobs: int = 1, model_label: str | None = None,
                  dataset_label: str = "", options: dict | None = None, progress=True, layer_samples: int = 256,
                  layer_chunk: int = 8, include=(), reference: bool = False) -> SweepResult:
    """Evaluate ``source`` at every precision over a stream of batches, with or without labels.

    Every precision is quantized and saved first (in ``jobs`` processes);
    then the data is read once and each batch runs through fp32 and every
    precision, so only one batch of inputs and outputs is held at a time.

    Parameters
    ----------
    batches : iterable of (x, y)
        float32 NCHW batches and int64 labels, ``y`` None without labels; it
        may be a one-shot generator (``len(batches)``, when defined, sizes
        the progress bar).  Labels count only for class-score outputs.
    layer_samples : int
        Per-layer SQNR (outputs of each Conv/Gemm/MatMul, dequantized for
        integer graphs) is measured on the first ``layer_samples`` samples,
        ``layer_chunk`` at a time.
    include : list of paths
        Quantized ``.lowbit`` files run beside the precisions (see :func:`included_row`).
    reference : bool
        Not measured on a stream: ``SweepResult.reference`` holds a note saying so.

    Returns
    -------
    SweepResult
        ``layer_sqnr`` holds ``{precision: {tensor: dB}}`` (fp32 left out).
    """
    import sys

    import lowbit

    from .sensitivity import weighted_layers

    names = _names(precisions)
    want_reference = reference  # the name is reused for the fp32 outputs below
    models_dir = Path(out_dir) / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    args = dict(calibration=calibration, method=method, models_dir=str(models_dir), options=options)
    if jobs > 1:
        with _pool(jobs) as pool:
            futures = {name: pool.submit(build_precision, os.fspath(source), name, **args) for name in names}
            built = {name: future.result() for name, future in futures.items()}
    else:
        built = {name: build_precision(os.fspath(source), name, **args) for name in names}
    for path in include:
        row = included_row(path)
        row["precision"] = _unique(row["precision"], built, path)
        built[row["precision"]] = row
    names = _ordered(names, [label for label in built if label not in names])
    models = {name: lowbit.load(row["model_file"]) for name, row in built.items()}
    reference_model = models["fp32"]
    layers = [n.outputs[0] for n in weighted_layers(reference_model.graph)]
    plans = {name: layer_plan(models[name].graph, layers) for name in names if name != "fp32"}
    comparisons = {name: Comparison() for name in names}
    scores = {name: LabelScore() for name in names}
    layer_sqnr = {name: LayerSQNR() for name in plans}
    seconds, compile_seconds = dict.fromkeys(names, 0.0), {}
    total = len(batches) if hasattr(batches, "__len__") else 0
    bar = Progress(total, label="eval", stream=sys.stderr if progress else None)
    n = probed = 0
    kind, labelled = None, False
    for x, y in batches:
        if not compile_seconds:
            for name in names:
                start = time.perf_counter()
                models[name].run(x[:8], batch_size=batch_size, threads=threads)
                compile_seconds[name] = time.perf_counter() - start
        outputs = {}
        for name in names:
            start = time.perf_counter()
            outputs[name] = _first_output(models[name].run(x, batch_size=batch_size, threads=threads))
            seconds[name] += time.perf_counter() - start
        reference = outputs["fp32"]
        kind = kind or output_kind(reference.shape)
        labelled = labelled or (y is not None and kind == "scores")
        for name in names:
            comparisons[name].update(reference, outputs[name])
            if y is not None and kind == "scores":
                scores[name].update(outputs[name], y)
        for start in range(0, min(len(x), layer_samples - probed), layer_chunk):
            chunk = x[start:min(start + layer_chunk, layer_samples - probed)]
            ref_layers = run_layers(reference_model, chunk, {t: (t, None) for t in layers}, batch_size, threads)
            for name, plan in plans.items():
                layer_sqnr[name].update(ref_layers, run_layers(models[name], chunk, plan, batch_size, threads))
        probed = min(layer_samples, probed + len(x))
        n += len(x)
        bar.update(len(x), images=len(x))
    bar.close()
    if n == 0:
        from ..errors import InputError

        raise InputError("the data holds no samples to evaluate")
    result = SweepResult(model=model_label or Path(source).name, dataset=dataset_label, n_test=n,
                         calibration={"method": method, "samples": 0 if calibration is None else _samples(calibration)},
                         labelled=labelled, output=kind,
                         layer_sqnr={name: acc.result() for name, acc in layer_sqnr.items()},
                         reference={"note": "onnxruntime reference timings are measured on in-memory test "
                                            "arrays (--data FILE.npz), not on streamed image folders"}
                         if want_reference else {})
    ref_accuracy = scores["fp32"].result()["accuracy"] if labelled else None
    for name in names:
        measured = scores[name].result() if labelled else {"accuracy": None, "top5": None}
        overflow = int(sum(models[name]._executor(batch_size, threads).overflow.values()))
        result.results.append(PrecisionResult(drop=_drop(ref_accuracy, measured["accuracy"]),
                                              images_per_s=n / max(seconds[name], 1e-12),
                                              compile_seconds=compile_seconds[name], overflow=overflow,
                                              **measured, **comparisons[name].result(), **built[name]))
    return result
