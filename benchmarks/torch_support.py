"""What the PyTorch-side checks in benchmarks/ share: torchvision's modules (loaded even when its
C++ operators do not load) and akamaster/pytorch_resnet_cifar10's CIFAR ResNet with option A.
Imported by check-export.py, check-torchvision-parity.py and make-cifar-parity-fixture.py (run
from any folder: Python puts the script's own folder first on its path)."""
import importlib
import os
import sys
import types

import torch
import torch.nn as nn
import torch.nn.functional as F


def torchvision_modules():
    """torchvision's resnet and transforms.functional modules, without its package initializer
    when its C++ operators do not load (a torchvision wheel built for another torch)."""
    try:
        import torchvision.models.resnet as resnet
        from torchvision.transforms import functional
        return resnet, functional
    except Exception:  # noqa: BLE001 - the C++ operators did not load
        for name in [k for k in sys.modules if k.startswith("torchvision")]:
            del sys.modules[name]
        site = os.path.dirname(os.path.dirname(torch.__file__))
        for name in ("torchvision", "torchvision.models"):
            module = types.ModuleType(name)
            module.__path__ = [os.path.join(site, *name.split("."))]
            sys.modules[name] = module
        return importlib.import_module("torchvision.models.resnet"), importlib.import_module("torchvision.transforms.functional")


class AkamasterBlock(nn.Module):
    """akamaster/pytorch_resnet_cifar10's BasicBlock with option A: subsample, then planes // 4
    zero channels on each side."""

    def __init__(self, inputs, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = stride != 1 or inputs != planes
        self.planes = planes

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.pad:
            x = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.planes // 4, self.planes // 4))
        return F.relu(y + x)


class AkamasterResNet(nn.Module):
    """akamaster's `resnet{6n+2}` (n blocks per stage), its parameter names included."""

    def __init__(self, n, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, inputs = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(n):
                blocks.append(AkamasterBlock(inputs, planes, stride if i == 0 else 1))
                inputs = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(F.adaptive_avg_pool2d(x, 1).flatten(1))
