"""A small nnU-Net-style 3D U-Net that exports cleanly to ONNX for onnxruntime (CPU and WebGPU).

Per level: (conv3d k - norm - LeakyReLU(0.01)) x 2; the first conv of each deeper level is
strided by that level's pooling kernel (nnU-Net style, so the graph holds only Conv,
InstanceNormalization when the norm is instance, LeakyRelu, Resize, Concat).

norm is InstanceNorm3d(affine) as in nnU-Net, or BatchNorm3d ("batch"). Instance norm makes every
voxel's output depend on the whole input window, so crops packed in one canvas change each
other's output however far apart they are. Batch norm is a fixed affine map at inference and is
folded into the conv before export (fold_batchnorm): the exported net is then a pure local
operator, and a crop's output depends only on voxels within the receptive field. Up-sampling is nearest
F.interpolate + 1x1x1 conv: no ConvTranspose3d, which onnxruntime's WebGPU provider rejects.
Output: logits [N, classes, D, H, W] (apply softmax over dim 1).

Works with PyTorch 1.13 and 2.x.
"""
from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

Triple = Tuple[int, int, int]


def _pad(k: Sequence[int]) -> Triple:
    return tuple(int(v) // 2 for v in k)  # type: ignore[return-value]


class ConvNormAct(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: Sequence[int], stride: Sequence[int] = (1, 1, 1),
                 norm: str = "instance"):
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, tuple(kernel), stride=tuple(stride), padding=_pad(kernel), bias=True)
        self.norm = _norm(norm, cout)
        self.act = nn.LeakyReLU(0.01, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "instance":
        return nn.InstanceNorm3d(channels, eps=1e-5, affine=True)
    if kind == "batch":
        return nn.BatchNorm3d(channels, eps=1e-5)
    raise ValueError(f"norm must be instance or batch, not {kind!r}")


class Block(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: Sequence[int], stride: Sequence[int] = (1, 1, 1),
                 norm: str = "instance"):
        super().__init__(ConvNormAct(cin, cout, kernel, stride, norm), ConvNormAct(cout, cout, kernel, norm=norm))


class Up(nn.Module):
    """Nearest up-sampling by `scale` followed by a 1x1x1 conv."""

    def __init__(self, cin: int, cout: int, scale: Sequence[int]):
        super().__init__()
        self.scale = tuple(float(s) for s in scale)
        self.proj = nn.Conv3d(cin, cout, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.interpolate(x, scale_factor=self.scale, mode="nearest"))


class UNet3D(nn.Module):
    def __init__(
        self,
        features: Sequence[int] = (8, 16, 32, 64),
        kernels: Sequence[Sequence[int]] = ((1, 3, 3), (1, 3, 3), (3, 3, 3), (3, 3, 3)),
        pools: Sequence[Sequence[int]] = ((1, 2, 2), (1, 2, 2), (2, 2, 2)),
        in_channels: int = 1,
        classes: int = 2,
        norm: str = "instance",
    ):
        super().__init__()
        assert len(kernels) == len(features) and len(pools) == len(features) - 1
        self.features = [int(f) for f in features]
        self.kernels = [tuple(int(v) for v in k) for k in kernels]
        self.pools = [tuple(int(v) for v in p) for p in pools]
        self.enc = nn.ModuleList()
        cin = in_channels
        for i, f in enumerate(self.features):
            self.enc.append(Block(cin, f, self.kernels[i], (1, 1, 1) if i == 0 else self.pools[i - 1], norm))
            cin = f
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(len(self.features) - 2, -1, -1):
            self.up.append(Up(self.features[i + 1], self.features[i], self.pools[i]))
            self.dec.append(Block(2 * self.features[i], self.features[i], self.kernels[i], norm=norm))
        self.head = nn.Conv3d(self.features[0], classes, 1, bias=True)

    @property
    def divisor(self) -> List[int]:
        d = [1, 1, 1]
        for p in self.pools:
            d = [a * b for a, b in zip(d, p)]
        return d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for blk in self.enc:
            x = blk(x)
            skips.append(x)
        x = skips.pop()
        for up, dec in zip(self.up, self.dec):
            x = dec(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)


# Architectures per (kind, stage), nnU-Net's rule of thumb: 1x3x3 kernels and [1,2,2] pooling
# while the z spacing is more than twice the in-plane spacing.
ARCH = {
    # full-res EM 40x4x4 nm: z is 10x coarser
    ("em", "fullres"): dict(features=(8, 16, 32, 64), kernels=((1, 3, 3), (1, 3, 3), (3, 3, 3), (3, 3, 3)),
                            pools=((1, 2, 2), (1, 2, 2), (2, 2, 2))),
    # low-res EM 40x16x16 nm. Stage one must be cheap (it runs over the whole volume), so the
    # low-res nets have half the features: about a quarter of the full-res net's FLOPs per voxel.
    ("em", "lowres"): dict(features=(4, 8, 16, 32), kernels=((1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
                           pools=((1, 2, 2), (2, 2, 2), (2, 2, 2))),
    # full-res CT 2.5x0.8x0.8 mm
    ("ct", "fullres"): dict(features=(8, 16, 32, 64), kernels=((1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
                            pools=((1, 2, 2), (2, 2, 2), (2, 2, 2))),
    # low-res CT 2.5x3.2x3.2 mm: about isotropic
    ("ct", "lowres"): dict(features=(4, 8, 16, 32), kernels=((3, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
                           pools=((2, 2, 2), (2, 2, 2), (2, 2, 2))),
}


def build(kind: str, stage: str, norm: str = "instance") -> UNet3D:
    return UNet3D(**ARCH[(kind, stage)], norm=norm)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm3d into the conv before it (in place) and drop it, so the
    exported graph holds no normalisation node: y = g * (conv(x) - mean) / sqrt(var + eps) + b
    is the conv with weights scaled by s = g / sqrt(var + eps) and bias s * (bias - mean) + b."""
    for m in model.modules():
        if isinstance(m, ConvNormAct) and isinstance(m.norm, nn.BatchNorm3d):
            bn, conv = m.norm, m.conv
            s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv.weight.mul_(s.view(-1, 1, 1, 1, 1))
            conv.bias.copy_(s * (conv.bias - bn.running_mean) + bn.bias)
            m.norm = nn.Identity()
    return model


if __name__ == "__main__":
    for key in ARCH:
        m = build(*key)
        n = sum(p.numel() for p in m.parameters())
        x = torch.zeros(1, 1, *[8 * d for d in m.divisor])
        print(key, "params", n, "divisor", m.divisor, tuple(m(x).shape))
