"""The hostile-input corpus: seeded, reproducible cases in five families.

``make_case(family, index, seed)`` is a pure function: the same arguments give the same
:class:`Case` on every machine.  A case holds only JSON values (its ``spec``): which seed
model, which mutation and the random numbers that place it.  ``build_*`` functions turn a
spec into files in a folder, deterministically, when the case runs (see ``run_corpus.py``);
the picks are stored as plain integers and fractions and resolved against the seed there
(``pick % len(candidates)``), so generating a case needs neither lowbit nor the seed files.

Families (default counts in :data:`COUNTS`):

``onnx``
    Valid seeds (``models/*.onnx`` and the graphs of :mod:`tests.fuzz.seeds`) with one
    mutation: truncated / bit-flipped bytes, attribute values and types, undefined inputs,
    duplicated outputs, cycles, opsets and IR versions, initializer dtypes and dims, raw
    data cut short, unknown ops and domains, external data, huge constant shapes...
``lowbit``
    ``.lowbit`` files quantized from the seeds (fp16 ... binary), with one corruption:
    truncation, byte flips, zip-level changes, graph.json field and structure mutations,
    tensors.npz member mutations (including object arrays whose pickle would create a
    marker file).
``run_input``
    Bad ``Model.run`` inputs and bad ``lowbit run`` input / output files.
``cli``
    Bad arguments for every subcommand.
``api``
    Bad arguments to ``lowbit.load``, ``Model.run``, ``lowbit.quantize``, ``lowbit.save``
    and ``Model.summary``.

Each case says what it must do: ``expect="error"`` (a LowbitError / exit 2) or ``"either"``
(a clean error, or a correct result).
"""
from __future__ import annotations

import copy
import io
import json
import os
import random
import struct
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

FAMILIES = ("onnx", "lowbit", "run_input", "cli", "api")
COUNTS = {"onnx": 2000, "lowbit": 2000, "run_input": 300, "cli": 300, "api": 500}


@dataclass
class Case:
    """One generated case: ``id`` is ``family-seed-index``; ``spec`` holds only JSON values."""

    id: str
    family: str
    category: str
    expect: str
    spec: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "Case":
        return cls(**d)


def _rng(family: str, index: int, seed: int) -> random.Random:
    return random.Random(f"lowbit-fuzz:{seed}:{family}:{index}")


def _table(weights: dict, salt: str) -> list:
    """The kinds, each repeated by its weight, in a fixed shuffled order: ``table[index % len]``."""
    table = [k for k, w in weights.items() for _ in range(w)]
    random.Random(salt).shuffle(table)
    # Every kind appears within the first len(weights) entries, so a short slice covers them all.
    first = list(dict.fromkeys(table))
    return first + table


def make_case(family: str, index: int, seed: int = 0) -> Case:
    """The case ``index`` of ``family`` for ``seed`` (pure)."""
    rng = _rng(family, index, seed)
    maker = {"onnx": _onnx_case, "lowbit": _lowbit_case, "run_input": _run_input_case, "cli": _cli_case,
             "api": _api_case}[family]
    category, expect, spec = maker(index, rng)
    return Case(f"{family}-{seed}-{index}", family, category, expect, spec)


def generate(families=FAMILIES, count=None, seed: int = 0):
    """Every case of ``families``: ``count`` per family (default :data:`COUNTS`)."""
    for family in families:
        for index in range(count if count is not None else COUNTS[family]):
            yield make_case(family, index, seed)


def case_from_id(case_id: str) -> Case:
    family, seed, index = case_id.rsplit("-", 2)
    return make_case(family, int(index), int(seed))


# --------------------------------------------------------------------------------------------------
# ONNX family
# --------------------------------------------------------------------------------------------------

BUILT_SEEDS = ("conv_basic", "conv_group", "shape_plumbing", "resize_concat", "const_shapes", "misc_ops",
               "two_outputs", "fixed_batch")
COMMITTED_SEEDS = ("deep_convnet", "googlenet_small", "mlp", "resnet_small", "vgg_bn")
ALL_SEEDS = BUILT_SEEDS + COMMITTED_SEEDS
CONV_SEEDS = ("conv_basic", "conv_group", "shape_plumbing", "two_outputs", "fixed_batch", "deep_convnet",
              "resnet_small", "googlenet_small", "vgg_bn")
POOL_SEEDS = ("conv_basic", "conv_group", "deep_convnet", "vgg_bn", "googlenet_small")

ONNX_KINDS = {
    "truncate": 8, "bitflip": 15, "byteset": 5, "conv_attr": 11, "pool_attr": 8, "axis_attr": 8, "attr_type": 5,
    "attr_unknown": 2, "rename_input": 4, "drop_initializer": 2, "dup_output": 3, "cycle": 3, "opset": 3,
    "ir_version": 2, "init_dtype": 5, "init_dims": 3, "raw_truncated": 3, "input_dims": 2, "unknown_op": 3,
    "external": 6, "huge": 4, "reshape_bad": 2, "flatten_axis": 2, "lrn_size": 2, "dropout_training": 2,
    "empty_graph": 1,
}
_ONNX_TABLE = _table(ONNX_KINDS, "onnx")

INT_PALETTE = [-5, -1, 0, 1, 2, 3, 5, 17, 99, 2 ** 31 - 1, 2 ** 31, 2 ** 62, -(2 ** 62)]


def _int_list(rng, n):
    """A replacement for an INTS attribute of length ``n``: the palette, in the same or a wrong length."""
    v = rng.choice(INT_PALETTE)
    form = rng.randrange(5)
    if form == 0:
        return [v] * n
    if form == 1:
        return [v]
    if form == 2:
        return []
    if form == 3:
        return [v] * (n + 2)
    return [rng.choice(INT_PALETTE) for _ in range(max(n, 1))]


