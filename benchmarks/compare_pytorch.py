"""Compare SwiftResNet's training and inference speed with PyTorch's on this CPU.

Each row of the table is one network, mode (train or eval), batch size and thread count,
measured with `resnet bench` and with the same network written here in PyTorch in three ways:
eager (NCHW), channels_last, and torch.compile of the channels_last model. Every measurement
runs in a process of its own, so its peak resident memory is its own. The result is one
Markdown table, preceded by the machine it ran on and followed by the command that produced it.

The PyTorch networks follow He et al. 2016 ("Deep Residual Learning for Image Recognition"):
CIFAR ResNets of depth 6n+2 with projection shortcuts on shape changes (option B), and the
ImageNet ResNet-18 and ResNet-50 with the bottleneck's stride on its 3x3 convolution (the
"v1.5" variant SwiftResNet also builds). Their parameter counts are checked against
SwiftResNet's before anything is timed, so both sides run identical networks.

Run it through `benchmarks/compare-pytorch`, which picks the Python environment with PyTorch.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import re
import resource
import shlex
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parent.parent
DEFAULT_RESNET = REPO / ".build" / "release" / "resnet"

# Parameter counts of SwiftResNet's networks (`resnet summary MODEL`), CIFAR ones with shortcut B.
EXPECTED_PARAMS = {
    "resnet20": 272_474,
    "resnet56": 855_770,
    "resnet110": 1_730_714,
    "resnet18": 11_689_512,
    "resnet50": 25_557_032,
}
CIFAR_MODELS = ("resnet20", "resnet56", "resnet110")
MODELS = tuple(EXPECTED_PARAMS)
MODES = ("train", "eval")
TORCH_TOOLS = ("eager", "channels_last", "compile")
# PyTorch's layouts measured under bf16 autocast: the channels_last ones, its fastest.
TORCH_BF16_TOOLS = ("channels_last", "compile")

# What a run without --models/--modes measures: (model, mode, batch size).
DEFAULT_PLAN = (
    ("resnet20", "train", 128),
    ("resnet56", "train", 128),
    ("resnet110", "train", 128),
    ("resnet20", "eval", 256),
    ("resnet18", "train", 32),
    ("resnet18", "eval", 32),
    ("resnet50", "train", 32),
    ("resnet50", "eval", 32),
)

# Timed steps per run, chosen so that one run lasts a few seconds on a 2-core machine.
DEFAULT_ITERATIONS = {"resnet20": 10, "resnet56": 4, "resnet110": 2, "resnet18": 2, "resnet50": 1}
DEFAULT_REPEATS = 3
# Untimed steps before the timed runs: (CIFAR, ImageNet). torch.compile gets COMPILE_EXTRA more,
# since its first steps compile (and may recompile) the forward and backward graphs.
DEFAULT_WARMUP = (3, 1)
COMPILE_EXTRA_WARMUP = 2
QUICK = {"repeats": 2, "iterations": 1, "warmup": 1}
# More cores than this busy before the first measurement means another program competes.
BUSY_CORES = 0.3


# ---------------------------------------------------------------------------------------------
# The networks (He et al. 2016)
# ---------------------------------------------------------------------------------------------


def conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Sequential:
    """A bias-free convolution with "same" padding followed by batch normalization."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class ZeroPadShortcut(nn.Module):
    """Shortcut option A where the shape changes: subsample, then zero channels after the input's."""

    def __init__(self, extra_channels: int, stride: int) -> None:
        super().__init__()
        self.extra_channels, self.stride = extra_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::self.stride, ::self.stride], (0, 0, 0, 0, 0, self.extra_channels))


