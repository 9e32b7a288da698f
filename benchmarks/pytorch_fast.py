"""Train ResNet-20 with SwiftResNet's `fast` recipe in PyTorch, on the same CIFAR-10 files.

This is the control experiment for SwiftResNet's accuracy figures: the same network (ResNet-20,
shortcut B, from compare_pytorch.py, by default; --network resnetD and --shortcut A|B|C for the
other CIFAR ResNets and the paper's three shortcut options, each parameter count checked against
SwiftResNet's),
the same images (the canonical binary CIFAR-10 that `resnet` trains on, here built from the
JPEG re-encodings in ../shared/data) and the same recipe, written with PyTorch's own parts:

- a seeded 45,000/5,000 split of the training set, stratified (500 validation images per class);
- per-channel mean/std of the training part; random crop with 4 pixels of zero padding and a
  horizontal flip, applied to the 8-bit images before normalization (as torchvision does);
- torch.optim.SGD (momentum 0.9, Nesterov, weight decay 5e-4 on every parameter), batch 128,
  incomplete last batch dropped, 30 epochs;
- torch.optim.lr_scheduler.OneCycleLR (max 0.2, 15% cosine warm-up from 0.02, cosine down to
  0.0002, momentum not cycled), stepped every iteration;
- cross-entropy with label smoothing 0.1; He-normal (fan-out) convolutions, Glorot-uniform
  linear layer, as SwiftResNet initializes them;
- the checkpoint with the best validation accuracy is kept, and the test set is evaluated once,
  at the end, with it (and, for information, with the last weights).

If SwiftResNet and this script reach the same test accuracy, a gap to the paper comes from the
data and the protocol, not from SwiftResNet's trainer. Run it with the Python that has PyTorch
(benchmarks/compare-pytorch --install creates one), for example

    ~/.cache/swiftresnet/torch-venv/bin/python benchmarks/pytorch_fast.py \\
        --data ~/.cache/swiftresnet/cifar10/cifar-10-batches-bin --out /tmp/pytorch-fast

It prints one line per epoch and writes metrics.jsonl and result.json to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_pytorch import cifar_resnet, parameter_count  # noqa: E402

RECORD = 1 + 3 * 32 * 32

# SwiftResNet's parameter counts: `resnet summary NAME --shortcut S --json`, total_params
# (2026-12-03). The PyTorch network must have as many, or the control is of another network.
SWIFTRESNET_PARAMS = {
    ("resnet20", "A"): 269_722, ("resnet20", "B"): 272_474, ("resnet20", "C"): 283_962,
    ("resnet32", "A"): 464_154, ("resnet32", "B"): 466_906, ("resnet32", "C"): 489_594,
    ("resnet44", "A"): 658_586, ("resnet44", "B"): 661_338, ("resnet44", "C"): 695_226,
    ("resnet56", "A"): 853_018, ("resnet56", "B"): 855_770, ("resnet56", "C"): 900_858,
    ("resnet110", "A"): 1_727_962, ("resnet110", "B"): 1_730_714, ("resnet110", "C"): 1_826_202,
}


def read_batches(directory: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) from CIFAR-10 binary batch files."""
    parts = []
    for name in names:
        path = directory / name
        if not path.is_file():
            sys.exit(f"error: no {path}: --data takes the directory of CIFAR-10's binary batches "
                     "(resnet download cifar10, or make-cifar10.sh)")
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size == 0 or raw.size % RECORD:
            sys.exit(f"error: {directory / name} is not a CIFAR-10 binary batch ({raw.size} bytes)")
        parts.append(raw.reshape(-1, RECORD))
    records = np.concatenate(parts)
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), records[:, 0].astype(np.int64)


def stratified_split(labels: np.ndarray, validation: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and validation indices; validation takes the same number from every class."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = validation // len(classes)
    chosen = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class] for c in classes])
    mask = np.zeros(len(labels), dtype=bool)
    mask[chosen] = True
    return np.flatnonzero(~mask), np.sort(chosen)


def augment(images: np.ndarray, rng: np.random.Generator, padding: int = 4) -> np.ndarray:
    """Random crop from the zero-padded image and a random horizontal flip, on 8-bit pixels."""
    n, _, h, w = images.shape
    padded = np.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dy = rng.integers(0, 2 * padding + 1, n)
    dx = rng.integers(0, 2 * padding + 1, n)
    flip = rng.random(n) < 0.5
    out = np.empty_like(images)
    for i in range(n):
        crop = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = crop[:, :, ::-1] if flip[i] else crop
    return out