def _onnx_case(index, rng):
    kind = _ONNX_TABLE[index % len(_ONNX_TABLE)]
    seedname = rng.choice(ALL_SEEDS)
    spec = {"seed": seedname, "kind": kind, "input_seed": rng.randrange(1 << 30)}
    expect = "either"
    if kind == "truncate":
        spec["frac"] = rng.random()
    elif kind == "bitflip":
        spec["flips"] = [[rng.random(), rng.randrange(8)] for _ in range(rng.choice([1, 1, 2, 4, 16]))]
    elif kind == "byteset":
        spec["sets"] = [[rng.random(), rng.choice([0, 0xFF, 0x80, 0x7F])] for _ in range(rng.choice([1, 4, 32]))]
    elif kind == "conv_attr":
        spec["seed"] = rng.choice(CONV_SEEDS)
        spec["pick"] = rng.randrange(1 << 16)
        name = rng.choice(["pads", "strides", "dilations", "kernel_shape", "group", "auto_pad"])
        spec["attr"] = name
        if name == "group":
            spec["value"] = rng.choice([0, -1, 3, 5, 7, 2 ** 31, 64])
        elif name == "auto_pad":
            spec["value"] = rng.choice(["SAME_UPPER", "SAME_LOWER", "VALID", "BOGUS", ""])
        else:
            spec["value"] = _int_list(rng, 4 if name == "pads" else 2)
    elif kind == "pool_attr":
        spec["seed"] = rng.choice(POOL_SEEDS)
        spec["pick"] = rng.randrange(1 << 16)
        name = rng.choice(["kernel_shape", "pads", "strides", "ceil_mode", "dilations", "count_include_pad",
                           "storage_order", "auto_pad"])
        spec["attr"] = name
        if name in ("ceil_mode", "count_include_pad", "storage_order"):
            spec["value"] = rng.choice([-1, 2, 99, 1])
        elif name == "auto_pad":
            spec["value"] = rng.choice(["SAME_UPPER", "SAME_LOWER", "VALID", "NOPE"])
        else:
            spec["value"] = _int_list(rng, 4 if name == "pads" else 2)
    elif kind == "axis_attr":
        spec["pick"] = rng.randrange(1 << 16)
        spec["op"] = rng.choice(["Concat", "Softmax", "Flatten", "Gather", "Split", "Transpose", "Gemm", "Resize",
                                 "ReduceMean", "LeakyRelu", "BatchNormalization", "Unsqueeze"])
        spec["value_pick"] = rng.randrange(1 << 16)
        spec["seed"] = {"Concat": "resize_concat", "Softmax": "conv_group", "Flatten": rng.choice(["conv_basic", "deep_convnet"]),
                        "Gather": "shape_plumbing", "Split": "resize_concat", "Transpose": "resize_concat",
                        "Gemm": rng.choice(["conv_basic", "misc_ops", "mlp"]), "Resize": "resize_concat",
                        "ReduceMean": "misc_ops", "LeakyRelu": "misc_ops", "BatchNormalization": "conv_group",
                        "Unsqueeze": "shape_plumbing"}[spec["op"]]
    elif kind == "attr_type":
        spec["pick"] = rng.randrange(1 << 16)
        spec["to"] = rng.choice(["float", "string", "ints", "floats", "tensor", "strings", "int"])
    elif kind == "attr_unknown":
        spec["pick"] = rng.randrange(1 << 16)
        spec["name"] = rng.choice(["foo", "kernel_shapes", "Pads", "training_mode", "value"])
    elif kind == "rename_input":
        spec["pick"] = rng.randrange(1 << 16)
        spec["to"] = rng.choice(["undefined_tensor", "", "y", " "])
        expect = "error" if spec["to"] in ("undefined_tensor", " ") else "either"
    elif kind == "drop_initializer":
        spec["pick"] = rng.randrange(1 << 16)
        expect = "error"
    elif kind == "dup_output":
        spec["pick"] = rng.randrange(1 << 16)
        spec["form"] = rng.choice(["node_output", "graph_output", "input_as_output"])
    elif kind == "cycle":
        spec["pick"] = rng.randrange(1 << 16)
        spec["form"] = rng.choice(["back_edge", "reverse", "self_loop"])
        expect = "error"
    elif kind == "opset":
        spec["version"] = rng.choice([0, 6, 22, 99, -1, 2 ** 40])
        spec["form"] = rng.choice(["replace", "replace", "drop", "add_domain", "duplicate"])
        expect = "error" if spec["form"] in ("replace", "drop") else "either"
    elif kind == "ir_version":
        spec["version"] = rng.choice([0, 99, 1, 2, -1])
        expect = "error"
    elif kind == "init_dtype":
        spec["pick"] = rng.randrange(1 << 16)
        spec["to"] = rng.choice(["complex64", "complex128", "string", "float64", "int4", "uint4", "float16", "bool",
                                 "int8", "uint64", "bfloat16", "float8e4m3fn", "undefined", "9999"])
        spec["convert"] = rng.random() < 0.5
        expect = "error" if spec["to"] in ("complex64", "complex128", "string", "undefined", "9999") else "either"
    elif kind == "init_dims":
        spec["pick"] = rng.randrange(1 << 16)
        spec["form"] = rng.choice(["minus5", "zero", "huge", "extra", "drop", "swap"])
        expect = "error" if spec["form"] in ("minus5", "huge") else "either"
    elif kind == "raw_truncated":
        spec["pick"] = rng.randrange(1 << 16)
        spec["frac"] = rng.random()
        expect = "error"
    elif kind == "input_dims":
        spec["dims"] = rng.choice([[-5], [0, 0, 0, 0], [2 ** 40, 1, 28, 28], [None, 3], [1, 1, 1, 1, 1], []])
    elif kind == "unknown_op":
        spec["pick"] = rng.randrange(1 << 16)
        spec["form"] = rng.choice(["op", "domain", "ml", "function"])
        expect = "error"
    elif kind == "external":
        spec["seed"] = rng.choice(["conv_basic", "shape_plumbing", "two_outputs", "deep_convnet", "mlp"])
        spec["pick"] = rng.randrange(1 << 16)
        spec["form"] = rng.choice(["dotdot", "absolute", "missing", "short", "long", "offset_past", "negative_offset",
                                   "symlink_out", "directory", "valid", "valid_offset", "backslash", "drive",
                                   "nonint_length", "empty_location", "nested_ok"])
        expect = "either" if spec["form"] in ("valid", "valid_offset", "nested_ok") else "error"
    elif kind == "huge":
        spec["seed"] = "const_shapes"
        spec["target"] = rng.choice(["ConstantOfShape", "Expand", "Tile", "Range", "ConstantOfShape_neg"])
        spec["magnitude"] = rng.choice([1 << 14, 1 << 20, 1 << 31, 1 << 40])
        expect = "error"
    elif kind == "reshape_bad":
        spec["seed"] = rng.choice(["misc_ops", "fixed_batch"])
        spec["shape"] = rng.choice([[3, -2], [-1, -1], [0, 0, 0, 0, 0, 0], [7], [-5, 2], [2 ** 40, -1]])
        expect = "error"
    elif kind == "flatten_axis":
        spec["seed"] = rng.choice(["conv_basic", "deep_convnet", "conv_group"])
        spec["axis"] = rng.choice([99, -99, 5, -5])
        expect = "error"
    elif kind == "lrn_size":
        spec["seed"] = "conv_group"
        spec["size"] = rng.choice([0, -1, -3, 2, 2 ** 31])
        expect = "error" if spec["size"] <= 0 else "either"
    elif kind == "dropout_training":
        spec["seed"] = "misc_ops"
        spec["form"] = rng.choice(["training_true", "training_input", "ratio_big"])
        expect = "error" if spec["form"] != "ratio_big" else "either"
    elif kind == "empty_graph":
        spec["form"] = rng.choice(["no_nodes", "no_opset", "empty_bytes", "no_outputs"])
        expect = "error" if spec["form"] != "no_outputs" else "either"
    return f"onnx.{kind}", expect, spec


# --------------------------------------------------------------------------------------------------
# .lowbit family
# --------------------------------------------------------------------------------------------------

LOWBIT_SEEDS = ("conv_basic@fp32", "conv_basic@fp16", "conv_basic@bf16", "conv_basic@fp8-e4m3", "conv_basic@int8",
                "conv_basic@int4", "conv_basic@ternary", "conv_basic@binary", "two_outputs@int8",
                "deep_convnet@int8", "deep_convnet@int2", "misc_ops@fp16", "fixed_batch@int8",
                "deep_convnet_binary.lowbit")

LOWBIT_KINDS = {
    "truncate": 7, "bitflip": 12, "byteset": 4, "zip_missing": 3, "zip_extra": 3, "zip_method": 3,
    "zip_encrypted": 2, "zip_bomb": 3, "zip_garbage": 1, "zip_duplicate": 2, "zip_sizes": 2,
    "json_field": 30, "json_structure": 8, "json_raw": 3,
    "npz_dtype": 5, "npz_shape": 5, "npz_missing": 2, "npz_extra": 1, "npz_pickle": 3, "npz_header": 4,
    "npz_fortran": 1,
}
_LOWBIT_TABLE = _table(LOWBIT_KINDS, "lowbit")

#: Replacement values for graph.json fields.  "$deep" is a list nested 100,000 deep, "$big" a 2 MB string.
PALETTE = [None, -1, 0, 1, 2 ** 63, -(2 ** 63), 1e308, "$nan", "$inf", "x", "", [], {}, "$deep", True, 1.5,
           [0], {"tensor": "nope"}, {"dict": {}}, {"tuple": []}, {"float": "inf"}, "$big", [[[[[]]]]], -0.0,
           {"dict": None}, "int8", "fp16", "Conv"]