def projection(in_channels: int, out_channels: int, stride: int, option: str = "B") -> nn.Module:
    """The paper's shortcut options (section 3.3): identity where the shape stays, except C, a
    1x1 convolution + BN on every block; where the shape changes, A subsamples and zero-pads,
    B and C project (a strided 1x1 convolution + BN)."""
    changes = stride != 1 or in_channels != out_channels
    if option == "C" or (option == "B" and changes):
        return conv_bn(in_channels, out_channels, 1, stride)
    if option == "A" and changes:
        return ZeroPadShortcut(out_channels - in_channels, stride)
    return nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (conv-BN-ReLU-conv-BN) plus the shortcut, ReLU after the sum."""

    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int, shortcut: str = "B") -> None:
        super().__init__()
        self.conv1 = conv_bn(in_channels, channels, 3, stride)
        self.conv2 = conv_bn(channels, channels, 3)
        self.shortcut = projection(in_channels, channels, stride, shortcut)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        return F.relu(y + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided, as in torchvision's v1.5), 1x1 expand by 4, plus the shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = conv_bn(in_channels, channels, 1)
        self.conv2 = conv_bn(channels, channels, 3, stride)
        self.conv3 = conv_bn(channels, out_channels, 1)
        self.shortcut = projection(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(F.relu(self.conv2(F.relu(self.conv1(x)))))
        return F.relu(y + self.shortcut(x))


def stage(block: type, in_channels: int, channels: int, blocks: int, stride: int, **options) -> nn.Sequential:
    """`blocks` residual blocks; the first one strides and changes the width."""
    layers = []
    for index in range(blocks):
        layers.append(block(in_channels, channels, stride if index == 0 else 1, **options))
        in_channels = channels * block.expansion
    return nn.Sequential(*layers)


def cifar_resnet(depth: int, classes: int = 10, shortcut: str = "B") -> nn.Sequential:
    """The paper's CIFAR-10 network (section 4.2): 6n+2 layers, 16/32/64 channels, with
    shortcut option `shortcut` (B by default, as SwiftResNet's)."""
    if (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2, not {depth}")
    n = (depth - 2) // 6
    return nn.Sequential(
        conv_bn(3, 16, 3),
        nn.ReLU(),
        stage(BasicBlock, 16, 16, n, 1, shortcut=shortcut),
        stage(BasicBlock, 16, 32, n, 2, shortcut=shortcut),
        stage(BasicBlock, 32, 64, n, 2, shortcut=shortcut),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, classes),
    )


def imagenet_resnet(block: type, blocks: tuple[int, ...], classes: int = 1000) -> nn.Sequential:
    """The paper's ImageNet network (table 1): 7x7 stem, max pool, four stages, 1000 classes."""
    widths = (64, 128, 256, 512)
    layers: list[nn.Module] = [
        conv_bn(3, 64, 7, 2),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1),
    ]
    in_channels = 64
    for index, (width, count) in enumerate(zip(widths, blocks)):
        layers.append(stage(block, in_channels, width, count, 1 if index == 0 else 2))
        in_channels = width * block.expansion
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, classes)]
    return nn.Sequential(*layers)


def build_model(name: str) -> tuple[nn.Module, tuple[int, int, int], int]:
    """The network called `name` in SwiftResNet, its input shape (C, H, W) and class count."""
    if name in CIFAR_MODELS:
        return cifar_resnet(int(name.removeprefix("resnet"))), (3, 32, 32), 10
    if name == "resnet18":
        return imagenet_resnet(BasicBlock, (2, 2, 2, 2)), (3, 224, 224), 1000
    if name == "resnet50":
        return imagenet_resnet(Bottleneck, (3, 4, 6, 3)), (3, 224, 224), 1000
    raise ValueError(f"unknown model {name}")


