"""onnxruntime's ``quantize_static`` vocabulary as aliases of :func:`lowbit.quantize`'s arguments.

=========================  ===========================================================
onnxruntime                lowbit
=========================  ===========================================================
``per_channel=True``       always: integer weights are per output channel
                           (``per_channel=False`` is refused: no per-tensor weights)
``nodes_to_exclude``       ``nodes_to_exclude`` (node names; lowbit also takes op types)
``op_types_to_quantize``   ``nodes_to_exclude`` = every other op type of the graph
``activation_type``        ``activation_type``: ``QUInt8`` = ``"uint8"``, ``QInt8`` = ``"int8"``
``weight_type``            ``QInt8`` only: weights are symmetric int8 (``QUInt8`` refused)
``calibrate_method``       ``method``: ``MinMax`` = ``"minmax"``, ``Entropy`` = ``"entropy"``,
                           ``Percentile`` = ``"percentile"``
=========================  ===========================================================

Values may be onnxruntime's enums (``QuantType.QInt8``,
``CalibrationMethod.Entropy``) or their names as strings; onnxruntime is
never imported here.
"""
from __future__ import annotations

from ..errors import InputError

ACTIVATION_TYPES = {"quint8": "uint8", "qint8": "int8", "uint8": "uint8", "int8": "int8"}
CALIBRATE_METHODS = {"minmax": "minmax", "entropy": "entropy", "percentile": "percentile"}
ALIASES = ("per_channel", "op_types_to_quantize", "weight_type", "calibrate_method")


def _name(value) -> str:
    """``QuantType.QInt8`` (an enum) or ``"QInt8"`` -> ``"qint8"``."""
    return str(getattr(value, "name", value)).split(".")[-1].lower()


def translate(model, method: str, nodes_to_exclude, options: dict) -> tuple:
    """Map onnxruntime-spelled ``options`` onto lowbit's; return ``(method, nodes_to_exclude, options)``.

    Raises
    ------
    InputError
        For a value lowbit cannot honour (per-tensor or unsigned weights, an
        unknown type or method) or a ``calibrate_method`` that contradicts ``method``.
    """
    options = dict(options)
    if "per_channel" in options and not options.pop("per_channel"):
        raise InputError("per_channel=False: lowbit quantizes integer weights per output channel only; "
                         "pass per_channel=True or leave it out")
    if "weight_type" in options and _name(options.pop("weight_type")) not in ("qint8", "int8"):
        raise InputError("weight_type: lowbit's integer weights are symmetric signed (QInt8); QUInt8 weights are "
                         "not available")
    if "activation_type" in options:
        value = _name(options["activation_type"])
        if value not in ACTIVATION_TYPES:
            raise InputError(f"activation_type {options['activation_type']!r}; expected QUInt8 or QInt8 "
                             "(or uint8 / int8)")
        options["activation_type"] = ACTIVATION_TYPES[value]
    if "calibrate_method" in options:
        given = options.pop("calibrate_method")
        value = CALIBRATE_METHODS.get(_name(given))
        if value is None:
            raise InputError(f"calibrate_method {given!r}; expected MinMax, Entropy or Percentile")
        if method not in ("minmax", value):
            raise InputError(f"calibrate_method {given!r} contradicts method={method!r}; pass one of them")
        method = value
    if "op_types_to_quantize" in options:
        wanted = options.pop("op_types_to_quantize")
        if isinstance(wanted, str) or not all(isinstance(t, str) for t in wanted or ()):
            raise InputError(f"op_types_to_quantize must be a list of op types, got {wanted!r}")
        others = sorted({node.op_type for node in model.graph.nodes} - set(wanted))
        nodes_to_exclude = list(nodes_to_exclude or ()) + others
    return method, nodes_to_exclude, options