def _lowbit_case(index, rng):
    kind = _LOWBIT_TABLE[index % len(_LOWBIT_TABLE)]
    spec = {"seed": rng.choice(LOWBIT_SEEDS), "kind": kind, "input_seed": rng.randrange(1 << 30)}
    expect = "either"
    if kind == "truncate":
        spec["frac"] = rng.random()
    elif kind == "bitflip":
        spec["flips"] = [[rng.random(), rng.randrange(8)] for _ in range(rng.choice([1, 1, 2, 8]))]
    elif kind == "byteset":
        spec["sets"] = [[rng.random(), rng.choice([0, 0xFF, 0x80])] for _ in range(rng.choice([1, 8, 64]))]
    elif kind == "zip_missing":
        spec["member"] = rng.choice(["graph.json", "tensors.npz", "both"])
        expect = "error"
    elif kind == "zip_extra":
        spec["member"] = rng.choice(["evil.py", "../escape.txt", "/abs.txt", "graph.json.bak", "dir/", "tensors.npy"])
    elif kind == "zip_method":
        spec["member"] = rng.choice(["graph.json", "tensors.npz"])
        spec["method"] = rng.choice(["bz2", "lzma"])
        expect = "error"
    elif kind == "zip_encrypted":
        spec["member"] = rng.choice(["graph.json", "tensors.npz"])
        spec["where"] = rng.choice(["central", "local", "both"])
        expect = "error"
    elif kind == "zip_bomb":
        spec["member"] = rng.choice(["graph.json", "tensors.npz", "npz_member"])
        spec["form"] = rng.choice(["honest", "understated"])
        expect = "error"
    elif kind == "zip_garbage":
        spec["form"] = rng.choice(["empty", "zeros", "text", "eocd_only"])
        expect = "error"
    elif kind == "zip_duplicate":
        spec["member"] = rng.choice(["graph.json", "tensors.npz"])
    elif kind == "zip_sizes":
        spec["member"] = rng.choice(["graph.json", "tensors.npz"])
        spec["field"] = rng.choice(["file_size", "compress_size", "crc", "header_offset"])
        spec["value"] = rng.choice([0, 1, 2 ** 32 - 1, 12345])
    elif kind == "json_field":
        spec["pick"] = rng.randrange(1 << 20)
        spec["value"] = rng.randrange(len(PALETTE))
        spec["region"] = rng.choice(["any", "any", "nodes", "nodes", "attrs", "quant", "top", "io", "encodings",
                                     "constants"])
    elif kind == "json_structure":
        spec["form"] = rng.choice(["delete_key", "add_key", "dup_node", "drop_node", "reverse_nodes",
                                   "rename_input", "rename_output", "swap_const", "unknown_op", "precision"])
        spec["pick"] = rng.randrange(1 << 20)
    elif kind == "json_raw":
        spec["form"] = rng.choice(["not_json", "bad_utf8", "deep", "top_list", "huge_int", "nan_literal", "bom",
                                   "format_other", "version_2", "empty"])
        expect = "error"
    elif kind == "npz_dtype":
        spec["pick"] = rng.randrange(1 << 20)
        spec["to"] = rng.choice(["float64", "complex64", "int64", "bool", "<U4", "S3", "V8", "float16", "uint8",
                                 "int8", "struct", ">f4", "datetime64[s]", "object_ok"])
    elif kind == "npz_shape":
        spec["pick"] = rng.randrange(1 << 20)
        spec["form"] = rng.choice(["flat", "scalar", "empty", "extra_dim", "transpose", "half", "double"])
    elif kind == "npz_missing":
        spec["pick"] = rng.randrange(1 << 20)
        expect = "error"
    elif kind == "npz_extra":
        spec["form"] = rng.choice(["extra_array", "extra_pickle", "extra_text"])
    elif kind == "npz_pickle":
        spec["pick"] = rng.randrange(1 << 20)
        spec["form"] = rng.choice(["object_header", "object_named", "pickle_raw"])
        expect = "error"
    elif kind == "npz_header":
        spec["pick"] = rng.randrange(1 << 20)
        spec["form"] = rng.choice(["bad_magic", "version_9", "header_len_huge", "header_expr", "shape_huge",
                                   "shape_negative", "dtype_bogus", "truncated_data", "header_not_dict",
                                   "version_3"])
        expect = "error" if spec["form"] != "version_3" else "either"
    elif kind == "npz_fortran":
        spec["pick"] = rng.randrange(1 << 20)
    return f"lowbit.{kind}", expect, spec


# --------------------------------------------------------------------------------------------------
# run inputs
# --------------------------------------------------------------------------------------------------

RUN_MODELS = ("conv_basic", "two_outputs", "fixed_batch", "const_shapes", "conv_basic@int8", "conv_basic@binary",
              "conv_basic@fp16", "deep_convnet")
RUN_API_INPUTS = {
    # name: expectation
    "rank_minus": "error", "rank_plus": "error", "wrong_channels": "error", "wrong_hw": "either", "bool": "error",
    "int32": "error", "int64": "error", "uint8": "error", "float64": "either", "float16": "either",
    "complex64": "error", "object": "error", "strings": "error", "bytes": "error", "nan": "either",
    "inf": "either", "empty_batch": "either", "non_contiguous": "either", "fortran": "either",
    "big_endian": "either", "list": "either", "scalar": "error", "none": "error", "dict_wrong": "error",
    "dict_extra": "error", "ragged": "error", "masked": "either", "readonly": "either", "zero_dim": "error",
    "batch_1": "either", "batch_odd": "either", "subclass": "either", "huge_values": "either",
    "denormals": "either", "negzero": "either",
}
RUN_CLI_INPUTS = {
    "npy_truncated": "error", "npy_object": "error", "npz_no_keys": "error", "npz_wrong_shape": "error",
    "not_npy": "error", "empty_file": "error", "input_dir": "error", "input_missing": "error",
    "uint8_wrong_shape": "error", "npy_int64": "error", "npy_complex": "error", "npy_bool": "error",
    "npy_strings": "error", "out_missing_folder": "error", "out_is_dir": "error", "out_unwritable": "error",
    "out_parent_is_file": "error", "npy_multi_to_npy": "error", "nan_strict": "error", "fifo_input": "error",
    "npy_ok": "either", "npz_ok": "either", "uint8_images_ok": "either",
}


def _run_input_case(index, rng):
    names = sorted(RUN_API_INPUTS) + sorted(RUN_CLI_INPUTS)
    table = _table({n: 1 for n in names}, "run_input")
    name = table[index % len(table)]
    model = rng.choice(RUN_MODELS)
    if name in RUN_CLI_INPUTS:
        if name == "npy_multi_to_npy":
            model = "two_outputs"
        return f"run_input.cli.{name}", RUN_CLI_INPUTS[name], {"model": model, "input": name, "via": "cli",
                                                                "input_seed": rng.randrange(1 << 30)}
    return f"run_input.api.{name}", RUN_API_INPUTS[name], {"model": model, "input": name, "via": "api",
                                                            "input_seed": rng.randrange(1 << 30)}


# --------------------------------------------------------------------------------------------------
# CLI arguments
# --------------------------------------------------------------------------------------------------

#: ``{MODEL}`` is a valid fp32 .onnx, ``{LOWBIT}`` an int8 .lowbit, ``{DATA}`` a dataset .npz, ``{X}`` an input
#: .npy, ``{DIR}`` an existing folder, ``{MISSING}`` a path that does not exist, ``{JUNK}`` a file of junk bytes,
#: ``{OUT}`` an output path in the case folder, ``{FILE}`` a plain text file.
_BAD_MODELS = ["{MISSING}", "{DIR}", "{JUNK}", "{FILE}", "", "{EMPTY}", "{LOWBIT_JUNK}"]
_BAD_INTS = ["0", "-1", "abc", "1e9", "1.5", "", "9" * 30, "nan", "0x10"]
_BAD_PRECISIONS = ["int9", "int1", "fp64", "", "INT 8", "x" * 200, "int8,int4", "none", "-1", "fp8-e3m4"]
_BAD_OUTPUTS = ["{MISSING}/sub/out.lowbit", "{DIR}", "{FILE}/x.lowbit", "/proc/self/x.lowbit", ""]

