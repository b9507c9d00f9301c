"""Write tests/data/torch_*.onnx: small random-weight CNNs exported by torch.onnx.

Not imported by the tests (they only read the .onnx files and compare lowbit
with onnxruntime at test time).  Run it in a separate virtual environment that
has torch, onnx and onnxscript (see README.md in this folder):

    python tests/data/make_torch_exports.py
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.layer1 = BasicBlock(8, 8, 1)
        self.layer2 = BasicBlock(8, 16, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class TinyMobileNet(nn.Module):
    def __init__(self):
        super().__init__()

        def dw_separable(cin, cout, stride):
            return nn.Sequential(
                nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(),
                nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.Hardswish(),
            )

        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.Hardswish())
        self.blocks = nn.Sequential(dw_separable(8, 16, 1), dw_separable(16, 24, 2), dw_separable(24, 32, 1))
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(32, 8, 1), nn.ReLU(), nn.Conv2d(8, 32, 1),
                                  nn.Hardsigmoid())
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        x = x * self.gate(x)
        return self.fc(x.mean(dim=(2, 3)))


class TinyInception(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.b1 = nn.Conv2d(8, 4, 1)
        self.b2 = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1))
        self.b3 = nn.Sequential(nn.Conv2d(8, 2, 1), nn.ReLU(), nn.Conv2d(2, 4, 5, padding=2))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(8, 4, 1))
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.fc = nn.Linear(18 * 14 * 14, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.cat([torch.relu(b(x)) for b in (self.b1, self.b2, self.b3, self.b4)], dim=1)
        x = self.pool(x)
        return torch.log_softmax(self.fc(x.view(x.size(0), -1)), dim=1)


def randomize_batchnorm(model: nn.Module, generator: torch.Generator) -> None:
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            c = module.num_features
            module.running_mean.copy_(0.2 * torch.randn(c, generator=generator))
            module.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=generator))
            module.weight.data.copy_(0.5 + torch.rand(c, generator=generator))
            module.bias.data.copy_(0.2 * torch.randn(c, generator=generator))


def export(name: str, model: nn.Module, shape: tuple, seed: int, dynamo: bool) -> Path:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        randomize_batchnorm(model, generator)
    model.eval()
    path = HERE / f"torch_{name}.onnx"
    x = torch.randn(2, *shape)
    if dynamo:
        batch = torch.export.Dim("N", min=1, max=4096)
        torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=["input"], output_names=["logits"],
                          dynamic_shapes={"x": {0: batch}}, external_data=False)
    else:
        torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, opset_version=17)
    return path


#: name, module, input shape without the batch dim, exporter.  The ResNet goes through the
#: TorchScript exporter (opset 17: GlobalAveragePool, Shape/Gather/Concat flatten chain);
#: the others through the default dynamo exporter (opset 20: BatchNorm folded into the
#: convs, AdaptiveAvgPool2d(1) and mean() written as ReduceMean).
MODELS = [
    ("resnet", TinyResNet, (3, 16, 16), "torchscript"),
    ("mobilenet", TinyMobileNet, (3, 32, 32), "dynamo"),
    ("inception", TinyInception, (1, 28, 28), "dynamo"),
]


def main() -> None:
    for seed, (name, build, shape, exporter) in enumerate(MODELS):
        torch.manual_seed(seed)             # the layers' default random initialisation
        path = export(name, build(), shape, seed, dynamo=exporter == "dynamo")
        print(path.name, path.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
