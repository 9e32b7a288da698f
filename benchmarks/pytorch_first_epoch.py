"""The first epoch of a 56-layer CIFAR network with the he2016 recipe, in PyTorch: a control for
the degradation campaign's slow starts.

In `resnet experiment degradation`, seed 0 of both 56-layer networks spent its whole first epoch
near chance (ResNet-56: 10.4% training accuracy, ResNet-20: 39.1%). This script trains the same
network as PyTorch writes it (akamaster's CIFAR ResNet with option A from torch_support.py, or its
plain twin: the same blocks without the shortcut), initialized as SwiftResNet initializes it
(He-normal fan-out convolutions, Glorot-uniform linear layer: pytorch_fast.initialize), on the same
CIFAR-10 files, with the he2016 recipe (SGD 0.1, momentum 0.9, weight decay 1e-4 on every
parameter, batch 128, flip and 4-pixel pad-crop, per-pixel mean subtracted), and prints the
first loss and the running training accuracy every 50 steps, and each epoch's training accuracy
and loss as `resnet train` logs them. If PyTorch's start is as slow and as seed-dependent as
SwiftResNet's, the slow start belongs to the recipe, not to the trainer. With `--steps 3510` (ten
epochs) it is also a control for the climb after the start (README, *Reproducing the paper*).

    ~/.cache/swiftresnet/torch-venv/bin/python benchmarks/pytorch_first_epoch.py \\
        --data ~/.cache/swiftresnet/cifar10/cifar-10-batches-bin --network resnet56 --seed 0
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pytorch_fast import augment, initialize, read_batches  # noqa: E402
from torch_support import AkamasterBlock, AkamasterResNet  # noqa: E402


class PlainBlock(AkamasterBlock):
    """The plain twin of a basic block: the same two convolutions, no shortcut."""

    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


def network(name: str) -> torch.nn.Module:
    kind, depth = name.rstrip("0123456789"), int(name[len(name.rstrip("0123456789")):] or 0)
    if kind not in ("resnet", "plain") or depth < 8 or (depth - 2) % 6:
        sys.exit(f"error: --network takes resnetD or plainD with D = 6n+2, not {name}")
    model = AkamasterResNet((depth - 2) // 6)
    if kind == "plain":
        for stage in (model.layer1, model.layer2, model.layer3):
            for block in stage:
                block.__class__ = PlainBlock
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="directory with data_batch_1.bin ... data_batch_5.bin")
    parser.add_argument("--network", default="resnet56", help="resnetD or plainD, D = 6n+2 (default resnet56)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=351, help="default: one epoch of 45,000 images")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.steps < 1:
        sys.exit("error: --steps must be at least 1")

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    images, labels = read_batches(args.data, [f"data_batch_{i}.bin" for i in range(1, 6)])
    images, labels = images[:45_000], labels[:45_000]
    mean = torch.from_numpy(images.astype(np.float32).mean(axis=0) / 255)
    model = network(args.network)
    initialize(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(images))
    batches = len(images) // 128
    correct, seen, loss_sum, start = 0, 0, 0.0, time.time()
    all_correct, all_loss = 0, 0.0
    epoch_correct, epoch_loss = 0, 0.0
    for step in range(args.steps):
        if step and step % batches == 0:
            order = rng.permutation(len(images))
        index = order[(step % batches) * 128:(step % batches + 1) * 128]
        x = torch.from_numpy(augment(images[index], rng)).float().div_(255) - mean
        y = torch.from_numpy(labels[index]).long()
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        right = (logits.argmax(1) == y).sum().item()
        correct, all_correct = correct + right, all_correct + right
        seen += len(y)
        loss_sum += loss.item() * len(y)
        all_loss += loss.item() * len(y)
        epoch_correct, epoch_loss = epoch_correct + right, epoch_loss + loss.item() * len(y)
        if (step + 1) % batches == 0:
            # The same figures `resnet train` logs at an epoch's end (`acc`, `loss`), to put a
            # longer control (--steps 3510: ten epochs) beside a campaign's log line by line.
            print(f"epoch {(step + 1) // batches}: training accuracy {100 * epoch_correct / (128 * batches):.2f}%, "
                  f"loss {epoch_loss / (128 * batches):.4f} ({time.time() - start:.0f} s)", flush=True)
            epoch_correct, epoch_loss = 0, 0.0
        if step == 0:
            print(f"{args.network} seed {args.seed}: first loss {loss.item():.4f}", flush=True)
        if (step + 1) % 50 == 0 or step + 1 == args.steps:
            print(f"step {step + 1}: training accuracy {100 * correct / seen:.2f}%, loss {loss_sum / seen:.4f} "
                  f"over the last {seen // 128} steps ({time.time() - start:.0f} s)", flush=True)
            correct, seen, loss_sum = 0, 0, 0.0
    n = 128 * args.steps
    print(f"all {args.steps} steps: training accuracy {100 * all_correct / n:.2f}%, loss {all_loss / n:.4f} "
          "(what `resnet train` logs for an epoch)")


if __name__ == "__main__":
    main()