CLI_FORMS = {
    "run": [
        ["run"], ["run", "{MODEL}"], ["run", "{MODEL}", "--input"], ["run", "{BAD_MODEL}", "--input", "{X}"],
        ["run", "{MODEL}", "--input", "{MISSING}"], ["run", "{MODEL}", "--input", "{X}", "--batch-size", "{BAD_INT}"],
        ["run", "{MODEL}", "--input", "{X}", "--threads", "{BAD_INT}"],
        ["run", "{MODEL}", "--input", "{X}", "--precision", "int8"],
        ["run", "{LOWBIT}", "--input", "{X}", "--precision", "{BAD_PRECISION}"],
        ["run", "{MODEL}", "--input", "{X}", "--output", "{BAD_OUTPUT_NPY}"],
        ["run", "{MODEL}", "--input", "{JUNK}"], ["run", "{MODEL}", "--input", "{X}", "--bogus"],
        ["run", "{MODEL}", "--input", "{XBAD}"], ["run", "{MODEL}", "--input", "{DIR}"],
    ],
    "inspect": [["inspect"], ["inspect", "{BAD_MODEL}"], ["inspect", "{MODEL}", "extra"], ["inspect", "--nope"],
                ["inspect", "{DYNAMIC_MODEL}"]],
    "quantize": [
        ["quantize", "{MODEL}"], ["quantize", "{MODEL}", "--precision", "int8"],
        ["quantize", "{MODEL}", "--precision", "{BAD_PRECISION}", "-o", "{OUT}.lowbit"],
        ["quantize", "{BAD_MODEL}", "--precision", "fp16", "-o", "{OUT}.lowbit"],
        ["quantize", "{MODEL}", "--precision", "int8", "-o", "{OUT}.lowbit"],
        ["quantize", "{MODEL}", "--precision", "int8", "--calibration", "{MISSING}", "-o", "{OUT}.lowbit"],
        ["quantize", "{MODEL}", "--precision", "int8", "--calibration", "{JUNK}", "-o", "{OUT}.lowbit"],
        ["quantize", "{MODEL}", "--precision", "int8", "--calibration", "{XBAD}", "-o", "{OUT}.lowbit"],
        ["quantize", "{MODEL}", "--precision", "int8", "--calibration", "{XNAN}", "-o", "{OUT}.lowbit"],
        ["quantize", "{MODEL}", "--precision", "int8", "--calibration", "{X}", "--method", "foo", "-o", "{OUT}.lowbit"],
        ["quantize", "{MODEL}", "--precision", "int8", "--calibration", "{X}", "--calibration-size", "{BAD_INT}",
         "-o", "{OUT}.lowbit"],
        ["quantize", "{MODEL}", "--precision", "binary", "--first-layer", "int8", "-o", "{OUT}.lowbit"],
        ["quantize", "{MODEL}", "--precision", "int8", "--first-layer", "bogus", "-o", "{OUT}.lowbit"],
        ["quantize", "{MODEL}", "--precision", "int8", "--activation-type", "int16", "-o", "{OUT}.lowbit"],
        ["quantize", "{MODEL}", "--precision", "fp16", "-o", "{BAD_OUTPUT}"],
        ["quantize", "{LOWBIT}", "--precision", "int8", "--calibration", "{X}", "-o", "{OUT}.lowbit"],
        ["quantize", "{MODEL}", "--precision", "int8", "--calibration", "{XEMPTY}", "-o", "{OUT}.lowbit"],
    ],
    "export": [["export"], ["export", "{MODEL}"], ["export", "{BAD_MODEL}", "-o", "{OUT}.onnx"],
               ["export", "{LOWBIT}", "-o", "{BAD_OUTPUT}"], ["export", "{LOWBIT_JUNK}", "-o", "{OUT}.onnx"]],
    "eval": [
        ["eval", "{BAD_MODEL}"], ["eval", "{MODEL}", "--precisions", "{BAD_PRECISION}", "--out", "{OUT}"],
        ["eval", "{MODEL}", "--precisions", ",,,", "--out", "{OUT}"],
        ["eval", "{MODEL}", "--data", "{MISSING}", "--out", "{OUT}"],
        ["eval", "{MODEL}", "--data", "{JUNK}", "--out", "{OUT}"],
        ["eval", "{MODEL}", "--data", "{DATA_BADLABELS}", "--precisions", "fp32", "--out", "{OUT}"],
        ["eval", "{MODEL}", "--max-drop", "{BAD_POINTS}", "--out", "{OUT}"],
        ["eval", "{MODEL}", "--limit", "{BAD_INT}", "--out", "{OUT}"],
        ["eval", "{MODEL}", "--jobs", "{BAD_INT}", "--out", "{OUT}"],
        ["eval", "{MODEL}", "--method", "nope", "--out", "{OUT}"],
        ["eval", "{MODEL}", "--sensitivity", "int9", "--out", "{OUT}"],
        ["eval", "{MODEL}", "--calibration", "{MISSING}", "--data", "{DATA}", "--precisions", "fp32", "--out", "{OUT}"],
        ["eval", "{MODEL}", "--data", "{DATA_NOKEYS}", "--precisions", "fp32", "--out", "{OUT}"],
    ],
    "train": [["train"], ["train", "no_such_net"], ["train", "deep_convnet", "--epochs", "{BAD_INT}"],
              ["train", "../etc/passwd"], ["train", "deep_convnet", "--seed", "abc"]],
    "finetune": [
        ["finetune", "{MODEL}"], ["finetune", "{MODEL}", "--precision", "fp16", "--data", "{DATA}", "-o", "{OUT}.lowbit"],
        ["finetune", "{MODEL}", "--precision", "{BAD_PRECISION}", "--data", "{DATA}", "-o", "{OUT}.lowbit"],
        ["finetune", "{BAD_MODEL}", "--precision", "binary", "--data", "{DATA}", "-o", "{OUT}.lowbit"],
        ["finetune", "{MODEL}", "--precision", "binary", "--data", "{MISSING}", "-o", "{OUT}.lowbit"],
        ["finetune", "{MODEL}", "--precision", "binary", "--data", "{JUNK}", "-o", "{OUT}.lowbit"],
        ["finetune", "{MODEL}", "--precision", "binary", "--data", "{DATA}", "--distill", "{BAD_FRACTION}",
         "-o", "{OUT}.lowbit"],
        ["finetune", "{MODEL}", "--precision", "binary", "--data", "{DATA}", "--temperature", "{BAD_FRACTION}",
         "-o", "{OUT}.lowbit"],
        ["finetune", "{MODEL}", "--precision", "binary", "--data", "{DATA}", "--ema", "{BAD_FRACTION}",
         "-o", "{OUT}.lowbit"],
        ["finetune", "{MODEL}", "--precision", "binary", "--data", "{DATA}", "--sign-grad", "foo", "-o", "{OUT}.lowbit"],
        ["finetune", "{MODEL}", "--precision", "binary", "--data", "{DATA}", "--epochs", "{BAD_INT}",
         "-o", "{OUT}.lowbit"],
        ["finetune", "{MODEL}", "--precision", "binary", "--data", "{DATA_NOKEYS}", "-o", "{OUT}.lowbit"],
        ["finetune", "{MODEL}", "--precision", "binary", "--data", "{DATA}", "-o", "{BAD_OUTPUT}"],
    ],
    "top": [[], ["bogus"], ["--version-nope"], ["run", "--help-me"], ["--debug"]],
}
_CLI_FLAT = [(cmd, i) for cmd in CLI_FORMS for i in range(len(CLI_FORMS[cmd]))]


def _cli_case(index, rng):
    cmd, form = _CLI_FLAT[index % len(_CLI_FLAT)]
    argv = list(CLI_FORMS[cmd][form])
    subs = {"{BAD_MODEL}": rng.choice(_BAD_MODELS), "{BAD_INT}": rng.choice(_BAD_INTS),
            "{BAD_PRECISION}": rng.choice(_BAD_PRECISIONS), "{BAD_OUTPUT}": rng.choice(_BAD_OUTPUTS),
            "{BAD_OUTPUT_NPY}": rng.choice(["{MISSING}/sub/y.npy", "{DIR}", "{FILE}/y.npy", "/proc/self/y.npy"]),
            "{BAD_POINTS}": rng.choice(["-1", "101", "nan", "inf", "abc"]),
            "{BAD_FRACTION}": rng.choice(["-0.5", "2", "nan", "inf", "abc", "1", "0"])}
    argv = [subs.get(a, a) for a in argv]
    for a in list(argv):
        if a.startswith("{BAD_"):
            raise AssertionError(a)
    # A temperature of 0.5 or 1 and ema 0 are legal; keep only the bad ones for those flags.
    for flag, bad in (("--temperature", ["-0.5", "nan", "inf", "abc", "0"]), ("--ema", ["-0.5", "2", "nan", "abc", "1"]),
                      ("--distill", ["-0.5", "2", "nan", "abc"])):
        if flag in argv:
            i = argv.index(flag) + 1
            if argv[i] not in bad:
                argv[i] = bad[index % len(bad)]
    # --threads larger than the machine is legal (clamped), so the bad ints stay below 1 or non-numeric.
    return f"cli.{cmd}", "error", {"argv": argv, "debug": rng.random() < 0.05}


# --------------------------------------------------------------------------------------------------
# Python API arguments
# --------------------------------------------------------------------------------------------------

#: Special argument tokens, resolved by the runner: ``{"$": name}``.
def T(name):
    return {"$": name}


_LOAD_BAD = [123, None, T("empty_bytes"), T("dir"), T("missing"), 1.5, [1, 2], T("object"), T("junk_bytes"), T("bytearray_junk"),
             T("memoryview_junk"), T("empty_proto"), T("fifo"), T("text_file"), T("lowbit_dir"), "", T("pathlib_missing"),
             T("proto_no_graph"), True, T("null_byte_path"), T("long_path"), T("zip_not_lowbit"), {"a": 1}]
_RUN_KW_BAD = {
    "batch_size": [-1, 0, 1.5, "8", True, 2 ** 70, T("nan"), [4], T("np_int_neg")],
    "threads": [0, -1, "2", 1.5, T("nan"), [2], -(2 ** 40)],
    "outputs": [5, ["nope"], [None], [5], T("object"), {"y": 1}, ["x", "nope"], T("bytes_y")],
}
_RUN_KW_EITHER = {"batch_size": [1, 3, 10 ** 6, None, T("np_int")], "threads": [1, 2, 10 ** 6, None],
                  "outputs": [None, [], T("first_output_list"), T("first_output_str"), T("input_name_list")]}
_Q_BAD = {
    "precision": ["int9", None, 5, "", "int8 x", T("object"), "INT1", "fp64", 8, ["int8"]],
    "calibration": ["abc", [], T("empty_array"), T("nan_array"), T("wrong_shape"), T("dict_wrong"), T("int_array"),
                    T("complex_array"), T("object_array"), 5, T("dict_empty"), T("strings_array")],
    "method": ["foo", None, 5, "", "MINMAX ", ["minmax"]],
    "percentile": [200, -1, T("nan"), "x", 0, T("inf"), None, 100.5],
    "calibration_size": [0, -1, "x", 1.5, T("nan")],
    "nodes_to_exclude": [5, T("object"), [1, 2], None],
    "calibration_ranges": [{"x": [1]}, {"x": "a"}, 5, [1, 2], {"x": [T("nan"), 1.0]}, {"x": [2.0, 1.0]}],
    "activation_type": ["int9", 5, None], "first_layer": ["x", 5], "last_layer": ["bogus"], "foo": [1],
    "node_precisions": [{"conv1": "int9"}, 5, "int8"],
}
_SAVE_BAD = {"path": [T("missing_folder_path"), T("dir"), 5, None, T("file_parent_path"), T("proc_path"), "",
                      T("bytes_x")],
             "model": [T("none"), "model", 5, T("object")]}