def parameter_count(model: nn.Module) -> int:
    """The number of trainable parameters (BN running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ---------------------------------------------------------------------------------------------
# One measurement
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Measurement:
    """One timed configuration: a network, a mode and an implementation ("tool")."""

    model: str
    mode: str
    batch_size: int
    threads: int
    tool: str  # "swiftresnet" or one of TORCH_TOOLS
    precision: str  # "fp32" or "bf16"
    warmup: int
    repeats: int
    iterations: int


def peak_rss_mib() -> float:
    """This process's peak resident set size in MiB.

    VmHWM from /proc/self/status, not getrusage's ru_maxrss: Linux carries ru_maxrss across
    execve, so a worker forked from this (large) parent would start at the parent's size.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_torch(m: Measurement) -> dict:
    """Time `m` in this process with PyTorch.

    Returns the median images/s, every run's, the peak RSS in MiB, the RSS before the network
    was built (the cost of Python and PyTorch themselves) and how long the warm-up took.
    """
    torch.set_num_threads(m.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    baseline_mib = peak_rss_mib()  # Python and PyTorch alone, before the network exists

    model, (channels, height, width), classes = build_model(m.model)
    count = parameter_count(model)
    if count != EXPECTED_PARAMS[m.model]:
        raise AssertionError(f"{m.model}: {count} parameters, SwiftResNet has {EXPECTED_PARAMS[m.model]}")
    images = torch.randn(m.batch_size, channels, height, width)
    labels = torch.randint(0, classes, (m.batch_size,))
    if m.tool in ("channels_last", "compile"):
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)

    training = m.mode == "train"
    model.train(training)
    network = torch.compile(model) if m.tool == "compile" else model
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=m.precision == "bf16")

    if training:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = F.cross_entropy(network(images), labels)
            loss.backward()
            optimizer.step()

    else:

        def step() -> None:
            with torch.inference_mode(), autocast:
                network(images)

    warmup = m.warmup + (COMPILE_EXTRA_WARMUP if m.tool == "compile" else 0)
    start = time.perf_counter()
    for _ in range(warmup):
        step()
    warmup_seconds = time.perf_counter() - start  # with torch.compile: mostly compilation
    runs = []
    for _ in range(m.repeats):
        start = time.perf_counter()
        for _ in range(m.iterations):
            step()
        runs.append(m.batch_size * m.iterations / (time.perf_counter() - start))
    return {
        "images_per_second": statistics.median(runs),
        "runs": runs,
        "peak_rss_mib": peak_rss_mib(),
        "baseline_rss_mib": baseline_mib,
        "parameters": count,
        "warmup": warmup,
        "warmup_seconds": warmup_seconds,
    }


def last_line(text: str) -> str:
    """The last non-empty line of `text`: where a CLI states its error or a result is printed."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def describe(error: Exception) -> str:
    """An exception's type and the first line of its message: short enough for a table cell."""
    message = str(error).strip()
    return f"{type(error).__name__}: {message.splitlines()[0]}" if message else type(error).__name__


def run_worker(spec: str) -> int:
    """Run one PyTorch measurement in this process and print its result as one JSON line.

    A failure (typically torch.compile on an unsupported setup) prints {"error": ...} with the
    exception's gist, the traceback going to stderr, and exits 1.
    """
    try:
        result = measure_torch(Measurement(**json.loads(spec)))
    except Exception as error:  # any failure becomes a table cell, not a crash
        traceback.print_exc()
        print(json.dumps({"error": describe(error)}))
        return 1
    print(json.dumps(result))
    return 0


def run_measurement(m: Measurement, resnet: Path) -> dict:
    """Run `m` in a child process; return its result, or {"error": ...} if it failed.

    What a successful process printed on stderr (PyTorch's warnings) comes back as "warnings",
    the end of a failed one's as "log".
    """
    if m.tool == "swiftresnet":
        command = [
            str(resnet), "bench", m.model, "--mode", m.mode, "--batch-size", str(m.batch_size),
            "--threads", str(m.threads), "--precision", m.precision, "--json",
            "--repeats", str(m.repeats), "--iterations", str(m.iterations), "--warmup", str(m.warmup),
        ]
        if m.model in CIFAR_MODELS:
            command += ["--shortcut", "B"]
    else:
        command = [sys.executable, __file__, "--worker", json.dumps(dataclasses.asdict(m))]
    process = subprocess.run(command, capture_output=True, text=True)
    stderr = [line for line in process.stderr.splitlines() if line.strip()]
    try:
        result = json.loads(last_line(process.stdout))
    except json.JSONDecodeError:
        result = {"error": last_line(process.stderr) if process.returncode else
                  f"unreadable output: {last_line(process.stdout)[:80]}"}
    if "error" in result:
        return {**result, "log": stderr[-20:]}
    return {**result, "warnings": stderr} if stderr else result


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    """One line of the table: SwiftResNet and every PyTorch layout on the same workload."""

    model: str
    mode: str
    precision: str
    batch_size: int
    threads: int
    swiftresnet: dict = dataclasses.field(default_factory=dict)
    pytorch: dict = dataclasses.field(default_factory=dict)  # tool -> result (absent: skipped)

    def best_pytorch(self) -> str | None:
        """The fastest PyTorch layout that produced a figure."""
        timed = [tool for tool, result in self.pytorch.items() if "images_per_second" in result]
        return max(timed, key=lambda tool: self.pytorch[tool]["images_per_second"], default=None)

    def ratios(self) -> tuple[float | None, float | None]:
        """(our images/s / best PyTorch's, our peak memory / that layout's peak memory)."""
        best = self.best_pytorch()
        if best is None or "images_per_second" not in self.swiftresnet:
            return None, None
        theirs = self.pytorch[best]
        return (
            self.swiftresnet["images_per_second"] / theirs["images_per_second"],
            self.swiftresnet["peak_rss_mib"] / theirs["peak_rss_mib"],
        )

    def as_json(self) -> dict:
        """The row with every raw result, for --json."""
        speedup, memory = self.ratios()
        return {
            **dataclasses.asdict(self),
            "best_pytorch": self.best_pytorch(),
            "speedup": speedup,
            "memory_ratio": memory,
        }


