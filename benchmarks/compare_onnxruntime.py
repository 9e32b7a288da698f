"""Compare SwiftResNet's inference speed with onnxruntime's (and PyTorch's) on this CPU.

Each row is one network, batch size and thread count, measured in processes of their own:

- SwiftResNet: `resnet bench MODEL --mode eval` (batch norm folded into the convolutions);
- onnxruntime: the same network written in PyTorch (compare_pytorch.py's definitions, parameter
  counts checked against SwiftResNet's), exported with `torch.onnx.export` (opset 17, dynamic
  batch; the TorchScript exporter), run by an `InferenceSession` on the CPU execution provider
  with `intra_op_num_threads` = the row's threads, one inter-op thread, every graph optimization;
- PyTorch eager (NCHW) and channels_last, `torch.inference_mode()`.

With `--precision int8`, SwiftResNet runs `resnet bench --precision int8` (8-bit convolutions,
scales measured on the random input images) and onnxruntime runs both the fp32 export and its
own 8-bit version of it (`onnxruntime.quantization.quantize_static`: QDQ format, uint8
activations, int8 weights per channel, MinMax ranges over 16 random images): the tool an
onnxruntime user would quantize with. PyTorch is not run then.

Throughput is the median of several timed runs; at batch 1 the table also gives the latency
percentiles p50/p99 of single steps (one image in, probabilities out) and each process's peak
resident memory. The result is one Markdown table with the machine and the command.

    benchmarks/compare-onnxruntime --venv /work/venv-torch [--models resnet20,resnet18] [--batches 1,8,32] [--threads 1,2]

The venv needs torch, onnx and onnxruntime (PyPI). Pause other work on the machine first.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_pytorch as cp  # noqa: E402  (the network definitions and the machine helpers)

MODELS = ("resnet20", "resnet56", "resnet18", "resnet50")
CACHE = Path.home() / ".cache" / "swiftresnet" / "onnx"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile, as `resnet bench` computes it."""
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, int(-(-q * len(ordered) // 1)) - 1))
    return ordered[rank]


def exported(model: str) -> Path:
    """The network as an ONNX file (made once, cached): random weights and BN statistics."""
    import torch

    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{model}-opset17.onnx"
    if path.exists():
        return path
    torch.manual_seed(0)
    network, (c, h, w), _ = cp.build_model(model)
    network.eval()
    temporary = path.with_suffix(".partial")
    torch.onnx.export(network, (torch.randn(1, c, h, w),), str(temporary), opset_version=17, dynamo=False,
                      input_names=["images"], output_names=["logits"],
                      dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
    temporary.rename(path)
    return path


def quantized(model: str) -> Path:
    """onnxruntime's own 8-bit version of the exported network (made once, cached)."""
    import numpy as np
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    path = CACHE / f"{model}-opset17-int8.onnx"
    if path.exists():
        return path
    _, (c, h, w), _ = cp.build_model(model)

    class RandomImages(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(2)
            self.batches = iter([{"images": rng.standard_normal((1, c, h, w), dtype=np.float32)} for _ in range(16)])

        def get_next(self):
            return next(self.batches, None)

    temporary = path.with_suffix(".partial")
    quantize_static(str(exported(model)), str(temporary), RandomImages(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    temporary.rename(path)
    return path


def measure_onnxruntime(spec: dict) -> dict:
    """Time one row with onnxruntime in this process."""
    import numpy as np
    import onnxruntime as ort

    baseline = cp.peak_rss_mib()
    options = ort.SessionOptions()
    options.intra_op_num_threads = spec["threads"]
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(spec["path"], options, providers=["CPUExecutionProvider"])
    _, (c, h, w), _ = cp.build_model(spec["model"])
    images = np.random.default_rng(1).standard_normal((spec["batch_size"], c, h, w), dtype=np.float32)
    feed = {"images": images}
    for _ in range(spec["warmup"]):
        session.run(None, feed)
    runs, steps = [], []
    for _ in range(spec["repeats"]):
        start = previous = time.perf_counter()
        for _ in range(spec["iterations"]):
            session.run(None, feed)
            now = time.perf_counter()
            steps.append(now - previous)
            previous = now
        runs.append(spec["batch_size"] * spec["iterations"] / (previous - start))
    return {"images_per_second": statistics.median(runs), "runs": runs, "peak_rss_mib": cp.peak_rss_mib(),
            "baseline_rss_mib": baseline, "step_ms_p50": percentile(steps, 0.5) * 1000,
            "step_ms_p99": percentile(steps, 0.99) * 1000, "onnxruntime": ort.__version__}


def measure_torch_latency(spec: dict) -> dict:
    """compare_pytorch's eval measurement, plus step percentiles at this batch size."""
    import torch

    m = cp.Measurement(**spec)
    result = cp.measure_torch(m)
    # Step percentiles in a second pass (measure_torch times whole runs only).
    network, (c, h, w), _ = cp.build_model(m.model)
    network.eval()
    images = torch.randn(m.batch_size, c, h, w)
    if m.tool == "channels_last":
        network = network.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    steps = []
    with torch.inference_mode():
        for _ in range(m.warmup):
            network(images)
        for _ in range(m.repeats * m.iterations):
            start = time.perf_counter()
            network(images)
            steps.append(time.perf_counter() - start)
    return {**result, "step_ms_p50": percentile(steps, 0.5) * 1000, "step_ms_p99": percentile(steps, 0.99) * 1000}


def child(kind: str, spec: dict) -> dict:
    """Run one measurement in a process of its own; {"error": ...} if it failed."""
    command = [sys.executable, __file__, "--worker", kind, json.dumps(spec)]
    process = subprocess.run(command, capture_output=True, text=True)
    try:
        return json.loads(cp.last_line(process.stdout))
    except json.JSONDecodeError:
        return {"error": cp.last_line(process.stderr) or "no output"}


def swiftresnet(resnet: Path, model: str, batch: int, threads: int, a: argparse.Namespace) -> dict:
    command = [str(resnet), "bench", model, "--mode", "eval", "--batch-size", str(batch), "--threads", str(threads),
               "--json", "--repeats", str(a.repeats), "--iterations", str(iterations(a, batch)), "--warmup", str(a.warmup),
               "--precision", a.precision]
    if model in cp.CIFAR_MODELS:
        command += ["--shortcut", "B"]
    process = subprocess.run(command, capture_output=True, text=True)
    try:
        return json.loads(cp.last_line(process.stdout))
    except json.JSONDecodeError:
        return {"error": cp.last_line(process.stderr) or "no output"}


def iterations(a: argparse.Namespace, batch: int) -> int:
    """Steps per timed run: more for small batches, so that a run lasts long enough."""
    return a.iterations if batch > 1 else a.iterations * 4


def speed(result: dict) -> str:
    if "error" in result:
        return "failed"
    return f"{result['images_per_second']:,.1f}"


def latency(result: dict) -> str:
    if "error" in result or "step_ms_p50" not in result:
        return "-"
    return f"{result['step_ms_p50']:.2f} / {result['step_ms_p99']:.2f}"


def main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "--worker":
        kind, spec = argv[1], json.loads(argv[2])
        result = measure_onnxruntime(spec) if kind == "onnxruntime" else measure_torch_latency(spec)
        print(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(description="SwiftResNet vs onnxruntime (and PyTorch) inference speed.")
    parser.add_argument("--resnet", type=Path, default=cp.DEFAULT_RESNET)
    parser.add_argument("--models", type=cp.comma_list(MODELS), default=list(MODELS))
    parser.add_argument("--batches", type=cp.comma_list(kind=int), default=None,
                        help="batch sizes (default: 1, 8 and 256 for 32x32 networks, 1, 8 and 32 for 224x224)")
    parser.add_argument("--threads", type=cp.comma_list(kind=int), default=[1, 2])
    parser.add_argument("--repeats", type=cp.positive, default=5)
    parser.add_argument("--iterations", type=cp.positive, default=10)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch columns")
    parser.add_argument("--precision", choices=("fp32", "int8"), default="fp32",
                        help="int8: SwiftResNet in 8-bit integers against onnxruntime fp32 and onnxruntime's static int8")
    parser.add_argument("--venv", help=argparse.SUPPRESS)  # read by the wrapper
    a = parser.parse_args(argv)
    cp.ensure_binary(a.resnet)
    busy = cp.busy_cores()
    cp.check_parameters(a.models, a.resnet)
    rows = []
    int8 = a.precision == "int8"
    for model in a.models:
        path = exported(model)
        int8_path = quantized(model) if int8 else None
        batches = a.batches or ([1, 8, 256] if model in cp.CIFAR_MODELS else [1, 8, 32])
        for batch in batches:
            for threads in a.threads:
                print(f"{model} batch {batch} threads {threads}", file=sys.stderr)
                ours = swiftresnet(a.resnet, model, batch, threads, a)
                spec = {"model": model, "batch_size": batch, "threads": threads, "path": str(path),
                        "repeats": a.repeats, "iterations": iterations(a, batch), "warmup": a.warmup}
                ort_result = child("onnxruntime", spec)
                torch_results = {}
                if int8:
                    torch_results["int8"] = child("onnxruntime", {**spec, "path": str(int8_path)})
                elif not a.no_torch:
                    for tool in ("eager", "channels_last"):
                        torch_results[tool] = child("torch", {
                            "model": model, "mode": "eval", "batch_size": batch, "threads": threads, "tool": tool,
                            "precision": "fp32", "warmup": a.warmup, "repeats": a.repeats, "iterations": iterations(a, batch)})
                rows.append((model, batch, threads, ours, ort_result, torch_results))
    print(f"Machine: {cp.cpu_description()}; {datetime.date.today().isoformat()}; other load at start: {busy:.1f} cores busy")
    print(f"SwiftResNet: {cp.swiftresnet_version(a.resnet)}; onnxruntime "
          f"{next((r[4].get('onnxruntime') for r in rows if 'onnxruntime' in r[4]), '?')}; {cp.torch_version()}")
    print()
    if int8:
        print("| model | batch | threads | SwiftResNet int8 img/s | onnxruntime fp32 img/s | ratio | onnxruntime int8 img/s | ratio "
              "| p50/p99 ms SwiftResNet | p50/p99 ms onnxruntime int8 | peak RSS MiB ours / ort int8 |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for model, batch, threads, ours, ort_result, others in rows:
            quantized_result = others["int8"]
            def ratio(theirs: dict) -> str:
                return "-" if "error" in ours or "error" in theirs else f"{ours['images_per_second'] / theirs['images_per_second']:.2f}x"
            rss = f"{ours.get('peak_rss_mib', 0):.0f} / {quantized_result.get('peak_rss_mib', 0):.0f}"
            print(f"| {model} | {batch} | {threads} | {speed(ours)} | {speed(ort_result)} | {ratio(ort_result)} "
                  f"| {speed(quantized_result)} | {ratio(quantized_result)} "
                  f"| {latency(ours) if batch == 1 else '-'} | {latency(quantized_result) if batch == 1 else '-'} | {rss} |")
        print()
        print("Command: `benchmarks/compare-onnxruntime " + " ".join(shlex.quote(x) for x in argv) + "`")
        return 0
    print("| model | batch | threads | SwiftResNet img/s | onnxruntime img/s | ratio | PyTorch eager | channels_last "
          "| p50/p99 ms SwiftResNet | p50/p99 ms onnxruntime | peak RSS MiB ours / ort |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for model, batch, threads, ours, ort_result, torch_results in rows:
        ratio = "-"
        if "error" not in ours and "error" not in ort_result:
            ratio = f"{ours['images_per_second'] / ort_result['images_per_second']:.2f}x"
        rss = f"{ours.get('peak_rss_mib', 0):.0f} / {ort_result.get('peak_rss_mib', 0):.0f}"
        torch_cells = [speed(torch_results[t]) if t in torch_results else "-" for t in ("eager", "channels_last")]
        print(f"| {model} | {batch} | {threads} | {speed(ours)} | {speed(ort_result)} | {ratio} | {' | '.join(torch_cells)} "
              f"| {latency(ours) if batch == 1 else '-'} | {latency(ort_result) if batch == 1 else '-'} | {rss} |")
    print()
    print("Command: `benchmarks/compare-onnxruntime " + " ".join(shlex.quote(x) for x in argv) + "`")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