def to_input(images: np.ndarray, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    x = torch.from_numpy(images).float().div_(255)
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


def initialize(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


@torch.no_grad()
def evaluate(model: nn.Module, images: np.ndarray, labels: np.ndarray, mean, std, batch: int = 500) -> dict:
    model.eval()
    loss_sum, top1, top5 = 0.0, 0, 0
    for start in range(0, len(images), batch):
        x = to_input(images[start:start + batch], mean, std)
        y = torch.from_numpy(labels[start:start + batch])
        logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        best = logits.topk(5, dim=1).indices
        top1 += (best[:, 0] == y).sum().item()
        top5 += (best == y[:, None]).any(dim=1).sum().item()
    n = len(images)
    return {"loss": loss_sum / n, "top1": top1 / n, "top5": top5 / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="directory with data_batch_1.bin ... test_batch.bin")
    parser.add_argument("--out", type=Path, required=True, help="directory for metrics.jsonl and result.json")
    parser.add_argument("--network", default="resnet20", help="resnetD, D = 6n+2 (default resnet20)")
    parser.add_argument("--shortcut", default="B", choices=("A", "B", "C"), help="the paper's shortcut option (default B)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.2, help="one-cycle peak learning rate")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (faster steps, same arithmetic)")
    args = parser.parse_args()
    if args.epochs < 1 or args.batch_size < 1 or args.lr <= 0 or args.threads < 1:
        parser.error("--epochs, --batch-size, --threads and --lr must be positive")
    if (args.network, args.shortcut) not in SWIFTRESNET_PARAMS:
        parser.error(f"--network: one of {', '.join(sorted({name for name, _ in SWIFTRESNET_PARAMS}))}")

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    images, labels = read_batches(args.data, [f"data_batch_{i}.bin" for i in range(1, 6)])
    test_images, test_labels = read_batches(args.data, ["test_batch.bin"])
    train_index, val_index = stratified_split(labels, 5_000, args.seed)
    train_images, train_labels = images[train_index], labels[train_index]
    val_images, val_labels = images[val_index], labels[val_index]
    pixels = train_images.astype(np.float64) / 255
    mean = torch.tensor(pixels.mean(axis=(0, 2, 3)), dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(pixels.std(axis=(0, 2, 3)), dtype=torch.float32).view(1, 3, 1, 1)
    del pixels

    model = cifar_resnet(int(args.network.removeprefix("resnet")), shortcut=args.shortcut)
    expected = SWIFTRESNET_PARAMS[(args.network, args.shortcut)]
    if parameter_count(model) != expected:
        sys.exit(f"error: {parameter_count(model)} parameters, SwiftResNet's {args.network} with option "
                 f"{args.shortcut} has {expected}")
    initialize(model)
    model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if args.compile else model
    steps_per_epoch = len(train_images) // args.batch_size
    total = steps_per_epoch * args.epochs
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                                weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=args.lr, total_steps=total, pct_start=0.15, anneal_strategy="cos",
        cycle_momentum=False, div_factor=10, final_div_factor=100)
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)

    args.out.mkdir(parents=True, exist_ok=True)
    log = (args.out / "metrics.jsonl").open("w")
    print(f"{args.network}, option {args.shortcut}; torch {torch.__version__}, {args.threads} threads, {len(train_images)} training / "
          f"{len(val_images)} validation images, {total} iterations", flush=True)
    best_accuracy, best_state, best_epoch = -1.0, None, 0
    start = time.time()
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = rng.permutation(len(train_images))
        loss_sum, correct = 0.0, 0
        for step in range(steps_per_epoch):
            index = order[step * args.batch_size:(step + 1) * args.batch_size]
            x = to_input(augment(train_images[index], rng), mean, std)
            y = torch.from_numpy(train_labels[index])
            logits = step_model(x)
            loss = criterion(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            loss_sum += loss.item() * len(index)
            correct += (logits.argmax(1) == y).sum().item()
        seen = steps_per_epoch * args.batch_size
        validation = evaluate(model, val_images, val_labels, mean, std)
        record = {"epoch": epoch, "train_loss": loss_sum / seen, "train_top1": correct / seen,
                  "val_loss": validation["loss"], "val_top1": validation["top1"],
                  "lr": schedule.get_last_lr()[0], "elapsed_s": time.time() - start}
        log.write(json.dumps(record) + "\n")
        log.flush()
        print(f"epoch {epoch:3d}  loss {record['train_loss']:.4f}  acc {100 * record['train_top1']:.2f}%  "
              f"val loss {validation['loss']:.4f}  val acc {100 * validation['top1']:.2f}%  "
              f"{record['elapsed_s'] / 60:.1f} min", flush=True)
        if validation["top1"] > best_accuracy:
            best_accuracy, best_epoch = validation["top1"], epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    elapsed = time.time() - start
    log.close()

    last_test = evaluate(model, test_images, test_labels, mean, std)
    model.load_state_dict(best_state)
    best_test = evaluate(model, test_images, test_labels, mean, std)
    result = {"network": args.network, "shortcut": args.shortcut, "torch": torch.__version__, "threads": args.threads, "seed": args.seed, "epochs": args.epochs,
              "best_val_top1": best_accuracy, "best_epoch": best_epoch, "test": best_test,
              "test_last_weights": last_test, "train_minutes": elapsed / 60}
    (args.out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"best validation {100 * best_accuracy:.2f}% (epoch {best_epoch}); test top-1 "
          f"{100 * best_test['top1']:.2f}%, top-5 {100 * best_test['top5']:.2f}% "
          f"(last weights {100 * last_test['top1']:.2f}%); {elapsed / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()