TABLE_HEADER = (
    "model", "mode", "batch", "threads", "SwiftResNet img/s", "SwiftResNet peak MiB",
    "PyTorch eager", "channels_last", "compile", "best PyTorch",
    "speed-up (ours / best PyTorch)", "memory (ours / PyTorch best mode's peak)",
)


def speed(value: float) -> str:
    """Images/s with sensible precision: 1,234 / 56.7."""
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def cell(result: dict | None, unsupported: str = "failed") -> str:
    """A result's images/s, "—" for a layout not measured, or a short reason it failed."""
    if result is None:
        return "—"
    if "images_per_second" in result:
        return speed(result["images_per_second"])
    if unsupported == "n/a":
        return "n/a"
    reason = result["error"].replace("|", "/")
    return f"{unsupported}: {reason[:60]}{'…' if len(reason) > 60 else ''}"


def markdown_row(row: Row) -> str:
    """The table line of `row`."""
    ours = row.swiftresnet
    # SwiftResNet's failures in another precision than fp32 mean "not supported yet".
    ours_cell = cell(ours, "n/a" if row.precision != "fp32" else "failed")
    best = row.best_pytorch()
    speedup, memory = row.ratios()
    cells = [
        row.model,
        row.mode if row.precision == "fp32" else f"{row.mode} {row.precision}",
        str(row.batch_size),
        str(row.threads),
        ours_cell,
        f"{ours['peak_rss_mib']:,.0f}" if "peak_rss_mib" in ours else "n/a",
        *(cell(row.pytorch.get(tool)) for tool in TORCH_TOOLS),
        f"{speed(row.pytorch[best]['images_per_second'])} ({best})" if best else "n/a",
        f"{speedup:.2f}×" if speedup is not None else "n/a",
        (
            f"{memory:.2f}× ({ours['peak_rss_mib']:,.0f} / {row.pytorch[best]['peak_rss_mib']:,.0f})"
            if memory is not None else "n/a"
        ),
    ]
    return "| " + " | ".join(cells) + " |"


def markdown_table(rows: list[Row]) -> str:
    """The whole Markdown table."""
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER)]
    return "\n".join(lines + [markdown_row(row) for row in rows])


# ---------------------------------------------------------------------------------------------
# Machine, versions and parameter counts
# ---------------------------------------------------------------------------------------------


def cpu_description() -> str:
    """The CPU's model name, core count and the vector extensions that matter here."""
    name, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    features = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if f in flags]
    cores = len(os.sched_getaffinity(0))
    return f"{name}, {cores} cores" + (f" ({', '.join(features)})" if features else "")


