"""The model zoo: one module per net (``build(seed) -> Net`` and ``RECIPE``), trained
float32 ONNX files beside them, and ``python -m models.train NAME`` to retrain.
"""

#: Net names and the module defining each (an explicit table, not a directory scan).
NETS = {
    "deep_convnet": "models.deep_convnet",
    "vgg_bn": "models.vgg_bn",
    "resnet_small": "models.resnet_small",
    "googlenet_small": "models.googlenet_small",
    "mlp": "models.mlp",
}
