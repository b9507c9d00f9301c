"""Hand-written PyTorch models shaped like common detection and OCR networks.

They are written from the papers' and the usual public implementations' layer
layouts (no code copied), smaller than the originals but with the same
structure, so that their ONNX exports carry the same op patterns:

* :class:`YoloV8Like`: SiLU convs, C2f blocks (Split/Concat), SPPF (MaxPool
  chain), a PAN neck with ``nn.Upsample``, and an anchor-free decoupled head
  with DFL (Softmax over bins, a 1x1 conv with fixed ``0..reg_max-1`` weights)
  and anchors made from the feature-map sizes (Range, meshgrid Expand).
* :class:`DBNetLike`: a ResNet-style backbone, an FPN (``F.interpolate``:
  Resize nearest top-down, Resize bilinear to 1/4) and the DB head with two
  ``ConvTranspose2d``.
* :class:`CRNNLike`: a conv stem that collapses the height, then SVTR-style
  transformer blocks with LayerNorm written out (ReduceMean/Sub/Pow/Sqrt/Div),
  multi-head attention (MatMul/Transpose/Softmax) and GELU via ``erf``; a final
  ``nn.LayerNorm`` (LayerNormalization) and a per-step softmax over classes.
* :class:`TinyResNet` and :class:`TinyMobileNetV3`: small classification nets
  (BasicBlocks; inverted residuals with depthwise convs, squeeze-excite with
  Hardsigmoid, HardSwish) for the committed CI variants.

Every constructor takes width/size arguments: the defaults are the corpus
("full-size") configuration, ``small_*()`` give the committed CI variants.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


# --------------------------------------------------------------------------- YOLOv8-style detector


class ConvBnSiLU(nn.Module):
    def __init__(self, cin, cout, k=1, s=1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c, shortcut=True):
        super().__init__()
        self.cv1 = ConvBnSiLU(c, c, 3)
        self.cv2 = ConvBnSiLU(c, c, 3)
        self.add = shortcut

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """1x1 conv to 2c channels, split in two, n bottlenecks on the second half, concat all, 1x1 conv."""

    def __init__(self, cin, cout, n=1, shortcut=False):
        super().__init__()
        self.c = cout // 2
        self.cv1 = ConvBnSiLU(cin, 2 * self.c, 1)
        self.cv2 = ConvBnSiLU((2 + n) * self.c, cout, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))

    def forward(self, x):
        y = list(self.cv1(x).split((self.c, self.c), 1))
        for block in self.m:
            y.append(block(y[-1]))
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    """Three chained 5x5 max pools, concatenated with their input."""

    def __init__(self, cin, cout, k=5):
        super().__init__()
        hidden = cin // 2
        self.cv1 = ConvBnSiLU(cin, hidden, 1)
        self.cv2 = ConvBnSiLU(hidden * 4, cout, 1)
        self.pool = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x):
        x = self.cv1(x)
        y1 = self.pool(x)
        y2 = self.pool(y1)
        return self.cv2(torch.cat((x, y1, y2, self.pool(y2)), 1))


class DFL(nn.Module):
    """Distribution focal loss decoding: softmax over ``reg_max`` bins, expectation by a fixed 1x1 conv."""

    def __init__(self, reg_max=16):
        super().__init__()
        self.reg_max = reg_max
        self.conv = nn.Conv2d(reg_max, 1, 1, bias=False).requires_grad_(False)
        self.conv.weight.data[:] = torch.arange(reg_max, dtype=torch.float32).view(1, reg_max, 1, 1)

    def forward(self, x):
        b, _, a = x.shape
        return self.conv(x.view(b, 4, self.reg_max, a).transpose(2, 1).softmax(1)).view(b, 4, a)


def make_anchors(feats, strides, offset=0.5):
    """Anchor centres ``(2, A)`` and their strides ``(1, A)`` from the feature maps' sizes."""
    points, stride_rows = [], []
    for feat, stride in zip(feats, strides):
        h, w = feat.shape[2:]
        sx = torch.arange(w, dtype=feat.dtype) + offset
        sy = torch.arange(h, dtype=feat.dtype) + offset
        sy, sx = torch.meshgrid(sy, sx, indexing="ij")
        points.append(torch.stack((sx, sy), -1).view(-1, 2))
        stride_rows.append(torch.ones_like(sx).view(-1, 1) * stride)
    return torch.cat(points).transpose(0, 1), torch.cat(stride_rows).transpose(0, 1)