_SUMMARY_BAD = [T("wrong_shape"), "x", T("int_array"), T("object"), T("empty_array")]

API_CALLS = ("load", "run", "run_kw", "quantize", "quantize_model", "save", "summary")


def _api_case(index, rng):
    table = _table({"load": 6, "run": 4, "run_kw": 10, "quantize": 14, "quantize_model": 2, "save": 4, "summary": 2},
                   "api")
    call = table[index % len(table)]
    model = rng.choice(["conv_basic", "two_outputs", "fixed_batch", "conv_basic@int8", "misc_ops"])
    expect = "error"
    if call == "load":
        spec = {"call": "load", "arg": rng.choice(_LOAD_BAD),
                "kwargs": {} if rng.random() < 0.85 else {"optimize_graph": rng.choice(["yes", None, 2, []])}}
        if spec["kwargs"]:
            spec["arg"] = T("model_path")
            expect = "either"
    elif call == "run":
        spec = {"call": "run", "model": model, "x": rng.choice(
            [None, 5, "x", T("object"), T("wrong_shape"), T("int_array"), [[1, 2]], T("dict_wrong"), T("empty_dict"),
             T("nested_dict"), T("generator")]), "kwargs": {}}
    elif call == "run_kw":
        key = rng.choice(sorted(_RUN_KW_BAD))
        if rng.random() < 0.3:
            value, expect = rng.choice(_RUN_KW_EITHER[key]), "either"
        else:
            value = rng.choice(_RUN_KW_BAD[key])
        spec = {"call": "run", "model": model, "x": T("good_input"), "kwargs": {key: value}}
    elif call == "quantize":
        key = rng.choice(sorted(_Q_BAD))
        spec = {"call": "quantize", "model": rng.choice(["conv_basic", "two_outputs", "misc_ops"]),
                "precision": rng.choice(["int8", "int4", "fp16", "fp8-e4m3", "ternary", "binary"]),
                "kwargs": {"calibration": T("good_calibration")}}
        value = rng.choice(_Q_BAD[key])
        if key == "precision":
            spec["precision"] = value
        else:
            spec["kwargs"][key] = value
        if key in ("method", "percentile") and spec["precision"] in ("fp16", "binary"):
            spec["precision"] = "int8"  # a float16 or binary model never reads the method: keep the argument read
        if key in ("activation_type", "first_layer", "last_layer", "node_precisions") and spec["precision"] in (
                "fp16", "fp8-e4m3"):
            spec["precision"] = "int4"
        if key == "calibration" and spec["precision"] in ("fp16", "binary"):
            spec["precision"] = "int8"
        if key == "calibration_ranges":
            spec["kwargs"].pop("calibration")
            spec["precision"] = "int8"
        if key == "percentile":
            spec["kwargs"]["method"] = "percentile"
        if key == "nodes_to_exclude" and value is None:
            expect = "either"
    elif call == "quantize_model":
        spec = {"call": "quantize_model", "model_arg": rng.choice([None, "models/deep_convnet.onnx", 5, T("object"),
                                                                    T("quantized_model")]),
                "precision": "int8", "kwargs": {"calibration": T("good_calibration")}}
    elif call == "save":
        key = rng.choice(sorted(_SAVE_BAD))
        spec = {"call": "save", "model": model, "path": T("good_out_path"), "model_arg": None}
        if key == "path":
            spec["path"] = rng.choice(_SAVE_BAD["path"])
        else:
            spec["model_arg"] = rng.choice(_SAVE_BAD["model"])
    else:
        spec = {"call": "summary", "model": rng.choice(["conv_basic", "const_shapes", "conv_basic@int8"]),
                "x": rng.choice(_SUMMARY_BAD)}
    return f"api.{spec['call']}", expect, spec


# --------------------------------------------------------------------------------------------------
# Builders: spec -> files (deterministic)
# --------------------------------------------------------------------------------------------------

def _flip(data: bytes, flips) -> bytes:
    b = bytearray(data)
    for frac, bit in flips:
        b[int(frac * len(b)) % len(b)] ^= 1 << bit
    return bytes(b)


def _set(data: bytes, sets) -> bytes:
    b = bytearray(data)
    for frac, value in sets:
        b[int(frac * len(b)) % len(b)] = value
    return bytes(b)


