"""Binary kernels: signs packed 64 channels to a uint64 word, XNOR / popcount arithmetic.

Packed layout (activations and weights alike): bit 1 = -1, bit 0 = +1
(``sign(0) = +1``); channels last, channel ``c`` in bit ``c % 64`` of word
``c // 64``; unused high bits of the last word are 0.

* activations (N, C, H, W) -> uint64 (N, H, W, ceil(C/64)); rows (N, K) -> (N, ceil(K/64))
* conv weights (M, C, kH, kW) -> uint64 (M, kH, kW, ceil(C/64)); gemm weights (M, K) -> (M, ceil(K/64))
"""
from lowbit.kernels.binary.conv import binary_conv, binary_conv_sign, sign_thresholds
from lowbit.kernels.binary.gemm import binary_gemm
from lowbit.kernels.binary.pack import pack_signs, pack_signs_2d, pack_weights, unpack_signs
from lowbit.kernels.binary.pool import binary_max_pool

__all__ = ["binary_conv", "binary_conv_sign", "binary_gemm", "binary_max_pool", "pack_signs",
           "pack_signs_2d", "pack_weights", "sign_thresholds", "unpack_signs"]