def busy_cores(seconds: float = 1.0) -> float:
    """How many cores other programs keep busy, from /proc/stat over `seconds` (0 if unknown)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            ticks = [int(value) for value in stat.readline().split()[1:9]]  # user ... steal
        return sum(ticks), ticks[3] + ticks[4]  # all, idle + iowait

    try:
        total_before, idle_before = sample()
        time.sleep(seconds)
        total, idle = sample()
    except (OSError, ValueError, IndexError):
        return 0.0
    elapsed = total - total_before
    return (1 - (idle - idle_before) / elapsed) * (os.cpu_count() or 1) if elapsed else 0.0


def swiftresnet_version(resnet: Path) -> str:
    """`resnet --version` if it has one, and the oneDNN version its help names."""
    parts = []
    version = subprocess.run([str(resnet), "--version"], capture_output=True, text=True)
    if version.returncode == 0 and version.stdout.strip():
        parts.append(version.stdout.strip())
    usage = subprocess.run([str(resnet), "--help"], capture_output=True, text=True).stdout
    onednn = re.search(r"oneDNN\s+([0-9][0-9.]*)", usage)
    if onednn:
        parts.append(f"oneDNN {onednn.group(1).rstrip('.')}")
    return ", ".join(parts)


def torch_version() -> str:
    """PyTorch's version and the oneDNN (MKL-DNN) version it was built with."""
    onednn = re.search(r"MKL-DNN v([0-9.]+)", torch.__config__.show())
    return f"PyTorch {torch.__version__}" + (f" (oneDNN {onednn.group(1)})" if onednn else "")


def check_parameters(models: list[str], resnet: Path) -> list[str]:
    """Check both sides' parameter counts against EXPECTED_PARAMS; return one note per model.

    Exits with an error if a count differs: the comparison would not be of identical networks.
    """
    notes = []
    for name in models:
        ours_command = [str(resnet), "summary", name, "--json"]
        if name in CIFAR_MODELS:
            ours_command += ["--shortcut", "B"]
        summary = subprocess.run(ours_command, capture_output=True, text=True)
        ours = json.loads(summary.stdout)["total_params"] if summary.returncode == 0 else None
        theirs = parameter_count(build_model(name)[0])
        expected = EXPECTED_PARAMS[name]
        if theirs != expected or ours not in (expected, None):
            sys.exit(f"error: {name} parameter counts differ: expected {expected:,}, "
                     f"PyTorch {theirs:,}, SwiftResNet {ours if ours is None else f'{ours:,}'}")
        print(f"parameters {name}: PyTorch {theirs:,}, SwiftResNet "
              f"{'(resnet summary failed)' if ours is None else f'{ours:,}'}: identical", file=sys.stderr)
        notes.append(f"{name} {expected:,}")
    return notes


def timing_note(measurements: list[Measurement]) -> str:
    """How each model was timed, e.g. "resnet20 3 + 3 × 10" (warm-up steps + runs × steps)."""
    timings = {m.model: f"{m.model} {m.warmup} + {m.repeats} × {m.iterations}" for m in measurements}
    compiled = any(m.tool == "compile" for m in measurements)
    return (
        "Timing (warm-up steps + timed runs × steps per run): " + ", ".join(timings.values())
        + (f"; torch.compile warms up {COMPILE_EXTRA_WARMUP} steps more" if compiled else "")
        + ". Images/s: median of the runs."
    )


def memory_note(rows: list[Row]) -> str:
    """What the peak memory figures include, with PyTorch's own footprint before any network."""
    baselines = [
        result["baseline_rss_mib"] for row in rows for result in row.pytorch.values()
        if "baseline_rss_mib" in result
    ]
    note = "Peak MiB: the peak RSS of the process that measured (one process per measurement)"
    if baselines:
        note += (f"; PyTorch's include about {statistics.median(baselines):,.0f} MiB that Python and "
                 "`import torch` take before any network exists")
    return note + "."


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def comma_list(choices: tuple[str, ...] | None = None, kind: type = str):
    """An argparse type for a comma-separated list, optionally restricted to `choices`."""

    def parse(text: str) -> list:
        items = [kind(item) for item in text.split(",") if item]
        unknown = [item for item in items if choices is not None and item not in choices]
        if unknown or not items:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {', '.join(choices or ('values',))}, got {text!r}")
        return items

    return parse