class DetectHead(nn.Module):
    def __init__(self, nc, channels, strides, reg_max=16, box_width=None, cls_width=None):
        super().__init__()
        self.nc, self.reg_max, self.strides = nc, reg_max, strides
        c2 = box_width or max(16, channels[0] // 4, reg_max * 4)
        c3 = cls_width or max(channels[0], min(nc, 100))
        self.box = nn.ModuleList(nn.Sequential(ConvBnSiLU(c, c2, 3), ConvBnSiLU(c2, c2, 3),
                                               nn.Conv2d(c2, 4 * reg_max, 1)) for c in channels)
        self.cls = nn.ModuleList(nn.Sequential(ConvBnSiLU(c, c3, 3), ConvBnSiLU(c3, c3, 3), nn.Conv2d(c3, nc, 1))
                                 for c in channels)
        self.dfl = DFL(reg_max)

    def forward(self, feats):
        b = feats[0].shape[0]
        outs = [torch.cat((box(f), cls(f)), 1) for f, box, cls in zip(feats, self.box, self.cls)]
        flat = torch.cat([o.view(b, 4 * self.reg_max + self.nc, -1) for o in outs], 2)
        box, cls = flat.split((4 * self.reg_max, self.nc), 1)
        anchors, strides = make_anchors(feats, self.strides)
        anchors = anchors.unsqueeze(0).expand(b, -1, -1)
        lt, rb = self.dfl(box).chunk(2, 1)
        x1y1, x2y2 = anchors - lt, anchors + rb
        xywh = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * strides
        return torch.cat((xywh, cls.sigmoid()), 1)


class YoloV8Like(nn.Module):
    """YOLOv8-n layout (backbone, PAN neck, DFL head); ``widths`` are the five stage widths."""

    def __init__(self, widths=(16, 32, 64, 128, 256), depths=(1, 2, 2, 1), nc=80, reg_max=16,
                 head_widths=(None, None)):
        super().__init__()
        w0, w1, w2, w3, w4 = widths
        self.stem = ConvBnSiLU(3, w0, 3, 2)
        self.stage1 = nn.Sequential(ConvBnSiLU(w0, w1, 3, 2), C2f(w1, w1, depths[0], True))
        self.stage2 = nn.Sequential(ConvBnSiLU(w1, w2, 3, 2), C2f(w2, w2, depths[1], True))
        self.stage3 = nn.Sequential(ConvBnSiLU(w2, w3, 3, 2), C2f(w3, w3, depths[2], True))
        self.stage4 = nn.Sequential(ConvBnSiLU(w3, w4, 3, 2), C2f(w4, w4, depths[3], True), SPPF(w4, w4))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.top4 = C2f(w4 + w3, w3)
        self.top3 = C2f(w3 + w2, w2)
        self.down3 = ConvBnSiLU(w2, w2, 3, 2)
        self.bottom4 = C2f(w2 + w3, w3)
        self.down4 = ConvBnSiLU(w3, w3, 3, 2)
        self.bottom5 = C2f(w3 + w4, w4)
        self.head = DetectHead(nc, (w2, w3, w4), (8, 16, 32), reg_max, *head_widths)

    def forward(self, x):
        p3 = self.stage2(self.stage1(self.stem(x)))
        p4 = self.stage3(p3)
        p5 = self.stage4(p4)
        n4 = self.top4(torch.cat((self.up(p5), p4), 1))
        out3 = self.top3(torch.cat((self.up(n4), p3), 1))
        out4 = self.bottom4(torch.cat((self.down3(out3), n4), 1))
        out5 = self.bottom5(torch.cat((self.down4(out4), p5), 1))
        return self.head([out3, out4, out5])


def small_yolo():
    return YoloV8Like(widths=(8, 8, 12, 12, 16), depths=(1, 1, 1, 1), nc=4, reg_max=8, head_widths=(8, 8))


# --------------------------------------------------------------------------- DBNet-style text detector


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
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class DBNetLike(nn.Module):
    """ResNet-style backbone (strides 4..32), FPN with ``inner`` channels, DB probability head."""

    def __init__(self, widths=(32, 64, 128, 256), inner=96):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(),
                                  nn.MaxPool2d(3, 2, 1))
        stages, cin = [], widths[0]
        for i, c in enumerate(widths):
            stages.append(BasicBlock(cin, c, 1 if i == 0 else 2))
            cin = c
        self.stages = nn.ModuleList(stages)
        self.lateral = nn.ModuleList(nn.Conv2d(c, inner, 1, bias=False) for c in widths)
        self.smooth = nn.ModuleList(nn.Conv2d(inner, inner // 4, 3, 1, 1, bias=False) for _ in widths)
        q = inner // 4
        self.head = nn.Sequential(
            nn.Conv2d(inner, q, 3, 1, 1, bias=False), nn.BatchNorm2d(q), nn.ReLU(),
            nn.ConvTranspose2d(q, q, 2, 2), nn.BatchNorm2d(q), nn.ReLU(),
            nn.ConvTranspose2d(q, 1, 2, 2), nn.Sigmoid())

    def forward(self, x):
        feats = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        lat = [conv(f) for conv, f in zip(self.lateral, feats)]
        for i in range(len(lat) - 1, 0, -1):
            lat[i - 1] = lat[i - 1] + F.interpolate(lat[i], scale_factor=2, mode="nearest")
        maps = [conv(p) for conv, p in zip(self.smooth, lat)]
        maps = [maps[0]] + [F.interpolate(m, scale_factor=2 ** i, mode="bilinear", align_corners=False)
                            for i, m in enumerate(maps[1:], 1)]
        return self.head(torch.cat(maps[::-1], 1))


def small_dbnet():
    return DBNetLike(widths=(8, 16, 16, 32), inner=16)


# --------------------------------------------------------------------------- CRNN / SVTR-style recognizer


class WrittenLayerNorm(nn.Module):
    """LayerNorm over the last axis, written out as the Paddle exporters emit it."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.eps = eps

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        d = x - mean
        var = d.pow(2).mean(-1, keepdim=True)
        return d / torch.sqrt(var + self.eps) * self.weight + self.bias


def erf_gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, t, c = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        y = (attn.softmax(-1) @ v).transpose(1, 2).reshape(b, t, c)
        return self.proj(y)


class EncoderBlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio=2.0):
        super().__init__()
        self.norm1 = WrittenLayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = WrittenLayerNorm(dim)
        self.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.fc2 = nn.Linear(int(dim * mlp_ratio), dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(erf_gelu(self.fc1(self.norm2(x))))


class CRNNLike(nn.Module):
    """Conv stem (height / 32 to 1, width / 4), transformer encoder, per-step class softmax ``(N, T, classes)``."""

    def __init__(self, widths=(32, 64, 128, 192), blocks=2, heads=6, classes=97):
        super().__init__()
        strides = ((2, 2), (2, 2), (2, 1), (2, 1))
        layers, cin = [], 3
        for c, s in zip(widths, strides):
            layers += [nn.Conv2d(cin, c, 3, s, 1, bias=False), nn.BatchNorm2d(c), nn.Hardswish()]
            cin = c
        self.stem = nn.Sequential(*layers, nn.AvgPool2d((2, 1)))
        self.blocks = nn.Sequential(*(EncoderBlock(cin, heads) for _ in range(blocks)))
        self.norm = nn.LayerNorm(cin, eps=1e-6)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        f = self.stem(x)                       # (N, C, 1, W/4)
        seq = f.squeeze(2).permute(0, 2, 1)    # (N, T, C)
        seq = self.norm(self.blocks(seq))
        return self.fc(seq).softmax(-1)


def small_crnn():
    return CRNNLike(widths=(8, 16, 16, 32), blocks=1, heads=2, classes=20)


# --------------------------------------------------------------------------- small classification nets


class TinyResNet(nn.Module):
    def __init__(self, widths=(8, 16, 16), classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        blocks, cin = [], widths[0]
        for i, c in enumerate(widths):
            blocks.append(BasicBlock(cin, c, 1 if i == 0 else 2))
            cin = c
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


class SqueezeExcite(nn.Module):
    def __init__(self, c, squeeze):
        super().__init__()
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))


class InvertedResidual(nn.Module):
    def __init__(self, cin, expand, cout, k, stride, se, act):
        super().__init__()
        layers = [nn.Conv2d(cin, expand, 1, bias=False), nn.BatchNorm2d(expand), act()] if expand != cin else []
        layers += [nn.Conv2d(expand, expand, k, stride, k // 2, groups=expand, bias=False), nn.BatchNorm2d(expand), act()]
        if se:
            layers.append(SqueezeExcite(expand, max(8, expand // 4)))
        layers += [nn.Conv2d(expand, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


class TinyMobileNetV3(nn.Module):
    """MobileNetV3-Small-like: HardSwish stem, inverted residuals (ReLU / HardSwish, SE), pooled 1x1 head."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        self.blocks = nn.Sequential(
            InvertedResidual(16, 16, 16, 3, 2, True, nn.ReLU),
            InvertedResidual(16, 48, 16, 3, 1, False, nn.ReLU),
            InvertedResidual(16, 48, 24, 5, 2, True, nn.Hardswish),
            InvertedResidual(24, 64, 24, 5, 1, True, nn.Hardswish),
        )
        self.last = nn.Sequential(nn.Conv2d(24, 64, 1, bias=False), nn.BatchNorm2d(64), nn.Hardswish())
        self.head = nn.Sequential(nn.Linear(64, 64), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(64, classes))

    def forward(self, x):
        x = self.last(self.blocks(self.stem(x)))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