def build_onnx(spec: dict, folder: Path):
    """Write the mutated model of an ``onnx`` case into ``folder``; return ``(model path, feeds, input name)``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from . import seeds

    name = spec["seed"]
    kind = spec["kind"]
    data = seeds.seed_bytes(name)
    x = seeds.sample_input(name, spec["input_seed"])
    in_name = seeds.input_name(name)
    path = folder / "model.onnx"
    if kind == "truncate":
        path.write_bytes(data[:int(spec["frac"] * len(data))])
        return path, {in_name: x}
    if kind == "raw_file":  # a regression input found by eval/fuzz_atheris.py, stored whole
        import base64

        path.write_bytes(base64.b64decode(spec["b64"]))
        return path, {in_name: x}
    if kind == "bitflip":
        path.write_bytes(_flip(data, spec["flips"]))
        return path, {in_name: x}
    if kind == "byteset":
        path.write_bytes(_set(data, spec["sets"]))
        return path, {in_name: x}
    model = seeds.seed_proto(name)
    g = model.graph
    nodes = list(g.node)
    pick = spec.get("pick", 0)

    def set_attr(node, attr_name, value):
        for a in list(node.attribute):
            if a.name == attr_name:
                node.attribute.remove(a)
        if value is not None:
            if isinstance(value, list) and not value:  # an empty INTS attribute (make_attribute cannot infer it)
                attr = onnx.AttributeProto()
                attr.name, attr.type = attr_name, onnx.AttributeProto.INTS
                node.attribute.append(attr)
            else:
                node.attribute.append(helper.make_attribute(attr_name, value))

    if kind in ("conv_attr", "pool_attr"):
        ops = ("Conv",) if kind == "conv_attr" else ("MaxPool", "AveragePool")
        cands = [n for n in nodes if n.op_type in ops] or nodes
        node = cands[pick % len(cands)]
        value = spec["value"]
        if spec["attr"] == "auto_pad" and value:
            set_attr(node, "pads", None)
        set_attr(node, spec["attr"], value if not isinstance(value, list) else [int(v) for v in value])
    elif kind == "axis_attr":
        cands = [n for n in nodes if n.op_type == spec["op"]] or nodes
        node = cands[pick % len(cands)]
        op = node.op_type
        vp = spec["value_pick"]
        choices = {
            "Concat": [("axis", v) for v in (4, -5, 99, 3, -1)],
            "Softmax": [("axis", v) for v in (2, -3, 99, 0)],
            "Flatten": [("axis", v) for v in (5, -9, 0, 4)],
            "Gather": [("axis", v) for v in (1, -2, 9)],
            "Split": [("axis", v) for v in (4, -5, 0)] + [("num_outputs", v) for v in (0, 3, -1, 99)],
            "Transpose": [("perm", v) for v in ([0, 1, 2], [0, 0, 1, 2], [0, 1, 2, 9], [3, 2, 1, 0], [-1, 0, 1, 2])],
            "Gemm": [("transA", v) for v in (1, 2, -1)] + [("transB", v) for v in (0, 5)] +
                    [("alpha", v) for v in (float("nan"), 1e39)],
            "Resize": [("mode", v) for v in ("cubic", "bogus", "")] +
                      [("coordinate_transformation_mode", v) for v in ("nope", "tf_crop_and_resize")] +
                      [("nearest_mode", "sideways"), ("antialias", 5), ("exclude_outside", 3)],
            "ReduceMean": [("keepdims", v) for v in (2, -1)] + [("noop_with_empty_axes", 7)],
            "LeakyRelu": [("alpha", v) for v in (float("nan"), float("inf"), -1e30)],
            "BatchNormalization": [("epsilon", v) for v in (-1.0, 0.0, float("nan"))] + [("training_mode", 1)],
            "Unsqueeze": [],
        }.get(op) or [("axis", 99)]
        attr_name, value = choices[vp % len(choices)]
        set_attr(node, attr_name, value)
        if op == "Unsqueeze":  # axes is an input since opset 13
            for init in g.initializer:
                if init.name == node.input[1]:
                    init.CopyFrom(numpy_helper.from_array(np.array([[9, -9, 0][vp % 3]], np.int64), init.name))
    elif kind == "attr_type":
        cands = [n for n in nodes if n.attribute] or nodes
        node = cands[pick % len(cands)]
        if node.attribute:
            attr = node.attribute[(pick // 7) % len(node.attribute)]
            to = spec["to"]
            value = {"float": 1.5, "string": "abc", "ints": [1, 2, 3], "floats": [0.5, 2.0], "int": 3,
                     "strings": ["a", "b"], "tensor": numpy_helper.from_array(np.zeros((2, 2), np.float32))}[to]
            set_attr(node, attr.name, value)
    elif kind == "attr_unknown":
        node = nodes[pick % len(nodes)]
        set_attr(node, spec["name"], 3)
    elif kind == "rename_input":
        cands = [n for n in nodes if n.input]
        node = cands[pick % len(cands)]
        node.input[(pick // 11) % len(node.input)] = spec["to"]
    elif kind == "drop_initializer":
        if g.initializer:
            del g.initializer[pick % len(g.initializer)]
    elif kind == "dup_output":
        form = spec["form"]
        if form == "node_output" and len(nodes) > 1:
            i = pick % (len(nodes) - 1)
            nodes[i + 1].output[0] = nodes[i].output[0]
        elif form == "graph_output":
            g.output.append(copy.deepcopy(g.output[0]))
        else:
            out = helper.make_tensor_value_info(g.input[0].name, TensorProto.FLOAT, None)
            g.output.append(out)
    elif kind == "cycle":
        form = spec["form"]
        if form == "reverse":
            reordered = list(reversed(nodes))
            del g.node[:]
            g.node.extend(reordered)
        elif form == "self_loop":
            node = nodes[pick % len(nodes)]
            node.input[0] = node.output[0]
        elif len(nodes) > 1:
            i = pick % (len(nodes) - 1)
            nodes[i].input[0] = nodes[-1].output[0] if i != len(nodes) - 1 else nodes[i].output[0]
    elif kind == "opset":
        form, version = spec["form"], spec["version"]
        if form == "replace":
            model.opset_import[0].version = version
        elif form == "drop":
            del model.opset_import[:]
            model.opset_import.append(helper.make_opsetid("com.other", 1))
        elif form == "add_domain":
            model.opset_import.append(helper.make_opsetid("ai.onnx.ml", max(0, min(version, 2 ** 31))))
        else:
            model.opset_import.append(helper.make_opsetid("", version))
    elif kind == "ir_version":
        model.ir_version = spec["version"]
    elif kind == "init_dtype":
        if g.initializer:
            init = g.initializer[pick % len(g.initializer)]
            codes = {"complex64": TensorProto.COMPLEX64, "complex128": TensorProto.COMPLEX128,
                     "string": TensorProto.STRING, "float64": TensorProto.DOUBLE, "int4": TensorProto.INT4,
                     "uint4": TensorProto.UINT4, "float16": TensorProto.FLOAT16, "bool": TensorProto.BOOL,
                     "int8": TensorProto.INT8, "uint64": TensorProto.UINT64, "bfloat16": TensorProto.BFLOAT16,
                     "float8e4m3fn": TensorProto.FLOAT8E4M3FN, "undefined": TensorProto.UNDEFINED, "9999": 9999}
            to = spec["to"]
            if spec["convert"] and to in ("float64", "float16", "int8", "uint64", "bool", "complex64"):
                arr = numpy_helper.to_array(init)
                init.CopyFrom(numpy_helper.from_array(arr.astype({"float64": np.float64, "float16": np.float16,
                                                                  "int8": np.int8, "uint64": np.uint64,
                                                                  "bool": np.bool_, "complex64": np.complex64}[to]),
                                                      init.name))
            elif to == "string":
                init.data_type = TensorProto.STRING
                init.ClearField("raw_data")
                init.string_data.extend([b"a"] * int(np.prod(init.dims, dtype=np.int64) or 1))
            else:
                init.data_type = codes[to]
    elif kind == "init_dims":
        if g.initializer:
            init = g.initializer[pick % len(g.initializer)]
            dims = list(init.dims)
            form = spec["form"]
            new = {"minus5": [-5] + dims[1:], "zero": [0] + dims[1:], "huge": [2 ** 40] + dims[1:],
                   "extra": dims + [1], "drop": dims[:-1], "swap": dims[::-1]}[form]
            del init.dims[:]
            init.dims.extend(new)
    elif kind == "raw_truncated":
        with_raw = [i for i in g.initializer if i.raw_data] or list(g.initializer)
        if with_raw:
            init = with_raw[pick % len(with_raw)]
            if not init.raw_data:
                init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init), init.name))
            init.raw_data = init.raw_data[:int(spec["frac"] * len(init.raw_data))]
    elif kind == "input_dims":
        inp = g.input[0]
        dim = inp.type.tensor_type.shape.dim
        del dim[:]
        for d in spec["dims"]:
            entry = dim.add()
            if d is not None:
                entry.dim_value = d
    elif kind == "unknown_op":
        node = nodes[pick % len(nodes)]
        form = spec["form"]
        if form == "op":
            node.op_type = "FrobnicateV2"
        elif form == "domain":
            node.domain = "com.evil"
            model.opset_import.append(helper.make_opsetid("com.evil", 1))
        elif form == "ml":
            node.op_type, node.domain = "Normalizer", "ai.onnx.ml"
            model.opset_import.append(helper.make_opsetid("ai.onnx.ml", 3))
        else:
            node.op_type, node.domain = "MyFunc", "local"
            model.opset_import.append(helper.make_opsetid("local", 1))
    elif kind == "external":
        floats = [i for i in g.initializer if i.data_type == TensorProto.FLOAT and len(i.dims) >= 1]
        init = floats[pick % len(floats)]
        raw = numpy_helper.to_array(init).astype("<f4").tobytes()
        form = spec["form"]
        location, offset, length, payload = "weights.bin", 0, len(raw), raw
        files = {}
        if form == "dotdot":
            location = "../weights.bin"
            (folder.parent / f"{folder.name}-outside.bin").write_bytes(raw)
            location = f"../{folder.name}-outside.bin"
        elif form == "absolute":
            location = str((folder / "weights.bin").resolve())
            files["weights.bin"] = raw
        elif form == "missing":
            location = "nowhere.bin"
        elif form == "short":
            files["weights.bin"] = raw[: len(raw) // 2]
        elif form == "long":
            length = len(raw) + 4
            files["weights.bin"] = raw + b"\0" * 8
        elif form == "offset_past":
            offset = 10 ** 9
            files["weights.bin"] = raw
        elif form == "negative_offset":
            offset = -4
            files["weights.bin"] = raw
        elif form == "symlink_out":
            target = folder.parent / f"{folder.name}-link-target.bin"
            target.write_bytes(raw)
            os.symlink(target, folder / "weights.bin")
        elif form == "directory":
            (folder / "weights.bin").mkdir()
        elif form == "valid":
            files["weights.bin"] = raw
        elif form == "valid_offset":
            offset = 16
            files["weights.bin"] = b"\x01" * 16 + raw
        elif form == "nested_ok":
            location = "sub/w.bin"
            files["sub/w.bin"] = raw
        elif form == "backslash":
            location = "..\\weights.bin"
            files["weights.bin"] = raw
        elif form == "drive":
            location = "C:weights.bin"
            files["weights.bin"] = raw
        elif form == "nonint_length":
            length = "ten"
            files["weights.bin"] = raw
        elif form == "empty_location":
            location = ""
            files["weights.bin"] = raw
        for rel, content in files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(content)
        init.ClearField("raw_data")
        del init.float_data[:]
        init.data_location = TensorProto.EXTERNAL
        del init.external_data[:]
        for key, value in (("location", location), ("offset", offset), ("length", length)):
            entry = init.external_data.add()
            entry.key, entry.value = key, str(value)
    elif kind == "huge":
        target, m = spec["target"], spec["magnitude"]
        byname = {i.name: i for i in g.initializer}
        if target == "ConstantOfShape":
            byname["cshape"].CopyFrom(numpy_helper.from_array(np.array([m, m], np.int64), "cshape"))
        elif target == "ConstantOfShape_neg":
            byname["cshape"].CopyFrom(numpy_helper.from_array(np.array([-m, 4], np.int64), "cshape"))
        elif target == "Expand":
            byname["eshape"].CopyFrom(numpy_helper.from_array(np.array([m, 1, m], np.int64), "eshape"))
        elif target == "Tile":
            byname["reps"].CopyFrom(numpy_helper.from_array(np.array([m, m], np.int64), "reps"))
        else:
            byname["limit"].CopyFrom(numpy_helper.from_array(np.array(float(m) ** 2, np.float32), "limit"))
    elif kind == "reshape_bad":
        for init in g.initializer:
            if init.name in ("rshape", "shape"):
                init.CopyFrom(numpy_helper.from_array(np.array(spec["shape"], np.int64), init.name))
    elif kind == "flatten_axis":
        for node in nodes:
            if node.op_type == "Flatten":
                set_attr(node, "axis", spec["axis"])
    elif kind == "lrn_size":
        for node in nodes:
            if node.op_type == "LRN":
                set_attr(node, "size", spec["size"])
    elif kind == "dropout_training":
        form = spec["form"]
        for node in nodes:
            if node.op_type == "Dropout":
                if form == "ratio_big":
                    g.initializer.append(numpy_helper.from_array(np.array(1.5, np.float32), "ratio"))
                    del node.input[1:]
                    node.input.append("ratio")
                elif form == "training_true":
                    g.initializer.append(numpy_helper.from_array(np.array(0.5, np.float32), "ratio"))
                    g.initializer.append(numpy_helper.from_array(np.array(True), "training"))
                    del node.input[1:]
                    node.input.extend(["ratio", "training"])
                else:
                    g.input.append(helper.make_tensor_value_info("training", TensorProto.BOOL, []))
                    del node.input[1:]
                    node.input.extend(["", "training"])
    elif kind == "empty_graph":
        form = spec["form"]
        if form == "no_nodes":
            del g.node[:]
        elif form == "no_opset":
            del model.opset_import[:]
        elif form == "no_outputs":
            del g.output[:]
        else:
            path.write_bytes(b"")
            return path, {in_name: x}
    path.write_bytes(model.SerializeToString())
    return path, {in_name: x}


# ---- .lowbit files ---------------------------------------------------------------------------------

def _zip_members(data: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def _zip(members, methods=None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, content in members:
            method = (methods or {}).get(name, zipfile.ZIP_DEFLATED)
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), content, compress_type=method)
    return buffer.getvalue()


def _paths(value, prefix=()):
    """Every (path, value) inside a JSON document, parents before children."""
    yield prefix, value
    if isinstance(value, dict):
        for k in value:
            yield from _paths(value[k], prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def _palette_value(i: int):
    v = PALETTE[i % len(PALETTE)]
    if v == "$nan":
        return float("nan")
    if v == "$inf":
        return float("inf")
    if v == "$deep":
        deep = []
        for _ in range(100_000):
            deep = [deep]
        return deep
    if v == "$big":
        return "x" * (2 << 20)
    return copy.deepcopy(v)


def _set_path(doc, path, value):
    target = doc
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = value


def _dumps(doc) -> bytes:
    """JSON text, tolerating the deep palette value (written out by hand: json.dumps recurses)."""
    try:
        return json.dumps(doc, separators=(",", ":")).encode()
    except (RecursionError, ValueError):
        marker = "\"__DEEP__\""
        text = json.dumps(_replace_deep(doc, marker.strip('"')), separators=(",", ":"))
        return text.replace(marker, "[" * 100_000 + "]" * 100_000).encode()


def _replace_deep(value, marker, depth=0):
    if depth > 50:
        return marker
    if isinstance(value, dict):
        return {k: _replace_deep(v, marker, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_deep(v, marker, depth + 1) for v in value]
    return value


def _npy_bytes(array, header_override=None, version=(1, 0)) -> bytes:
    f = io.BytesIO()
    if header_override is None:
        np.lib.format.write_array(f, array, version=version, allow_pickle=False)
        return f.getvalue()
    f.write(np.lib.format.magic(*version))
    header = header_override.encode("latin1")
    pad = 16 - (len(header) + 10 + 1) % 16
    header = header + b" " * pad + b"\n"
    f.write(struct.pack("<H", len(header)))
    f.write(header)
    f.write(np.ascontiguousarray(array).tobytes())
    return f.getvalue()


def _pickle_payload(marker: Path) -> bytes:
    """A pickle whose loading would create ``marker`` (open(marker, "w")), written by hand."""
    import pickle

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    return pickle.dumps(Evil(), protocol=2)


def _object_npy(marker: Path) -> bytes:
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    return _npy_bytes(np.zeros(0, np.uint8), header) + _pickle_payload(marker)


def _npz(members: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for key, data in members.items():
            zf.writestr(zipfile.ZipInfo(key, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()


def _read_npz(data: bytes) -> dict:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def _patch_central(data: bytes, member: str, field_name: str, value: int) -> bytes:
    """Overwrite a field of ``member``'s central-directory entry (and its local header for sizes/crc)."""
    b = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(member)
    pos = b.find(b"PK\x01\x02" + b"", 0)
    while pos != -1:
        name_len = struct.unpack_from("<H", b, pos + 28)[0]
        name = bytes(b[pos + 46:pos + 46 + name_len]).decode()
        if name == member:
            offsets = {"crc": 16, "compress_size": 20, "file_size": 24, "header_offset": 42}
            struct.pack_into("<I", b, pos + offsets[field_name], value)
            break
        pos = b.find(b"PK\x01\x02", pos + 4)
    if field_name in ("crc", "compress_size", "file_size"):
        local = info.header_offset
        struct.pack_into("<I", b, local + {"crc": 14, "compress_size": 18, "file_size": 22}[field_name], value)
    return bytes(b)


