#!/usr/bin/env python3
"""Does SwiftResNet classify like torchvision? For each ImageNet ResNet asked for: build
torchvision's network with random weights and batch-norm statistics, save its state_dict with
torch.save, turn it into a model file with `resnet convert`, classify the same image files with
`resnet predict` and with torchvision (its ImageNet evaluation transform on PIL images: resize
the shorter side to 256 with antialiasing, center crop 224, ImageNet mean and std), and print
the largest difference of the 1,000 probabilities.

    /work/venv-torch/bin/python benchmarks/check-torchvision-parity.py --resnet .build/release/resnet [resnet18 resnet50 ...]

The venv needs torch, torchvision and Pillow (PyPI). torchvision's C++ operators are not
needed: when they do not load (a CPU torch wheel with PyPI's torchvision), the model and
transform modules are imported without torchvision's package initializer.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image

from torch_support import torchvision_modules


def make_images(folder, rng):
    """Photos of several sizes and aspect ratios (smooth random fields with edges), PNG and JPEG."""
    paths = []
    for k, (h, w) in enumerate([(375, 500), (500, 333), (256, 256), (224, 300), (61, 45), (1000, 750)]):
        small = rng.integers(0, 256, size=(max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((w, h), Image.BICUBIC)
        pixels = np.asarray(image).astype(np.int16) + rng.integers(-20, 21, size=(h, w, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        path = os.path.join(folder, "photo%d.%s" % (k, "png" if k % 2 == 0 else "jpg"))
        image.save(path, quality=90) if path.endswith(".jpg") else image.save(path)
        paths.append(path)
    return paths


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--resnet", required=True, help="the resnet binary")
    ap.add_argument("models", nargs="*", default=["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"])
    args = ap.parse_args()
    resnet, F = torchvision_modules()
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        images = make_images(folder, np.random.default_rng(0))
        inputs = []
        for path in images:
            image = Image.open(path).convert("RGB")
            x = F.center_crop(F.resize(image, [256], interpolation=F.InterpolationMode.BILINEAR, antialias=True), [224])
            inputs.append(F.normalize(F.to_tensor(x), mean, std))
        batch = torch.stack(inputs)
        for name in args.models:
            torch.manual_seed(1)
            model = getattr(resnet, name)()
            with torch.no_grad():
                for m in model.modules():
                    if isinstance(m, torch.nn.BatchNorm2d):
                        m.running_mean.uniform_(-0.1, 0.1)
                        m.running_var.uniform_(0.5, 1.5)
                        m.weight.uniform_(0.5, 1.5)
                        m.bias.uniform_(-0.1, 0.1)
            model.eval()
            # Deep random networks give huge logits (one class at probability 1, differences
            # invisible): scale the classifier so the logits' spread is about 2.
            with torch.no_grad():
                spread = float(model(batch).std())
                model.fc.weight.mul_(2 / spread)
                model.fc.bias.mul_(2 / spread)
            weights = os.path.join(folder, name + ".pth")
            torch.save(model.state_dict(), weights)
            with torch.no_grad():
                expected = torch.softmax(model(batch), dim=1).numpy()
            card = os.path.join(folder, name + ".safetensors")
            subprocess.run([args.resnet, "convert", weights, "--model", name, "--out", card], check=True, capture_output=True)
            out = subprocess.run([args.resnet, "predict", card] + images + ["--top", "1000", "--json"], check=True,
                                 capture_output=True, text=True).stdout
            got = np.zeros_like(expected)
            for k, result in enumerate(json.loads(out)):
                for p in result["predictions"]:
                    got[k, p["index"]] = p["probability"]
            difference = np.abs(got - expected)
            # Random weights spread the probability over 1,000 classes: the relative difference
            # (of log-probabilities) shows what the absolute one hides.
            relative = float(np.abs(np.log(np.maximum(got, 1e-30)) - np.log(np.maximum(expected, 1e-30))).max())
            same_top = int((got.argmax(1) == expected.argmax(1)).sum())
            rows.append((name, float(difference.max()), relative, float(expected.max()), same_top, len(images)))
            print("%s: largest difference %.3g, largest log-probability difference %.3g, largest probability %.3g, same top-1 %d/%d"
                  % rows[-1], flush=True)
    print("\n| network | largest probability difference | largest log-probability difference | largest probability | same top-1 |")
    print("|---|---|---|---|---|")
    for name, worst, relative, top, same, n in rows:
        print("| %s | %.2g | %.2g | %.3f | %d/%d |" % (name, worst, relative, top, same, n))
    print("\ntorch %s; %d images (PNG and JPEG, 45x61 to 1000x750)" % (torch.__version__, len(images)))
    return 0 if all(worst < 1e-4 for _, worst, _, _, _, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
