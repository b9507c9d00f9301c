"""The kernel table: ``(op_type, precision kind) -> kernel``, written out literally.

The executor looks every node up here; the importer rejects op types that
have no ``fp32`` entry.  Each kernel takes the node's inputs positionally and
its attributes as keyword arguments (ONNX names), and returns an array or a
tuple of arrays.
"""
from __future__ import annotations

from .binary import nodes as binary
from .float import activations, conv, elementwise, gemm, normalization, pool, reduce, shape_ops, softmax
from .float import indexing, tiling
from .float import gelu, layer_norm, normalization_more
from .float import conv_transpose
from .float import lstm
from .float import resize
from .float import argreduce, topk
from .float import compare, math
from .float import type_ops
from .int8 import conv as conv_int8
from .int8 import elementwise as elementwise_int8
from .int8 import gemm as gemm_int8
from .int8 import pool as pool_int8
from .int8 import quantize as quantize_int8

KERNELS = {
    # arithmetic, on Numba kernels
    ("Conv", "fp32"): conv.conv,
    ("Gemm", "fp32"): gemm.gemm,
    ("MatMul", "fp32"): gemm.matmul,
    ("Add", "fp32"): elementwise.add,
    ("Sub", "fp32"): elementwise.sub,
    ("Mul", "fp32"): elementwise.mul,
    ("Div", "fp32"): elementwise.div,
    ("Sum", "fp32"): elementwise.sum_,
    ("Relu", "fp32"): activations.relu,
    ("LeakyRelu", "fp32"): activations.leaky_relu,
    ("Clip", "fp32"): activations.clip,
    ("Sigmoid", "fp32"): activations.sigmoid,
    ("Tanh", "fp32"): activations.tanh,
    ("HardSigmoid", "fp32"): activations.hard_sigmoid,
    ("HardSwish", "fp32"): activations.hard_swish,
    ("MaxPool", "fp32"): pool.max_pool,
    ("AveragePool", "fp32"): pool.average_pool,
    ("GlobalAveragePool", "fp32"): pool.global_average_pool,
    ("GlobalMaxPool", "fp32"): pool.global_max_pool,
    ("ReduceMean", "fp32"): reduce.reduce_mean,
    ("BatchNormalization", "fp32"): normalization.batch_normalization,
    ("LRN", "fp32"): normalization.lrn,
    ("Softmax", "fp32"): softmax.softmax,
    ("LogSoftmax", "fp32"): softmax.log_softmax,
    # data movement, in numpy
    ("Flatten", "fp32"): shape_ops.flatten,
    ("Reshape", "fp32"): shape_ops.reshape,
    ("Transpose", "fp32"): shape_ops.transpose,
    ("Concat", "fp32"): shape_ops.concat,
    ("Split", "fp32"): shape_ops.split,
    ("Squeeze", "fp32"): shape_ops.squeeze,
    ("Unsqueeze", "fp32"): shape_ops.unsqueeze,
    ("Shape", "fp32"): shape_ops.shape,
    ("Gather", "fp32"): shape_ops.gather,
    ("Slice", "fp32"): shape_ops.slice_,
    ("ConstantOfShape", "fp32"): shape_ops.constant_of_shape,
    ("Cast", "fp32"): shape_ops.cast,
    ("Pad", "fp32"): shape_ops.pad,
    ("Identity", "fp32"): shape_ops.identity,
    ("Dropout", "fp32"): shape_ops.dropout,
    # --- resampling (Resize, Upsample)
    ("Resize", "fp32"): resize.resize,
    ("Upsample", "fp32"): resize.upsample,
    # --- transposed convolution
    ("ConvTranspose", "fp32"): conv_transpose.conv_transpose,
    # --- elementwise math, comparisons and logic
    ("Pow", "fp32"): math.pow_,
    ("Sqrt", "fp32"): math.sqrt,
    ("Exp", "fp32"): math.exp,
    ("Log", "fp32"): math.log,
    ("Erf", "fp32"): math.erf,
    ("Reciprocal", "fp32"): math.reciprocal,
    ("Neg", "fp32"): math.neg,
    ("Abs", "fp32"): math.abs_,
    ("Floor", "fp32"): math.floor,
    ("Ceil", "fp32"): math.ceil,
    ("Round", "fp32"): math.round_,
    ("Sign", "fp32"): math.sign,
    ("Min", "fp32"): compare.min_,
    ("Max", "fp32"): compare.max_,
    ("Mean", "fp32"): compare.mean,
    ("Where", "fp32"): compare.where,
    ("Equal", "fp32"): compare.equal,
    ("Less", "fp32"): compare.less,
    ("Greater", "fp32"): compare.greater,
    ("LessOrEqual", "fp32"): compare.less_or_equal,
    ("GreaterOrEqual", "fp32"): compare.greater_or_equal,
    ("Not", "fp32"): compare.not_,
    ("And", "fp32"): compare.and_,
    ("Or", "fp32"): compare.or_,
    ("Xor", "fp32"): compare.xor,
    # --- more activations
    ("Elu", "fp32"): activations.elu,
    ("Selu", "fp32"): activations.selu,
    ("Celu", "fp32"): activations.celu,
    ("Softplus", "fp32"): activations.softplus,
    ("Softsign", "fp32"): activations.softsign,
    ("Mish", "fp32"): activations.mish,
    ("PRelu", "fp32"): activations.prelu,
    ("ThresholdedRelu", "fp32"): activations.thresholded_relu,
    # --- reductions, arg-reductions and top-k
    ("ReduceSum", "fp32"): reduce.reduce_sum,
    ("ReduceMax", "fp32"): reduce.reduce_max,
    ("ReduceMin", "fp32"): reduce.reduce_min,
    ("ReduceProd", "fp32"): reduce.reduce_prod,
    ("ReduceL1", "fp32"): reduce.reduce_l1,
    ("ReduceL2", "fp32"): reduce.reduce_l2,
    ("ReduceSumSquare", "fp32"): reduce.reduce_sum_square,
    ("ReduceLogSum", "fp32"): reduce.reduce_log_sum,
    ("ReduceLogSumExp", "fp32"): reduce.reduce_log_sum_exp,
    ("ArgMax", "fp32"): argreduce.argmax,
    ("ArgMin", "fp32"): argreduce.argmin,
    ("TopK", "fp32"): topk.top_k,
    ("Hardmax", "fp32"): softmax.hardmax,
    # --- normalisation over other axes (LayerNorm, InstanceNorm, GroupNorm)
    ("LayerNormalization", "fp32"): layer_norm.layer_normalization,
    ("InstanceNormalization", "fp32"): normalization_more.instance_normalization,
    ("GroupNormalization", "fp32"): normalization_more.group_normalization,
    ("Gelu", "fp32"): gelu.gelu,
    # --- more data movement
    ("Expand", "fp32"): tiling.expand,
    ("Tile", "fp32"): tiling.tile,
    ("Range", "fp32"): tiling.range_,
    ("CumSum", "fp32"): tiling.cumsum,
    ("DepthToSpace", "fp32"): tiling.depth_to_space,
    ("SpaceToDepth", "fp32"): tiling.space_to_depth,
    ("GatherElements", "fp32"): indexing.gather_elements,
    ("GatherND", "fp32"): indexing.gather_nd,
    ("ScatterElements", "fp32"): indexing.scatter_elements,
    ("ScatterND", "fp32"): indexing.scatter_nd,
    ("OneHot", "fp32"): indexing.one_hot,
    ("NonZero", "fp32"): indexing.non_zero,
    # --- type plumbing (CastLike, Size)
    ("CastLike", "fp32"): type_ops.cast_like,
    ("Size", "fp32"): type_ops.size,
    # --- recurrent layers
    ("LSTM", "fp32"): lstm.lstm,
    # integer path (int8, int2..int7 and ternary weights): int32 accumulation, fixed-point requantization
    ("QuantizeLinear", "int8"): quantize_int8.quantize_linear,
    ("DequantizeLinear", "int8"): quantize_int8.dequantize_linear,
    ("Conv", "int8"): conv_int8.conv_int8,
    ("Gemm", "int8"): gemm_int8.gemm_int8,
    ("MaxPool", "int8"): pool_int8.max_pool_int8,
    ("GlobalAveragePool", "int8"): pool_int8.global_average_pool_int8,
    ("Add", "int8"): elementwise_int8.add_int8,
    ("Concat", "int8"): elementwise_int8.concat_int8,
    ("Relu", "int8"): elementwise_int8.relu_int8,
    # binary: XNOR/popcount on packed signs
    ("Conv", "binary"): binary.conv_binary,
    ("Gemm", "binary"): binary.gemm_binary,
    ("MaxPool", "binary"): binary.max_pool_binary,
    # data movement is the same on integer tensors
    ("Flatten", "int8"): shape_ops.flatten,
    ("Reshape", "int8"): shape_ops.reshape,
    ("Transpose", "int8"): shape_ops.transpose,
    ("Squeeze", "int8"): shape_ops.squeeze,
    ("Unsqueeze", "int8"): shape_ops.unsqueeze,
    ("Identity", "int8"): shape_ops.identity,
    ("Dropout", "int8"): shape_ops.dropout,
}

#: Op types the float32 path runs (Constant is folded by the importer).
SUPPORTED_OPS = frozenset(op for op, kind in KERNELS if kind == "fp32") | {"Constant"}


def kernel_for(op_type: str, precision: str):
    """The kernel registered for ``(op_type, precision)``.

    Raises
    ------
    KeyError
        Naming the missing pair and the precisions that op does have.
    """
    try:
        return KERNELS[(op_type, precision)]
    except KeyError:
        have = sorted(kind for op, kind in KERNELS if op == op_type)
        raise KeyError(f"no kernel for {op_type} at precision {precision!r}; registered: {have}") from None