def _set_encrypted(data: bytes, member: str, where: str) -> bytes:
    b = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(member)
    if where in ("local", "both"):
        flags = struct.unpack_from("<H", b, info.header_offset + 6)[0]
        struct.pack_into("<H", b, info.header_offset + 6, flags | 1)
    if where in ("central", "both"):
        pos = b.find(b"PK\x01\x02")
        while pos != -1:
            name_len = struct.unpack_from("<H", b, pos + 28)[0]
            if bytes(b[pos + 46:pos + 46 + name_len]).decode() == member:
                flags = struct.unpack_from("<H", b, pos + 8)[0]
                struct.pack_into("<H", b, pos + 8, flags | 1)
            pos = b.find(b"PK\x01\x02", pos + 4)
    return bytes(b)


def build_lowbit(spec: dict, seed_data: bytes, folder: Path):
    """Write the corrupted ``.lowbit`` of a ``lowbit`` case; return ``(path, caps)`` where ``caps`` are
    container size limits the runner lowers for this case (zip bombs stay small)."""
    kind = spec["kind"]
    path = folder / "model.lowbit"
    caps = {}
    marker = folder / "PWNED"
    if kind == "truncate":
        path.write_bytes(seed_data[:int(spec["frac"] * len(seed_data))])
        return path, caps
    if kind == "bitflip":
        path.write_bytes(_flip(seed_data, spec["flips"]))
        return path, caps
    if kind == "byteset":
        path.write_bytes(_set(seed_data, spec["sets"]))
        return path, caps
    members = _zip_members(seed_data)
    graph_json, npz = members["graph.json"], members["tensors.npz"]
    pick = spec.get("pick", 0)
    if kind == "zip_missing":
        keep = [(n, c) for n, c in members.items() if spec["member"] not in (n, "both")]
        path.write_bytes(_zip(keep))
    elif kind == "zip_extra":
        name = spec["member"]
        path.write_bytes(_zip(list(members.items()) + [(name, b"" if name.endswith("/") else b"print('hi')\n")]))
    elif kind == "zip_method":
        method = {"bz2": zipfile.ZIP_BZIP2, "lzma": zipfile.ZIP_LZMA}[spec["method"]]
        path.write_bytes(_zip(list(members.items()), {spec["member"]: method}))
    elif kind == "zip_encrypted":
        path.write_bytes(_set_encrypted(_zip(list(members.items())), spec["member"], spec["where"]))
    elif kind == "zip_bomb":
        caps = {"MAX_GRAPH_JSON_BYTES": 1 << 20, "MAX_TENSOR_BYTES": 4 << 20}
        member, form = spec["member"], spec["form"]
        if member == "graph.json":
            doc = json.loads(graph_json)
            doc["name"] = " " * (3 << 20)
            bomb = json.dumps(doc).encode()
            content = [("graph.json", bomb), ("tensors.npz", npz)]
        elif member == "tensors.npz":
            npz_members = _read_npz(npz)
            npz_members["zz_filler.npy"] = _npy_bytes(np.zeros(6 << 20, np.uint8))
            content = [("graph.json", graph_json), ("tensors.npz", _npz(npz_members))]
        else:
            npz_members = _read_npz(npz)
            key = sorted(npz_members)[pick % len(npz_members)]
            npz_members[key] = _npy_bytes(np.zeros(6 << 20, np.uint8))
            content = [("graph.json", graph_json), ("tensors.npz", _npz(npz_members))]
        data = _zip(content)
        if form == "understated":
            name = "graph.json" if member == "graph.json" else "tensors.npz"
            data = _patch_central(data, name, "file_size", 1000)
        path.write_bytes(data)
    elif kind == "zip_garbage":
        path.write_bytes({"empty": b"", "zeros": b"\0" * 4096, "text": b"graph.json tensors.npz\n" * 10,
                          "eocd_only": b"PK\x05\x06" + b"\0" * 18}[spec["form"]])
    elif kind == "zip_duplicate":
        dup = [(n, c) for n, c in members.items()] + [(spec["member"], b"{}" if spec["member"] == "graph.json"
                                                      else _npz({}))]
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path.write_bytes(_zip(dup))
    elif kind == "zip_sizes":
        path.write_bytes(_patch_central(_zip(list(members.items())), spec["member"], spec["field"], spec["value"]))
    elif kind in ("json_field", "json_structure", "json_raw"):
        doc = json.loads(graph_json)
        if kind == "json_field":
            region = spec["region"]
            allp = [p for p, _ in _paths(doc) if p]
            filt = {"any": lambda p: True, "nodes": lambda p: p[0] == "nodes",
                    "attrs": lambda p: p[0] == "nodes" and len(p) > 2 and p[2] == "attrs",
                    "quant": lambda p: p[0] == "nodes" and len(p) > 2 and p[2] == "quant",
                    "top": lambda p: len(p) == 1, "io": lambda p: p[0] in ("inputs", "outputs"),
                    "encodings": lambda p: p[0] == "encodings", "constants": lambda p: p[0] == "constants"}[region]
            cands = [p for p in allp if filt(p)] or allp
            target = cands[pick % len(cands)]
            spec_path = target
            _set_path(doc, target, _palette_value(spec["value"]))
            text = _dumps(doc)
            spec["_resolved"] = [str(k) for k in spec_path]
        elif kind == "json_structure":
            form = spec["form"]
            nodes = doc["nodes"]
            if form == "delete_key":
                allp = [p for p, v in _paths(doc) if p and isinstance(p[-1], str)]
                target = allp[pick % len(allp)]
                parent = doc
                for k in target[:-1]:
                    parent = parent[k]
                del parent[target[-1]]
            elif form == "add_key":
                dicts = [p for p, v in _paths(doc) if isinstance(v, dict)]
                target = dicts[pick % len(dicts)]
                parent = doc
                for k in target:
                    parent = parent[k]
                parent["__extra__"] = 1
            elif form == "dup_node" and nodes:
                nodes.insert(pick % len(nodes), copy.deepcopy(nodes[pick % len(nodes)]))
            elif form == "drop_node" and nodes:
                del nodes[pick % len(nodes)]
            elif form == "reverse_nodes":
                nodes.reverse()
            elif form == "rename_input" and nodes:
                node = nodes[pick % len(nodes)]
                if node["inputs"]:
                    node["inputs"][(pick // 3) % len(node["inputs"])] = "ghost"
            elif form == "rename_output" and nodes:
                node = nodes[pick % len(nodes)]
                node["outputs"][0] = "ghost_out"
            elif form == "swap_const" and len(doc["constants"]) > 1:
                keys = list(doc["constants"])
                a, b = keys[pick % len(keys)], keys[(pick // 5) % len(keys)]
                doc["constants"][a], doc["constants"][b] = doc["constants"][b], doc["constants"][a]
            elif form == "unknown_op" and nodes:
                nodes[pick % len(nodes)]["op_type"] = ["Frobnicate", "Loop", "If", "Scan", ""][pick % 5]
            elif form == "precision" and nodes:
                nodes[pick % len(nodes)]["precision"] = ["int9", "fp32", "binary", "int8", "", "fp8-e5m2",
                                                         "ternary", "int2"][pick % 8]
            text = _dumps(doc)
        else:
            form = spec["form"]
            text = {"not_json": b"{not json", "bad_utf8": b"\xff\xfe{\"format\": \"lowbit\"}",
                    "deep": b"[" * 200_000 + b"]" * 200_000, "top_list": b"[1, 2, 3]",
                    "huge_int": b"{\"format\": \"lowbit\", \"version\": 1" + b"9" * 5000 + b"}",
                    "nan_literal": graph_json.replace(b"\"version\":1", b"\"version\":NaN"),
                    "bom": b"\xef\xbb\xbf" + graph_json,
                    "format_other": graph_json.replace(b"\"format\":\"lowbit\"", b"\"format\":\"pickle\""),
                    "version_2": graph_json.replace(b"\"version\":1", b"\"version\":2"), "empty": b""}[form]
        path.write_bytes(_zip([("graph.json", text), ("tensors.npz", npz)]))
    else:  # npz_*
        npz_members = _read_npz(npz)
        keys = sorted(npz_members)
        key = keys[pick % len(keys)] if keys else None

        def load(k):
            return np.lib.format.read_array(io.BytesIO(npz_members[k]), allow_pickle=False)

        if kind == "npz_dtype" and key:
            arr = load(key)
            to = spec["to"]
            if to == "struct":
                new = np.zeros(arr.shape, dtype=[("a", "<f4"), ("b", "<i4")])
            elif to == "object_ok":
                npz_members[key] = _object_npy(marker)
                new = None
            elif to in ("<U4", "S3"):
                new = arr.astype(to)
            elif to == "V8":
                new = np.zeros(arr.shape, dtype="V8")
            elif to == "datetime64[s]":
                new = np.zeros(arr.shape, dtype=to)
            else:
                with np.errstate(all="ignore"):
                    new = arr.astype(to)
            if new is not None:
                npz_members[key] = _npy_bytes(new)
        elif kind == "npz_shape" and key:
            arr = load(key)
            form = spec["form"]
            new = {"flat": lambda a: a.reshape(-1), "scalar": lambda a: np.asarray(a.reshape(-1)[0] if a.size else 0,
                                                                                    a.dtype),
                   "empty": lambda a: a.reshape(-1)[:0], "extra_dim": lambda a: a[None],
                   "transpose": lambda a: np.ascontiguousarray(a.T), "half": lambda a: a.reshape(-1)[: a.size // 2],
                   "double": lambda a: np.concatenate([a.reshape(-1)] * 2)}[form](arr)
            npz_members[key] = _npy_bytes(new)
        elif kind == "npz_missing" and key:
            del npz_members[key]
        elif kind == "npz_extra":
            form = spec["form"]
            npz_members["zz_extra.npy"] = {"extra_array": _npy_bytes(np.arange(5)),
                                           "extra_pickle": _object_npy(marker),
                                           "extra_text": b"hello"}[form]
        elif kind == "npz_pickle" and key:
            form = spec["form"]
            if form == "pickle_raw":
                npz_members[key] = _pickle_payload(marker)
            elif form == "object_named":
                npz_members[key] = _object_npy(marker)
                npz_members["__pickle__.npy"] = _object_npy(marker)
            else:
                npz_members[key] = _object_npy(marker)
        elif kind == "npz_header" and key:
            arr = load(key)
            form = spec["form"]
            good = _npy_bytes(arr)
            descr = np.lib.format.dtype_to_descr(arr.dtype)
            if form == "bad_magic":
                new = b"\x93NUMPZ" + good[6:]
            elif form == "version_9":
                new = good[:6] + b"\x09\x00" + good[8:]
            elif form == "header_len_huge":
                new = good[:8] + b"\xff\xff" + good[10:]
            elif form == "header_expr":
                new = _npy_bytes(arr, "{'descr': __import__('os').getcwd(), 'fortran_order': False, 'shape': (1,), }")
            elif form == "shape_huge":
                new = _npy_bytes(arr, f"{{'descr': '{descr}', 'fortran_order': False, 'shape': (2**40, 2**40), }}")
            elif form == "shape_negative":
                new = _npy_bytes(arr, f"{{'descr': '{descr}', 'fortran_order': False, 'shape': (-1, 4), }}")
            elif form == "dtype_bogus":
                new = _npy_bytes(arr, "{'descr': '<q99', 'fortran_order': False, 'shape': (1,), }")
            elif form == "truncated_data":
                new = good[: max(len(good) - max(1, arr.nbytes // 2), 10)]
            elif form == "header_not_dict":
                new = _npy_bytes(arr, "[1, 2, 3]")
            else:
                f = io.BytesIO()
                np.lib.format.write_array(f, arr, version=(3, 0), allow_pickle=False)
                new = f.getvalue()
            npz_members[key] = new
        elif kind == "npz_fortran" and key:
            arr = load(key)
            npz_members[key] = _npy_bytes(np.asfortranarray(arr) if arr.ndim > 1 else arr, version=(2, 0))
        path.write_bytes(_zip([("graph.json", graph_json), ("tensors.npz", _npz(npz_members))]))
    return path, caps
