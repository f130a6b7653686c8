"""The demo ensemble's network: a three-level 3D U-Net small enough to train on a CPU.

Imports torch only, so the benchmark's reference process carries nothing else.
"""

import torch
from torch import nn


class Block(nn.Sequential):
    def __init__(self, inputs: int, outputs: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv3d(inputs, outputs, 3, stride=stride, padding=1), nn.InstanceNorm3d(outputs, affine=True),
            nn.LeakyReLU(0.01), nn.Conv3d(outputs, outputs, 3, padding=1),
            nn.InstanceNorm3d(outputs, affine=True), nn.LeakyReLU(0.01))


class TinyUNet(nn.Module):
    """Three-level 3D U-Net: input (B, 1, z, y, x), logits (B, classes, z, y, x); z, y, x divisible by 4."""

    def __init__(self, width: int, classes: int = 2) -> None:
        super().__init__()
        self.encode1 = Block(1, width)
        self.encode2 = Block(width, 2 * width, stride=2)
        self.bottom = Block(2 * width, 4 * width, stride=2)
        self.up2 = nn.ConvTranspose3d(4 * width, 2 * width, 2, stride=2)
        self.decode2 = Block(4 * width, 2 * width)
        self.up1 = nn.ConvTranspose3d(2 * width, width, 2, stride=2)
        self.decode1 = Block(2 * width, width)
        self.head = nn.Conv3d(width, classes, 1)

    def forward(self, image):
        level1 = self.encode1(image)
        level2 = self.encode2(level1)
        bottom = self.bottom(level2)
        level2 = self.decode2(torch.cat([self.up2(bottom), level2], 1))
        level1 = self.decode1(torch.cat([self.up1(level2), level1], 1))
        return self.head(level1)
