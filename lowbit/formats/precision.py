"""Precision specs: what each format means, defined in one place.

Float formats (weights stored in the format, every activation rounded to it
between ops, arithmetic in fp32 because Numba has no CPU fp16 arithmetic):

==========  ====  ========  ========  ============  ==============  =====================
name        bits  exponent  mantissa  max finite    min normal      overflow
==========  ====  ========  ========  ============  ==============  =====================
fp32        32    8         23        3.40e38       2^-126          inf (IEEE)
fp16        16    5         10        65504         2^-14           inf (IEEE binary16)
bf16        16    8         7         3.39e38       2^-126          inf
fp8-e4m3    8     4         3         448           2^-6            saturates to ±448 (E4M3FN has no inf)
fp8-e5m2    8     5         2         57344         2^-14           inf
==========  ====  ========  ========  ============  ==============  =====================

Rounding is round-to-nearest, ties to even, with gradual underflow
(subnormals).  fp8 values carry one fp32 scale per tensor:
``x ≈ s · fp8(x / s)`` with ``s = amax / max_finite``.

Integer formats: ``int8`` and ``intK`` (K = 2..7) store symmetric weights per
output channel, ``q = clamp(round_half_even(w / s), -(2^(K-1) - 1), 2^(K-1) - 1)``;
activations per tensor.  ``ternary`` stores ``{−α, 0, +α}`` and ``binary``
``sign(x)·α`` with ``sign(0) = +1``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Precision:
    """A numeric format.

    Attributes
    ----------
    name : str
        Canonical name (``"fp16"``, ``"int8"``...).
    kind : str
        ``"float"``, ``"int"``, ``"ternary"`` or ``"binary"``.
    bits : int
        Storage bits per value.
    exponent_bits, mantissa_bits : int
        Float formats only.
    max_finite : float
        Largest finite magnitude (float formats).
    min_normal_exponent : int
        ``e_min``: the smallest normal value is ``2**e_min``.
    saturates : bool
        Overflow clamps to ``±max_finite`` (True) or becomes ``±inf`` (False).
    scaled : bool
        Carries a per-tensor fp32 scale (fp8).
    """

    name: str
    kind: str
    bits: int
    exponent_bits: int = 0
    mantissa_bits: int = 0
    max_finite: float = 0.0
    min_normal_exponent: int = 0
    saturates: bool = False
    scaled: bool = False

    @property
    def is_float(self) -> bool:
        return self.kind == "float"

    @property
    def qmax(self) -> int:
        """Largest symmetric integer level, ``2^(bits-1) - 1`` (integer formats)."""
        return (1 << (self.bits - 1)) - 1

    def __str__(self) -> str:
        return self.name


def _float(name, bits, e, m, max_finite, saturates=False, scaled=False):
    bias = (1 << (e - 1)) - 1
    return Precision(name, "float", bits, e, m, float(max_finite), 1 - bias, saturates, scaled)


FP32 = _float("fp32", 32, 8, 23, 3.4028234663852886e38)
FP16 = _float("fp16", 16, 5, 10, 65504.0)
BF16 = _float("bf16", 16, 8, 7, 3.3895313892515355e38)
FP8_E4M3 = _float("fp8-e4m3", 8, 4, 3, 448.0, saturates=True, scaled=True)
FP8_E5M2 = _float("fp8-e5m2", 8, 5, 2, 57344.0, scaled=True)

PRECISIONS = {
    p.name: p for p in (
        FP32, FP16, BF16, FP8_E4M3, FP8_E5M2,
        Precision("int8", "int", 8),
        *(Precision(f"int{k}", "int", k) for k in range(7, 1, -1)),
        Precision("ternary", "ternary", 2),
        Precision("binary", "binary", 1),
    )
}

ALIASES = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16",
           "fp8": "fp8-e4m3", "e4m3": "fp8-e4m3", "e5m2": "fp8-e5m2", "fp8_e4m3": "fp8-e4m3",
           "fp8_e5m2": "fp8-e5m2", "uint8": "int8"}


def get(identifier) -> Precision:
    """Look a precision up by name (or pass a :class:`Precision` through).

    Raises
    ------
    ValueError
        Naming the identifier and the known precisions.
    """
    if isinstance(identifier, Precision):
        return identifier
    key = str(identifier).strip().lower()
    key = ALIASES.get(key, key)
    if key not in PRECISIONS:
        raise ValueError(f"unknown precision {identifier!r}; expected one of {', '.join(PRECISIONS)}")
    return PRECISIONS[key]
