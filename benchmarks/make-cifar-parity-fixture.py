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
from PIL import Image

from torch_support import AkamasterResNet


def main(folder):
    torch.manual_seed(20)
    model = AkamasterResNet(3)
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
