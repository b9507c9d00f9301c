"""Run the hostile-input corpus and classify what lowbit does with each case.

    python -m tests.fuzz.run_corpus [--families onnx,lowbit,...] [--count N] [--seed S]
                                    [--budget SECONDS] [--jobs N] [--report out.json] [--ids ID,...]

Cases run in a worker subprocess (``--worker``), one at a time: a crash by signal is caught by
the parent, named after the case, and the worker restarted.  Each case has a time limit (SIGALRM
in the worker, :data:`CASE_SECONDS`; a hard kill from the parent after :data:`KILL_SECONDS`), and
the parent kills a worker whose resident memory passes :data:`MAX_RSS_BYTES`.

Outcomes (``BAD`` ones must never happen):

==================  ===========================================================================
clean_error         a LowbitError with a one-line message (API), exit 2 without traceback (CLI)
correct             a result that matches the reference (onnxruntime, or the unmutated model)
lenient             accepted, in a category the allowlist :data:`LENIENT` justifies
traceback *         a non-LowbitError exception (API); exit 1 or a traceback on stderr (CLI)
crash *             the worker died by a signal
hang *              over the per-case time limit
silently_accepted * a success where an error was expected or onnxruntime refuses the model
wrong_result *      a success whose output differs from the reference
leftover *          a ``.tmp`` file or a partial output left behind after a failed command
memory *            resident memory over 2 GiB
slow_load *         loading took over 10 s
bad_message *       a LowbitError whose message is empty or spans several lines
code_execution *    the pickle payload's marker file appeared
==================  ===========================================================================
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fuzz.generate import COUNTS, FAMILIES, Case, generate, make_case  # noqa: E402

CASE_SECONDS = 20
KILL_SECONDS = 45
MAX_RSS_BYTES = 2 << 30
MAX_LOAD_SECONDS = 10.0
#: onnx.reference computes in numpy float32 with its own summation order (LRN, pools): a looser match.
REFERENCE_RTOL = 1e-2
GOOD = ("clean_error", "correct", "lenient")
BAD = ("traceback", "crash", "hang", "silently_accepted", "wrong_result", "leftover", "memory", "slow_load",
       "bad_message", "code_execution")
OUTCOMES = GOOD + BAD

#: Categories where lowbit accepts what onnxruntime refuses (or what changes a .lowbit file's output)
#: by design, with the reason.  A category not listed here that is accepted counts as silently accepted.
LENIENT = {
    "lowbit.json_field": "graph.json values are checked for type and range (schema.py); a value replaced by "
                         "another legal one (an attribute 0 instead of 1, a renamed node, other metadata) is a "
                         "different but valid model, and runs as such. lowbit does not authenticate files.",
    "lowbit.json_structure": "same as json_field: a reordered constant table or a different legal precision "
                             "name makes another valid model.",
    "lowbit.npz_dtype": "an array stored in another real dtype is converted by the kernel like any model "
                        "constant (a float64 bias): a different but valid model.",
    "lowbit.npz_shape": "an array of another shape that the node's kernel accepts (broadcasting) is a different "
                        "valid model.",
    "lowbit.npz_fortran": "a Fortran-ordered array holds the same values.",
    "onnx.lrn_size": "an even or very large LRN size follows the ONNX formula (the window spans floor((size-1)/2) "
                     "channels before and ceil((size-1)/2) after, clipped to the channels); onnxruntime implements "
                     "odd sizes only. Accepted only when onnx.reference agrees.",
    "onnx.conv_attr": "auto_pad SAME_UPPER/SAME_LOWER with dilations is defined by ONNX (the dilated kernel's "
                      "extent is padded); onnxruntime's CPU Conv does not implement it. Accepted only when "
                      "onnx.reference agrees.",
    "onnx.input_dims": "a declared input dim of 0 or -1 reads as dynamic (exporters write both for a free dim); "
                       "onnxruntime refuses a zero dim. The run is checked against onnx.reference.",
    "onnx.opset": "an opset import for a domain that no node uses is ignored (onnxruntime refuses versions of "
                  "ai.onnx.ml it does not know).",
    "run_input.api.batch_1": "a model with a fixed batch runs any number of samples, in padded chunks of its "
                             "batch (lowbit.runtime.executor); onnxruntime refuses other batch sizes.",
    "run_input.api.batch_odd": "as batch_1.",
}

#: Single cases where the references disagree among themselves, with what was measured.
KNOWN_DISAGREEMENTS = {
    "onnx-0-1042": "a bit flip makes one conv_group weight 1.9e37, so LRN squares overflow float32: onnxruntime "
                   "returns NaN everywhere, onnx.reference 0.00347..., lowbit 0.00484... (it sums the squares in "
                   "float64, so nothing overflows). No reference is right here; lowbit's value is the float64 one.",
}


# ==================================================================================================
# Worker side
# ==================================================================================================

class CaseTimeout(BaseException):
    """Raised by SIGALRM inside a case that runs past its limit."""


def _alarm(signum, frame):
    raise CaseTimeout()


def _first_line(exc) -> str:
    text = str(exc)
    return (text.splitlines()[0] if text.strip() else type(exc).__name__)[:300]


def _short_tb(exc) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames[-4:]))
    return f"{type(exc).__name__}: {_first_line(exc)} [{where}]"


def _rss(field="VmHWM") -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_peak():
    with contextlib.suppress(OSError):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")


class Worker:
    """Everything a case needs inside the worker process: seeds, references, classification."""

    def __init__(self, run_dir: Path):
        import warnings

        warnings.simplefilter("ignore")
        import numpy as np

        import lowbit
        from lowbit.errors import LowbitError

        self.np = np
        self.lowbit = lowbit
        self.LowbitError = LowbitError
        self.run_dir = run_dir
        self.seed_dir = run_dir / "seeds"
        self.seed_dir.mkdir(parents=True, exist_ok=True)
        self.models = {}
        self.proto = None

    def send(self, message: dict):
        os.write(self.proto, (json.dumps(message) + "\n").encode())

    # --- seeds ---------------------------------------------------------------------------------
    def onnx_seed_path(self, name: str) -> Path:
        from tests.fuzz import seeds

        path = self.seed_dir / f"{name}.onnx"
        if not path.exists():
            tmp = path.with_suffix(".part")
            tmp.write_bytes(seeds.seed_bytes(name))
            os.replace(tmp, path)
        return path

    def dynamic_model_path(self) -> Path:
        import onnx

        from tests.fuzz import seeds

        path = self.seed_dir / "dynamic_hw.onnx"
        if not path.exists():
            proto = seeds.seed_proto("conv_basic")
            dims = proto.graph.input[0].type.tensor_type.shape.dim
            dims[2].dim_param, dims[3].dim_param = "H", "W"
            onnx.save(proto, str(path))
        return path

    def lowbit_seed_path(self, name: str) -> Path:
        """A seed .lowbit: ``model@precision`` quantized here (byte-deterministic), or a committed file."""
        if name.endswith(".lowbit"):
            return ROOT / "models" / name
        path = self.seed_dir / f"{name}.lowbit"
        if path.exists():
            return path
        from tests.fuzz import seeds

        base, precision = name.split("@")
        model = self.lowbit.load(str(self.onnx_seed_path(base)))
        calibration = seeds.sample_input(base, 12345, batch=model.fixed_batch or 16)
        q = self.lowbit.quantize(model, precision, calibration=calibration)
        tmp = self.seed_dir / f".{name}.building.lowbit"
        self.lowbit.save(q, tmp)
        os.replace(tmp, path)
        return path

    def model_path(self, name: str) -> Path:
        return self.lowbit_seed_path(name) if "@" in name or name.endswith(".lowbit") else self.onnx_seed_path(name)

    def seed_input(self, name: str, seed: int, batch: int = 2):
        from tests.fuzz import seeds

        base = name.split("@")[0]
        if base.endswith(".lowbit"):
            base = "deep_convnet"
        return seeds.sample_input(base, seed, batch)

    # --- helpers -----------------------------------------------------------------------------
    def outputs_of(self, model, result) -> list:
        if isinstance(result, dict):
            return list(result.values())
        return [result]

    def same(self, got: list, ref: list, rtol=1e-3) -> str | None:
        """None when every output matches (NaN where the reference has NaN), else what differs."""
        np = self.np
        if len(got) != len(ref):
            return f"{len(got)} outputs, reference has {len(ref)}"
        for i, (a, b) in enumerate(zip(got, ref)):
            a, b = np.asarray(a), np.asarray(b)
            if a.shape != b.shape:
                return f"output {i} has shape {a.shape}, reference {b.shape}"
            if a.dtype.kind in "fc" or b.dtype.kind in "fc":
                a64, b64 = a.astype(np.float64), b.astype(np.float64)
                nan_a, nan_b = np.isnan(a64), np.isnan(b64)
                if not np.array_equal(nan_a, nan_b):
                    return f"output {i}: NaN at {int(nan_a.sum())} places, reference {int(nan_b.sum())}"
                for sign in (np.inf, -np.inf):
                    if not np.array_equal(a64 == sign, b64 == sign):
                        return f"output {i}: {sign} at {int((a64 == sign).sum())} places, reference {int((b64 == sign).sum())}"
                fin = np.isfinite(b64)
                if fin.any():
                    scale = max(float(np.max(np.abs(b64[fin]))), 1e-30)
                    err = float(np.max(np.abs(a64[fin] - b64[fin]))) / scale
                    if err > rtol:
                        return f"output {i}: relative error {err:.3g}"
            elif not np.array_equal(a, b):
                return f"output {i} differs"
        return None

    def api_outcome(self, exc) -> tuple:
        if isinstance(exc, self.LowbitError):
            text = str(exc)
            if not text.strip() or "\n" in text.strip():
                return "bad_message", f"{type(exc).__name__}: {text[:200]!r}"
            return "clean_error", f"{type(exc).__name__}: {_first_line(exc)}"
        return "traceback", _short_tb(exc)

    # --- families ----------------------------------------------------------------------------
    def run_onnx(self, case: Case, folder: Path):
        from tests.fuzz.generate import build_onnx

        path, feeds = build_onnx(case.spec, folder)
        start = time.perf_counter()
        try:
            model = self.lowbit.load(str(path))
        except Exception as exc:
            return self.api_outcome(exc) + (time.perf_counter() - start,)
        load_seconds = time.perf_counter() - start
        try:
            result = model.run(next(iter(feeds.values())) if len(model.input_names) == 1 else feeds)
        except Exception as exc:
            return self.api_outcome(exc) + (load_seconds,)
        got = self.outputs_of(model, result)
        if case.expect == "error":
            return "silently_accepted", f"loaded and ran ({len(got)} outputs)", load_seconds
        self.send({"phase": "onnxruntime"})
        ref, why = self.ort(path, feeds)
        if ref is None and case.spec["kind"] in ("opset", "input_dims") and case.category in LENIENT:
            # The mutation changes declarations only: the result must be the unmutated seed's.
            from tests.fuzz import seeds

            seed_path = folder / "seed.onnx"
            seed_path.write_bytes(seeds.seed_bytes(case.spec["seed"]))
            ref, _ = self.ort(seed_path, feeds)
            if ref is not None:
                diff = self.same(got, ref)
                if diff:
                    return "wrong_result", f"differs from onnxruntime on the unmutated seed: {diff}", load_seconds
                return "lenient", f"onnxruntime refuses ({why[:80]}); matches it on the unmutated seed", load_seconds
        if ref is None:
            if case.category not in LENIENT:
                return "silently_accepted", f"onnxruntime refuses: {why}", load_seconds
            self.send({"phase": "onnx.reference"})
            ref2, why2 = self.reference(path, feeds)
            if ref2 is None:
                return "lenient", f"onnxruntime refuses ({why[:80]}); onnx.reference too ({why2[:80]})", load_seconds
            diff = self.same(got, ref2, rtol=REFERENCE_RTOL)
            if diff:
                return "wrong_result", f"onnxruntime refuses; differs from onnx.reference: {diff}", load_seconds
            return "lenient", f"onnxruntime refuses ({why[:80]}); matches onnx.reference", load_seconds
        diff = self.same(got, ref)
        if diff:
            # Two references can disagree at the edges of float32 (an overflow one of them avoids by
            # accumulating in float64): a result that onnx.reference confirms is not a lowbit bug.
            self.send({"phase": "onnx.reference"})
            ref2, _ = self.reference(path, feeds)
            if ref2 is not None and self.same(got, ref2, rtol=REFERENCE_RTOL) is None:
                return "lenient", f"differs from onnxruntime ({diff}) but matches onnx.reference", load_seconds
            if case.id.split(":")[-1] in KNOWN_DISAGREEMENTS:
                return "lenient", f"known disagreement of the references: {diff}", load_seconds
            return "wrong_result", diff, load_seconds
        return "correct", "matches onnxruntime", load_seconds

    def ort(self, path, feeds):
        import onnxruntime as ort

        try:
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.log_severity_level = 4
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            names = [i.name for i in session.get_inputs()]
            return session.run(None, {n: feeds[n] for n in names if n in feeds}), None
        except Exception as exc:
            return None, _first_line(exc)[:160]

    def reference(self, path, feeds):
        """onnx's own reference evaluator, as a second opinion where onnxruntime refuses."""
        from onnx.reference import ReferenceEvaluator

        try:
            session = ReferenceEvaluator(str(path))
            return session.run(None, {n: feeds[n] for n in session.input_names if n in feeds}), None
        except CaseTimeout:
            raise
        except Exception as exc:
            return None, _first_line(exc)[:160]

    def run_lowbit(self, case: Case, folder: Path):
        from lowbit.io import container
        from tests.fuzz.generate import build_lowbit

        seed_path = self.lowbit_seed_path(case.spec["seed"])
        seed_data = seed_path.read_bytes()
        reference_model = self.models.get(case.spec["seed"])
        if reference_model is None:
            reference_model = self.models[case.spec["seed"]] = self.lowbit.load(str(seed_path))
        x = self.seed_input(case.spec["seed"], case.spec["input_seed"])
        ref = self.outputs_of(reference_model, reference_model.run(x))
        path, caps = build_lowbit(case.spec, seed_data, folder)
        saved = {k: getattr(container, k) for k in caps}
        for k, v in caps.items():
            setattr(container, k, v)
        start = time.perf_counter()
        try:
            try:
                model = self.lowbit.load(str(path))
            except Exception as exc:
                return self.api_outcome(exc) + (time.perf_counter() - start,)
        finally:
            for k, v in saved.items():
                setattr(container, k, v)
        load_seconds = time.perf_counter() - start
        try:
            got = self.outputs_of(model, model.run(x))
        except Exception as exc:
            return self.api_outcome(exc) + (load_seconds,)
        if case.expect == "error":
            return "silently_accepted", "loaded and ran", load_seconds
        diff = self.same(got, ref, rtol=0.0)
        if diff is None:
            return "correct", "same output as the unmutated file", load_seconds
        if case.category in LENIENT:
            return "lenient", f"a different valid model: {diff}", load_seconds
        return "silently_accepted", f"ran with a changed output: {diff}", load_seconds

    # run inputs -----------------------------------------------------------------------------
    def make_run_input(self, name: str, model, seed: int):
        np = self.np
        fixed = model.fixed_batch or 2
        base = self.seed_input(self.current_model, seed, batch=fixed)
        x = base
        if name == "rank_minus":
            x = base[0]
        elif name == "rank_plus":
            x = base[None]
        elif name == "wrong_channels":
            x = np.concatenate([base, base], axis=1)
        elif name == "wrong_hw":
            x = np.pad(base, [(0, 0)] * (base.ndim - 1) + [(0, 1)])
        elif name in ("bool", "int32", "int64", "uint8", "float64", "float16", "complex64"):
            x = (base > 0) if name == "bool" else (base * 10).astype(name)
        elif name == "object":
            x = base.astype(object)
        elif name == "strings":
            x = base.astype(str)
        elif name == "bytes":
            x = base.astype("S8")
        elif name == "nan":
            x = base.copy()
            x.reshape(-1)[::3] = np.nan
        elif name == "inf":
            x = base.copy()
            x.reshape(-1)[::5] = np.inf
            x.reshape(-1)[1::7] = -np.inf
        elif name == "empty_batch":
            x = base[:0]
        elif name == "non_contiguous":
            big = np.repeat(base, 2, axis=-1)
            x = big[..., ::2]
            x[...] = base
        elif name == "fortran":
            x = np.asfortranarray(base)
        elif name == "big_endian":
            x = base.astype(">f4")
        elif name == "list":
            x = base.tolist()
        elif name == "scalar":
            x = np.float32(1.0)
        elif name == "none":
            x = None
        elif name == "dict_wrong":
            x = {"nope": base}
        elif name == "dict_extra":
            x = {**{n: base for n in model.input_names}, "extra": base}
        elif name == "ragged":
            x = [base[0].tolist(), base[0][..., :-1].tolist()]
        elif name == "masked":
            x = np.ma.masked_array(base, mask=base > 1)
        elif name == "readonly":
            x = base.copy()
            x.setflags(write=False)
        elif name == "zero_dim":
            x = np.zeros((fixed,) + (0,) * (base.ndim - 1), np.float32)
        elif name == "batch_1":
            x = base[:1]
        elif name == "batch_odd":
            x = self.seed_input(self.current_model, seed, batch=3)
        elif name == "subclass":
            x = np.asmatrix(base.reshape(base.shape[0], -1)) if base.ndim == 2 else base.view(np.ndarray)
        elif name == "huge_values":
            x = base * 1e30
        elif name == "denormals":
            x = (base * 1e-40).astype(np.float32)
        elif name == "negzero":
            x = -np.zeros_like(base)
        return x

    def canonical(self, name, x):
        """The float32 contiguous array the same samples make (the reference input), or None."""
        np = self.np
        if name in ("float64", "float16", "non_contiguous", "fortran", "big_endian", "list", "masked", "readonly",
                    "subclass", "batch_1", "batch_odd", "huge_values", "denormals", "negzero", "nan", "inf",
                    "wrong_hw"):
            return np.ascontiguousarray(np.asarray(x), dtype=np.float32)
        return None

    def run_run_input(self, case: Case, folder: Path):
        spec = case.spec
        self.current_model = spec["model"]
        path = self.model_path(spec["model"])
        model = self.lowbit.load(str(path))
        if spec["via"] == "cli":
            return self.run_cli_input(case, folder, path, model)
        x = self.make_run_input(spec["input"], model, spec["input_seed"])
        try:
            result = model.run(x)
        except Exception as exc:
            return self.api_outcome(exc) + (0.0,)
        got = self.outputs_of(model, result)
        if case.expect == "error":
            return "silently_accepted", f"ran on a {spec['input']} input", 0.0
        if spec["input"] == "empty_batch":
            ok = all(self.np.shape(g)[0] == 0 for g in got)
            return ("correct", "empty outputs", 0.0) if ok else ("wrong_result", "non-empty output", 0.0)
        ref_x = self.canonical(spec["input"], x)
        if ref_x is None:
            return "correct", "ran", 0.0
        if str(path).endswith(".onnx") and spec["input"] not in ("wrong_hw",):
            ref, why = self.ort(path, {model.input_names[0]: ref_x})
            if ref is None:
                if case.category in LENIENT:
                    return "lenient", f"onnxruntime refuses: {why[:100]}", 0.0
                return "silently_accepted", f"onnxruntime refuses: {why}", 0.0
        elif spec["input"] == "wrong_hw":
            ref, why = self.ort(path, {model.input_names[0]: ref_x}) if str(path).endswith(".onnx") else (None, "")
            if ref is None:
                return ("lenient" if not str(path).endswith(".onnx") else "silently_accepted"), \
                    f"ran on a larger image ({why})", 0.0
        else:
            ref = self.outputs_of(model, self.lowbit.load(str(path)).run(ref_x))
        diff = self.same(got, ref, rtol=1e-3 if str(path).endswith(".onnx") else 0.0)
        return ("wrong_result", diff, 0.0) if diff else ("correct", "matches the reference", 0.0)

    def run_cli_input(self, case: Case, folder: Path, path: Path, model):
        np = self.np
        spec = case.spec
        name = spec["input"]
        x = self.seed_input(spec["model"], spec["input_seed"], batch=model.fixed_batch or 2)
        xpath = folder / "x.npy"
        out = folder / "y.npy"
        argv = ["run", str(path), "--input", str(xpath), "--output", str(out)]
        if name == "npy_truncated":
            np.save(xpath, x)
            xpath.write_bytes(xpath.read_bytes()[:-7])
        elif name == "npy_object":
            from tests.fuzz.generate import _object_npy

            xpath.write_bytes(_object_npy(folder / "PWNED"))
        elif name == "npz_no_keys":
            xpath = folder / "x.npz"
            np.savez(xpath, foo=x)
        elif name == "npz_wrong_shape":
            xpath = folder / "x.npz"
            np.savez(xpath, x_test=x[:, :1, :2])
        elif name == "not_npy":
            xpath.write_bytes(b"this is not numpy\n" * 20)
        elif name == "empty_file":
            xpath.write_bytes(b"")
        elif name == "input_dir":
            xpath.mkdir()
        elif name == "input_missing":
            pass
        elif name == "uint8_wrong_shape":
            np.save(xpath, np.zeros((2, 3, 5, 7, 9), np.uint8))
        elif name in ("npy_int64", "npy_complex", "npy_bool", "npy_strings"):
            np.save(xpath, {"npy_int64": (x * 10).astype(np.int64), "npy_complex": x.astype(np.complex64),
                            "npy_bool": x > 0, "npy_strings": x.astype(str)}[name])
        elif name == "fifo_input":
            os.mkfifo(xpath)
        elif name == "nan_strict":
            x = x.copy()
            x.reshape(-1)[0] = np.nan
            np.save(xpath, x)
            argv.append("--strict")
        else:
            np.save(xpath, x)
        if name == "npz_ok":
            out = folder / "y.npz"
        if name == "uint8_images_ok":
            shape = x.shape
            images = np.random.default_rng(spec["input_seed"]).integers(0, 256, (shape[0],) + shape[2:] + shape[1:2],
                                                                         dtype=np.uint8)
            images = images[..., 0] if shape[1] == 1 else images
            np.save(xpath, images)
        if name == "out_missing_folder":
            out = folder / "missing" / "y.npy"
        elif name == "out_is_dir":
            out = folder / "adir"
            out.mkdir()
        elif name == "out_unwritable":
            out = Path("/proc/self/y.npy")
        elif name == "out_parent_is_file":
            (folder / "afile").write_text("x")
            out = folder / "afile" / "y.npy"
        argv[3], argv[5] = str(xpath), str(out)
        rc, err = self.cli(argv, folder)
        outcome = self.cli_outcome(case, rc, err, folder, [out] if name not in ("out_is_dir", "out_unwritable") else [])
        if outcome[0] == "correct" and name in ("npy_ok", "npz_ok"):
            if name == "npy_ok":
                got = [np.load(out)]
            else:
                with np.load(out) as z:
                    got = [z[k] for k in z.files]
            diff = self.same(got, self.outputs_of(model, model.run(x)), rtol=0.0)
            if diff:
                return "wrong_result", diff, 0.0
        return outcome

    # CLI --------------------------------------------------------------------------------------
    def cli(self, argv, folder: Path, debug=False):
        from lowbit import cli

        err, outbuf = io.StringIO(), io.StringIO()
        cwd = os.getcwd()
        os.chdir(folder)
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(outbuf):
                try:
                    rc = cli.main(argv + (["--debug"] if debug else []))
                except SystemExit as exc:
                    rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                except CaseTimeout:
                    raise
                except BaseException as exc:  # escaped main(): a bug in the boundary itself
                    err.write("Traceback (escaped main)\n" + _short_tb(exc))
                    rc = 1
        finally:
            os.chdir(cwd)
        return rc, err.getvalue()

    def cli_outcome(self, case, rc, err, folder: Path, outputs):
        leftovers = [str(p.relative_to(folder)) for p in folder.rglob("*") if ".tmp" in p.name]
        if rc != 0:
            leftovers += [str(p) for p in outputs if p.exists() and not p.is_dir()]
        last = [line for line in err.splitlines() if line.strip()]
        message = last[-1][:300] if last else ""
        if "Traceback" in err and not case.spec.get("debug"):
            return "traceback", message, 0.0
        if rc == 1 or rc not in (0, 2):
            return "traceback", f"exit {rc}: {message}", 0.0
        if leftovers:
            return "leftover", f"exit {rc}, left {leftovers[:3]}", 0.0
        if rc == 2:
            errors = [line for line in last if "error" in line]
            if not errors:
                return "bad_message", f"exit 2 without an error line: {message!r}", 0.0
            return "clean_error", message, 0.0
        if case.expect == "error":
            return "silently_accepted", "exit 0", 0.0
        return "correct", "exit 0", 0.0

    def cli_placeholders(self, folder: Path) -> dict:
        np = self.np
        files = {}
        model = self.onnx_seed_path("googlenet_small")
        files["{MODEL}"] = str(model)
        files["{LOWBIT}"] = str(self.lowbit_seed_path("deep_convnet@int8"))
        files["{DYNAMIC_MODEL}"] = str(self.dynamic_model_path())
        rng = np.random.default_rng(0)
        x = rng.normal(size=(4, 1, 28, 28)).astype(np.float32)
        np.save(folder / "x.npy", x)
        files["{X}"] = str(folder / "x.npy")
        np.save(folder / "xbad.npy", x[:, :, :5, :3])
        files["{XBAD}"] = str(folder / "xbad.npy")
        xn = x.copy()
        xn[0, 0, 0, 0] = np.nan
        np.save(folder / "xnan.npy", xn)
        files["{XNAN}"] = str(folder / "xnan.npy")
        np.save(folder / "xempty.npy", x[:0])
        files["{XEMPTY}"] = str(folder / "xempty.npy")
        images = rng.integers(0, 256, (8, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, 8)
        np.savez(folder / "data.npz", x_train=images, y_train=labels, x_test=images, y_test=labels)
        files["{DATA}"] = str(folder / "data.npz")
        np.savez(folder / "badlabels.npz", x_train=images, y_train=labels + 10, x_test=images, y_test=labels + 10)
        files["{DATA_BADLABELS}"] = str(folder / "badlabels.npz")
        np.savez(folder / "nokeys.npz", foo=images)
        files["{DATA_NOKEYS}"] = str(folder / "nokeys.npz")
        (folder / "adir").mkdir()
        files["{DIR}"] = str(folder / "adir")
        files["{MISSING}"] = str(folder / "missing")
        (folder / "junk.bin").write_bytes(b"\x08\x07junk" * 100)
        files["{JUNK}"] = str(folder / "junk.bin")
        (folder / "junk.lowbit").write_bytes(b"PK\x03\x04junk" * 50)
        files["{LOWBIT_JUNK}"] = str(folder / "junk.lowbit")
        (folder / "notes.txt").write_text("hello\n")
        files["{FILE}"] = str(folder / "notes.txt")
        (folder / "empty.onnx").write_bytes(b"")
        files["{EMPTY}"] = str(folder / "empty.onnx")
        files["{OUT}"] = str(folder / "out")
        return files

    def run_cli(self, case: Case, folder: Path):
        subs = self.cli_placeholders(folder)
        argv = []
        for a in case.spec["argv"]:
            for k, v in subs.items():
                a = a.replace(k, v)
            argv.append(a)
        before = set(folder.rglob("*"))
        rc, err = self.cli(argv, folder, debug=case.spec.get("debug", False))
        created = [p for p in set(folder.rglob("*")) - before]
        outputs = [p for p in created if p.name.startswith("out")] + \
            [p for p in (folder / "out", folder / "out.lowbit", folder / "out.onnx") if p.exists()]
        outcome = self.cli_outcome(case, rc, err, folder, outputs)
        if outcome[0] == "clean_error" and rc != 0 and (folder / "out").is_dir():
            return "leftover", "a failed command left the folder out/", 0.0
        return outcome

    # API --------------------------------------------------------------------------------------
    def token(self, value, folder: Path, ctx: dict):
        np = self.np
        if isinstance(value, list):
            return [self.token(v, folder, ctx) for v in value]
        if isinstance(value, dict) and set(value) != {"$"}:
            return {k: self.token(v, folder, ctx) for k, v in value.items()}
        if not isinstance(value, dict):
            return value
        name = value["$"]
        model = ctx.get("model")
        if name == "dir":
            (folder / "adir").mkdir(exist_ok=True)
            return str(folder / "adir")
        if name == "missing":
            return str(folder / "missing.onnx")
        if name == "pathlib_missing":
            return folder / "missing.lowbit"
        if name == "object":
            return object()
        if name == "none":
            return None
        if name == "empty_bytes":
            return b""
        if name == "bytes_y":
            return b"y"
        if name == "bytes_x":
            return b"x"
        if name == "junk_bytes":
            return b"\x00\x01junk" * 30
        if name == "bytearray_junk":
            return bytearray(b"\x0ajunk" * 30)
        if name == "memoryview_junk":
            return memoryview(b"\x0ajunk" * 30)
        if name == "empty_proto":
            import onnx

            return onnx.ModelProto()
        if name == "proto_no_graph":
            import onnx
            from onnx import helper

            return helper.make_model(helper.make_graph([], "g", [], []))
        if name == "fifo":
            p = folder / "pipe.onnx"
            os.mkfifo(p)
            return str(p)
        if name == "text_file":
            (folder / "t.onnx").write_text("hello")
            return str(folder / "t.onnx")
        if name == "lowbit_dir":
            (folder / "d.lowbit").mkdir(exist_ok=True)
            return str(folder / "d.lowbit")
        if name == "null_byte_path":
            return str(folder / "a\0b.onnx")
        if name == "long_path":
            return str(folder / ("a" * 5000))
        if name == "zip_not_lowbit":
            import zipfile

            with zipfile.ZipFile(folder / "z.lowbit", "w") as zf:
                zf.writestr("readme.txt", "hi")
            return str(folder / "z.lowbit")
        if name == "model_path":
            return str(self.onnx_seed_path("conv_basic"))
        if name == "nan":
            return float("nan")
        if name == "inf":
            return float("inf")
        if name == "np_int_neg":
            return np.int64(-3)
        if name == "np_int":
            return np.int64(4)
        base = ctx.get("x")
        if name == "good_input":
            return base
        if name == "wrong_shape":
            return base[:, :1, :2] if base.ndim >= 3 else base[:, :1]
        if name == "int_array":
            return (base * 10).astype(np.int32)
        if name == "dict_wrong":
            return {"nope": base}
        if name == "empty_dict":
            return {}
        if name == "nested_dict":
            return {model.input_names[0]: {"x": base}}
        if name == "generator":
            return (row for row in base)
        if name == "first_output_list":
            return [model.output_names[0]]
        if name == "first_output_str":
            return model.output_names[0]
        if name == "input_name_list":
            return [model.input_names[0]]
        if name == "good_calibration":
            return ctx["calibration"]
        if name == "empty_array":
            return base[:0]
        if name == "nan_array":
            x = ctx["calibration"].copy()
            x.reshape(-1)[0] = np.nan
            return x
        if name == "complex_array":
            return ctx["calibration"].astype(np.complex64)
        if name == "object_array":
            return ctx["calibration"].astype(object)
        if name == "strings_array":
            return ctx["calibration"].astype(str)
        if name == "dict_empty":
            return {}
        if name == "quantized_model":
            return self.lowbit.load(str(self.lowbit_seed_path("conv_basic@int8")))
        if name == "good_out_path":
            return str(folder / "saved.lowbit")
        if name == "missing_folder_path":
            return str(folder / "nowhere" / "m.lowbit")
        if name == "file_parent_path":
            (folder / "f.txt").write_text("x")
            return str(folder / "f.txt" / "m.lowbit")
        if name == "proc_path":
            return "/proc/self/m.lowbit"
        raise KeyError(f"unknown token {name}")

    def run_api(self, case: Case, folder: Path):
        spec = case.spec
        call = spec["call"]
        ctx = {}
        if "model" in spec:
            name = spec["model"]
            self.current_model = name
            ctx["model"] = self.lowbit.load(str(self.model_path(name)))
            fixed = ctx["model"].fixed_batch or 2
            ctx["x"] = self.seed_input(name, 7, batch=fixed)
            ctx["calibration"] = self.seed_input(name, 8, batch=fixed * 4)
        elif call == "quantize_model":
            self.current_model = "conv_basic"
            ctx["x"] = self.seed_input("conv_basic", 7)
            ctx["calibration"] = self.seed_input("deep_convnet", 8, batch=8)
        tok = lambda v: self.token(v, folder, ctx)  # noqa: E731
        model = ctx.get("model")
        start = time.perf_counter()
        load_seconds = 0.0
        try:
            if call == "load":
                arg = tok(spec["arg"])
                result = self.lowbit.load(arg, **tok(spec["kwargs"]))
                load_seconds = time.perf_counter() - start
                if case.expect == "either":
                    return "correct", "loaded", load_seconds
                return "silently_accepted", f"load({spec['arg']!r}) returned {type(result).__name__}", load_seconds
            if call == "run":
                x = tok(spec["x"])
                kwargs = tok(spec["kwargs"])
                result = model.run(x, **kwargs)
                if case.expect == "error":
                    return "silently_accepted", f"run(**{spec['kwargs']}) returned", 0.0
                ref = model.run(ctx["x"])
                if isinstance(result, dict) and not isinstance(ref, dict):
                    names = list(result)
                    ref = {model.output_names[0]: ref}
                    if names and names[0] not in ref:
                        return "correct", f"returned {names}", 0.0
                    result = {k: result[k] for k in names if k in ref}
                    ref = {k: ref[k] for k in result}
                elif isinstance(result, dict):
                    ref = {k: ref[k] for k in result if k in ref}
                    result = {k: result[k] for k in ref}
                diff = self.same(self.outputs_of(model, result), self.outputs_of(model, ref), rtol=0.0)
                return ("wrong_result", diff, 0.0) if diff else ("correct", "same as the default run", 0.0)
            if call == "quantize":
                kwargs = tok(spec["kwargs"])
                self.lowbit.quantize(model, tok(spec["precision"]), **kwargs)
                if case.expect == "error":
                    return "silently_accepted", "quantize returned", 0.0
                return "correct", "quantized", 0.0
            if call == "quantize_model":
                self.lowbit.quantize(tok(spec["model_arg"]), spec["precision"], **tok(spec["kwargs"]))
                return "silently_accepted", "quantize returned", 0.0
            if call == "save":
                target = tok(spec["path"])
                arg = tok(spec["model_arg"]) if spec["model_arg"] is not None else model
                self.lowbit.save(arg, target)
                return "silently_accepted", "save returned", 0.0
            if call == "summary":
                model.summary(tok(spec["x"]))
                return "silently_accepted", "summary returned", 0.0
            raise AssertionError(call)
        except CaseTimeout:
            raise
        except Exception as exc:
            return self.api_outcome(exc) + (load_seconds,)

    # --- one case ----------------------------------------------------------------------------
    def execute(self, case: Case) -> dict:
        folder = Path(tempfile.mkdtemp(prefix=f"{case.id}-", dir=self.run_dir / "cases"))
        run = {"onnx": self.run_onnx, "lowbit": self.run_lowbit, "run_input": self.run_run_input,
               "cli": self.run_cli, "api": self.run_api}[case.family]
        _reset_peak()
        start = time.perf_counter()
        signal.alarm(CASE_SECONDS)
        try:
            outcome, detail, load_seconds = run(case, folder)
        except CaseTimeout:
            outcome, detail, load_seconds = "hang", f"over {CASE_SECONDS} s (SIGALRM)", 0.0
        except Exception as exc:  # the harness's own setup failed: report, do not hide
            outcome, detail, load_seconds = "traceback", "harness: " + _short_tb(exc), 0.0
        finally:
            signal.alarm(0)
        seconds = time.perf_counter() - start
        peak = _rss("VmHWM")
        if (folder / "PWNED").exists():
            outcome, detail = "code_execution", "the pickle payload ran (marker file created)"
        elif peak > MAX_RSS_BYTES and outcome in GOOD:
            outcome, detail = "memory", f"peak resident memory {peak / 2 ** 30:.2f} GiB"
        elif load_seconds > MAX_LOAD_SECONDS and outcome in GOOD:
            outcome, detail = "slow_load", f"load took {load_seconds:.1f} s"
        elif case.family in ("api", "run_input") and outcome in GOOD:
            left = [p.name for p in folder.rglob("*") if ".tmp" in p.name]
            if left:
                outcome, detail = "leftover", f"left {left[:3]}"
        shutil.rmtree(folder, ignore_errors=True)
        for extra in folder.parent.glob(f"{folder.name}-*"):
            extra.unlink()
        return {"id": case.id, "family": case.family, "category": case.category, "expect": case.expect,
                "outcome": outcome, "detail": detail, "seconds": round(seconds, 4),
                "load_seconds": round(load_seconds, 4), "peak_rss_mb": round(peak / 2 ** 20, 1)}


def worker_main(run_dir: str) -> int:
    proto = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    log = os.open(str(Path(run_dir) / f"worker-{os.getpid()}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 2)
    sys.stdout = open(os.devnull, "w")
    signal.signal(signal.SIGALRM, _alarm)
    (Path(run_dir) / "cases").mkdir(parents=True, exist_ok=True)
    worker = Worker(Path(run_dir))
    worker.proto = proto
    worker.send({"ready": True})
    for line in sys.stdin:
        case = Case.from_json(json.loads(line))
        worker.send({"begin": case.id})
        worker.send({"result": worker.execute(case)})
    return 0


# ==================================================================================================
# Parent side
# ==================================================================================================

class WorkerHandle:
    """A worker subprocess: started on demand, restarted after a crash, hang or memory kill."""

    def __init__(self, run_dir: Path, env: dict):
        self.run_dir, self.env, self.proc, self.buffer = run_dir, env, None, b""
        self.restarts = 0

    def start(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.fuzz.run_corpus", "--worker", str(self.run_dir)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=str(ROOT), env=self.env,
                                     start_new_session=True)
        self.buffer = b""
        message = self.read(deadline=time.monotonic() + 300)
        if not message or not message.get("ready"):
            raise RuntimeError(f"the fuzz worker did not start (see {self.run_dir}/worker-*.log)")

    def read(self, deadline):
        """The next protocol message, or None at EOF / deadline (``"memory"`` when RSS passed the cap)."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], min(left, 0.05))
            if not ready:
                if _proc_rss(self.proc.pid) > MAX_RSS_BYTES:
                    return {"memory": True}
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return None
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc:
            self.proc.wait()
        self.proc = None

    def run(self, case: Case) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.proc.stdin.write((json.dumps(case.to_json()) + "\n").encode())
        self.proc.stdin.flush()
        deadline = time.monotonic() + KILL_SECONDS
        phase = "lowbit"
        base = {"id": case.id, "family": case.family, "category": case.category, "expect": case.expect,
                "seconds": KILL_SECONDS, "load_seconds": 0.0, "peak_rss_mb": 0.0}
        while True:
            message = self.read(deadline)
            if message is None:
                code = self.proc.poll()
                if code is None:  # past the hard limit
                    self.kill()
                    self.restarts += 1
                    return {**base, "outcome": "hang", "detail": f"killed after {KILL_SECONDS} s ({phase})"}
                self.proc.wait()
                self.proc = None
                self.restarts += 1
                sig = -code if code < 0 else None
                if phase == "onnxruntime":
                    return {**base, "outcome": "silently_accepted",
                            "detail": f"lowbit ran it; onnxruntime crashed on it (signal {sig})"}
                name = signal.Signals(sig).name if sig else f"exit {code}"
                return {**base, "outcome": "crash", "detail": f"worker died: {name}"}
            if message.get("memory"):
                self.kill()
                self.restarts += 1
                return {**base, "outcome": "memory", "detail": f"resident memory over {MAX_RSS_BYTES >> 30} GiB"}
            if "phase" in message:
                phase = message["phase"]
            if "result" in message:
                return message["result"]


def _proc_rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def run_cases(cases, *, budget: float | None = None, jobs: int = 1, run_dir: Path | None = None,
              progress=None) -> list:
    """Run ``cases`` in ``jobs`` workers within ``budget`` seconds; return the result dicts (in case order;
    cases not reached within the budget are left out)."""
    cleanup = run_dir is None
    run_dir = Path(run_dir or tempfile.mkdtemp(prefix="lowbit-fuzz-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("NUMBA_NUM_THREADS", "2")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    cases = list(cases)
    deadline = None if budget is None else time.monotonic() + budget
    results = [None] * len(cases)
    lock = threading.Lock()
    queue = list(range(len(cases)))[::-1]

    def loop():
        handle = WorkerHandle(run_dir, env)
        try:
            while True:
                with lock:
                    if not queue or (deadline is not None and time.monotonic() > deadline):
                        return
                    i = queue.pop()
                result = handle.run(cases[i])
                results[i] = result
                if progress:
                    with lock:
                        progress(result)
        finally:
            handle.kill()

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(max(1, jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if cleanup:
        shutil.rmtree(run_dir, ignore_errors=True)
    return [r for r in results if r is not None]


def summary_table(results) -> str:
    by_family = defaultdict(Counter)
    for r in results:
        by_family[r["family"]][r["outcome"]] += 1
    shown = [o for o in OUTCOMES if any(c[o] for c in by_family.values())] or ["clean_error"]
    header = ["family", "cases"] + shown
    rows = []
    for family in [f for f in FAMILIES if f in by_family]:
        c = by_family[family]
        rows.append([family, str(sum(c.values()))] + [str(c[o]) for o in shown])
    total = Counter(r["outcome"] for r in results)
    rows.append(["total", str(len(results))] + [str(total[o]) for o in shown])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa
    lines = [fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows[:-1]]
    lines += [fmt(["-" * w for w in widths]), fmt(rows[-1])]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", metavar="RUN_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--count", type=int, help="cases per family (default: the family's full count)")
    parser.add_argument("--start", type=int, default=0, help="first case index")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ids", help="comma-separated case ids to run instead")
    parser.add_argument("--regressions", action="store_true", help="run the regression cases instead")
    parser.add_argument("--budget", type=float, help="stop starting new cases after this many seconds")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--report", default=str(Path(tempfile.gettempdir()) / "lowbit-fuzz-report.json"),
                        help="JSON report (default: lowbit-fuzz-report.json in the temp folder)")
    parser.add_argument("--verbose", action="store_true", help="print every bad case as it happens")
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    families = [f for f in args.families.split(",") if f]
    if args.regressions:
        from tests.fuzz.regressions import regression_cases

        cases = regression_cases()
    elif args.ids:
        from tests.fuzz.generate import case_from_id

        cases = [case_from_id(i) for i in args.ids.split(",") if i]
    else:
        cases = [make_case(f, i, args.seed) for f in families
                 for i in range(args.start, args.start + (args.count if args.count is not None else COUNTS[f]))]
    start = time.monotonic()
    done = Counter()

    def progress(result):
        done[result["outcome"]] += 1
        n = sum(done.values())
        if args.verbose and result["outcome"] in BAD:
            print(f"  {result['outcome']:<18} {result['id']:<18} {result['category']:<28} {result['detail'][:150]}",
                  flush=True)
        if n % 250 == 0:
            print(f"[{time.monotonic() - start:6.0f} s] {n}/{len(cases)} cases", flush=True)

    results = run_cases(cases, budget=args.budget, jobs=args.jobs, progress=progress)
    elapsed = time.monotonic() - start
    print(summary_table(results))
    print(f"{len(results)} of {len(cases)} cases in {elapsed:.0f} s")
    bad = [r for r in results if r["outcome"] in BAD]
    by_cat = Counter((r["outcome"], r["category"]) for r in bad)
    for (outcome, category), n in sorted(by_cat.items()):
        example = next(r for r in bad if r["outcome"] == outcome and r["category"] == category)
        print(f"  {outcome:<18} {category:<30} x{n:<4} e.g. {example['id']}: {example['detail'][:140]}")
    report = {"command": " ".join(sys.argv), "seconds": round(elapsed, 1), "cases": len(cases),
              "ran": len(results), "summary": {f: dict(Counter(r["outcome"] for r in results if r["family"] == f))
                                               for f in FAMILIES}, "lenient": LENIENT, "results": results}
    Path(args.report).write_text(json.dumps(report, indent=1))
    print(f"wrote {args.report}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