def positive(text: str) -> int:
    """An argparse type for a positive integer."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    """The command line's options (--help lists them)."""
    parser = argparse.ArgumentParser(
        prog="benchmarks/compare-pytorch",
        description=(
            "Measure SwiftResNet (resnet bench) and PyTorch (eager, channels_last, torch.compile) "
            "on the same networks, batch sizes and thread counts, each measurement in its own "
            "process, and print one Markdown table of images/s (median of the runs) and peak "
            "memory. Without --models/--modes it measures: "
            + "; ".join(f"{m} {mode} batch {b}" for m, mode, b in DEFAULT_PLAN) + "."
        ),
    )
    parser.add_argument("--models", type=comma_list(MODELS),
                        help=f"networks, comma-separated ({','.join(MODELS)}); with --models or --modes "
                             "every chosen model runs in every chosen mode (default: the plan above)")
    parser.add_argument("--modes", type=comma_list(MODES),
                        help="train (forward, backward, SGD step) and/or eval (inference) (default: both)")
    parser.add_argument("--threads", type=comma_list(kind=positive), default=[2],
                        help="thread counts, comma-separated: one row per count (default: 2)")
    parser.add_argument("--batch-size", type=positive,
                        help="batch size of every row "
                             "(default: 128 CIFAR train, 256 CIFAR eval, 32 ImageNet)")
    parser.add_argument("--repeats", type=positive,
                        help=f"timed runs per measurement, median reported (default: {DEFAULT_REPEATS})")
    parser.add_argument("--iterations", type=positive,
                        help="steps per timed run (default: "
                             + ", ".join(f"{n} {m}" for m, n in DEFAULT_ITERATIONS.items()) + ")")
    parser.add_argument("--warmup", type=positive,
                        help=f"untimed steps first (default: {DEFAULT_WARMUP[0]} CIFAR, {DEFAULT_WARMUP[1]} "
                             f"ImageNet); torch.compile runs {COMPILE_EXTRA_WARMUP} more")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke test: {QUICK['repeats']} runs of {QUICK['iterations']} step after "
                             f"{QUICK['warmup']} warm-up (explicit --repeats/--iterations/--warmup win)")
    parser.add_argument("--bf16", action="store_true",
                        help="also measure bf16: PyTorch under CPU autocast (channels_last and compile), "
                             "SwiftResNet with --precision bf16 (n/a if it does not support it)")
    parser.add_argument("--skip-torch-modes", type=comma_list(TORCH_TOOLS), default=[],
                        help=f"PyTorch layouts not to measure, comma-separated ({','.join(TORCH_TOOLS)})")
    parser.add_argument("--resnet", type=Path, default=DEFAULT_RESNET,
                        help="the resnet binary (default: .build/release/resnet of this repository, "
                             "built with swift build -c release if missing)")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="also write every row, with raw results, as JSON lines")
    environment = parser.add_argument_group(
        "environment (read by the benchmarks/compare-pytorch wrapper)")
    environment.add_argument("--venv", metavar="PATH", default="~/.cache/swiftresnet/torch-venv",
                             help="Python virtual environment with PyTorch (default: %(default)s)")
    environment.add_argument("--install", action="store_true",
                             help="create --venv (python3 -m venv) and pip install torch from PyPI "
                                  "if it lacks torch")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one PyTorch measurement
    return parser.parse_args(argv)


def plan(args: argparse.Namespace) -> list[Measurement]:
    """Every measurement to run, in table order."""
    if args.models or args.modes:
        rows = [(model, mode, None) for model in args.models or MODELS for mode in args.modes or MODES]
    else:
        rows = list(DEFAULT_PLAN)
    precisions = ["fp32", "bf16"] if args.bf16 else ["fp32"]
    measurements = []
    for model, mode, default_batch in rows:
        cifar = model in CIFAR_MODELS
        batch = args.batch_size or default_batch or ((128 if mode == "train" else 256) if cifar else 32)
        defaults = QUICK if args.quick else {
            "warmup": DEFAULT_WARMUP[0 if cifar else 1],
            "repeats": DEFAULT_REPEATS,
            "iterations": DEFAULT_ITERATIONS[model],
        }
        timing = {
            "warmup": args.warmup or defaults["warmup"],
            "repeats": args.repeats or defaults["repeats"],
            "iterations": args.iterations or defaults["iterations"],
        }
        for threads in args.threads:
            for precision in precisions:
                tools = ["swiftresnet"] + [
                    tool for tool in (TORCH_TOOLS if precision == "fp32" else TORCH_BF16_TOOLS)
                    if tool not in args.skip_torch_modes
                ]
                measurements += [
                    Measurement(model, mode, batch, threads, tool, precision, **timing) for tool in tools
                ]
    return measurements


