#!/usr/bin/env python3
"""The CIFAR ResNet-20 parity fixture: a PyTorch ResNet-20 with option A shortcuts laid out as
akamaster/pytorch_resnet_cifar10's (zero channels padded on both sides, `linear` classifier),
random weights and batch-norm statistics, saved with torch.save(model.state_dict()); four 32x32
PNG images; and the softmax probabilities PyTorch computes for them with akamaster's
preprocessing (pixels / 255, then ImageNet's channel mean and std).

SwiftResNet's test (Tests/ResNetInferenceTests/ParityTests.swift) converts the state_dict with
`resnet convert`'s code and must give the same probabilities within 1e-4.

    /work/venv-torch/bin/python benchmarks/make-cifar-parity-fixture.py Tests/ResNetInferenceTests/Fixtures/cifar-resnet20
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image


class Block(nn.Module):
    def __init__(self, inputs, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = (stride != 1 or inputs != planes)
        self.planes = planes

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.pad:
            # Option A as akamaster writes it: subsample, then planes // 4 zero channels on each side.
            x = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.planes // 4, self.planes // 4))
        return F.relu(y + x)


class ResNet20(nn.Module):
    def __init__(self, n=3, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, inputs = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(Block(inputs, planes, stride if i == 0 else 1))
                inputs = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))


def main(folder):
    torch.manual_seed(20)
    model = ResNet20()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                # Statistics and affine parameters away from their initial values, so that a
                # mistake in any of them shows.
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.eval()
    os.makedirs(folder, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(folder, "resnet20.pth"))
    rng = np.random.default_rng(5)
    mean = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(3, 1, 1)
    expected = {}
    for k in range(4):
        pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
        name = "image%d.png" % k
        Image.fromarray(pixels).save(os.path.join(folder, name))
        x = (pixels.transpose(2, 0, 1).astype(np.float32) / 255 - mean) / std
        with torch.no_grad():
            p = torch.softmax(model(torch.from_numpy(x)[None]), dim=1)[0]
        expected[name] = [float(v) for v in p]
    with open(os.path.join(folder, "expected.json"), "w") as f:
        json.dump({"torch": torch.__version__, "probabilities": expected}, f, indent=1)
    print("wrote", folder, "torch", torch.__version__)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "Tests/ResNetInferenceTests/Fixtures/cifar-resnet20")