def ensure_binary(resnet: Path) -> None:
    """Build the default binary if it is missing; exit if an explicit --resnet is missing."""
    if resnet.exists():
        return
    if resnet != DEFAULT_RESNET:
        sys.exit(f"error: {resnet} not found")
    print(f"{resnet} missing: swift build -c release --package-path {REPO}", file=sys.stderr)
    if subprocess.run(["swift", "build", "-c", "release", "--package-path", str(REPO)]).returncode != 0:
        sys.exit("error: swift build failed")


def print_report(args: argparse.Namespace, argv: list[str], busy: float, parameters: list[str],
                 measurements: list[Measurement], rows: list[Row]) -> None:
    """Print the Markdown report: the machine and versions, the table, the command line."""
    print("## SwiftResNet vs PyTorch on the CPU\n")
    print(f"- Machine: {cpu_description()}, {platform.system()} {platform.release()}; "
          f"{busy:.1f} cores busy with other work at the start"
          f"{' (figures unreliable)' if busy > BUSY_CORES else ''}")
    print(f"- Date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"- SwiftResNet: {args.resnet} ({swiftresnet_version(args.resnet) or 'version unknown'})")
    print(f"- {torch_version()}, Python {platform.python_version()}")
    print(f"- Parameters, identical on both sides: {', '.join(parameters)}")
    print(f"- {timing_note(measurements)}")
    print(f"- {memory_note(rows)}")
    print()
    print(markdown_table(rows))
    print()
    print("Command:")
    print()
    print(f"    {shlex.join(['benchmarks/compare-pytorch', *argv])}")


def main(argv: list[str]) -> int:
    """Measure every planned configuration, then print the report; 1 if a measurement failed."""
    args = parse_arguments(argv)
    if args.worker:
        return run_worker(args.worker)

    ensure_binary(args.resnet)
    busy = busy_cores()
    if busy > BUSY_CORES:
        print(f"warning: {busy:.1f} cores busy before starting: other programs compete for the cores, "
              "figures will be unreliable (PyTorch's OpenMP threads suffer most)", file=sys.stderr)
    measurements = plan(args)
    models = list(dict.fromkeys(m.model for m in measurements))
    parameters = check_parameters(models, args.resnet)

    rows: dict[tuple, Row] = {}
    failed = False
    started = time.monotonic()
    for index, m in enumerate(measurements, 1):
        key = (m.model, m.mode, m.precision, m.batch_size, m.threads)
        row = rows.setdefault(key, Row(*key))
        print(f"[{index}/{len(measurements)}] {m.model} {m.mode} {m.precision} batch {m.batch_size} "
              f"threads {m.threads} {m.tool} ...", end=" ", file=sys.stderr, flush=True)
        clock = time.monotonic()
        result = run_measurement(m, args.resnet)
        if "error" in result:
            # Expected failures: torch.compile on this machine, and a precision SwiftResNet lacks.
            expected = m.tool == "compile" or m.precision != "fp32"
            print(f"{'not available' if expected else 'failed'}: {result['error']}", file=sys.stderr)
            failed |= not expected
        else:
            print(f"{speed(result['images_per_second'])} img/s, {result['peak_rss_mib']:,.0f} MiB "
                  f"({time.monotonic() - clock:.0f} s)", file=sys.stderr)
        for line in result.get("warnings", ()):
            print(f"    {line}", file=sys.stderr)
        if m.tool == "swiftresnet":
            row.swiftresnet = result
        else:
            row.pytorch[m.tool] = result
    print(f"done in {time.monotonic() - started:.0f} s", file=sys.stderr)

    print_report(args, argv, busy, parameters, measurements, list(rows.values()))
    if args.json:
        with args.json.open("w") as file:
            for row in rows.values():
                file.write(json.dumps(row.as_json()) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
