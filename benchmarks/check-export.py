#!/usr/bin/env python3
"""Do SwiftResNet's exports compute what SwiftResNet computes? For each network asked for:

1. make a model file with random weights and batch-norm statistics through our own CLI:
   torchvision's resnet18/resnet50 and akamaster's CIFAR resnet20 (option A) are built in torch,
   saved with torch.save and read by `resnet convert`; the other networks come from a tiny
   `resnet train` run on the shipped CIFAR-10 sample (2 iterations: a real model card with the
   normalization fitted on the data, per pixel, per channel or ZCA), whose weights are then
   randomized here (batch-norm scale, shift and statistics away from 1/0/0/1);
   in both cases the classifier is scaled so that the logits spread by about 2 (random deep
   networks saturate the softmax, which hides differences);
2. `resnet export MODEL --format onnx`: `onnx.checker.check_model(full_check=True)`, then
   onnxruntime on real image files (CIFAR-10 sample JPEGs for 32x32 networks; for 224x224
   networks sample images enlarged to photos of several sizes, JPEG and PNG, resized and
   cropped by torchvision's transform as the card says) against `resnet predict --json` on the
   same files: largest absolute probability difference, required < 1e-4; once with the whole
   batch and once image by image (dynamic batch);
3. `resnet export MODEL --format torchvision` for the networks that have a PyTorch counterpart:
   loaded with `model.load_state_dict(safetensors.torch.load_file(...))` (strict) into
   torchvision's resnetNN or an akamaster-style CIFAR ResNet, fed the card's normalization,
   against the same `resnet predict` probabilities.

    /work/venv-torch/bin/python benchmarks/check-export.py --resnet .build/release/resnet [NAME ...]

Prints one line per network and a Markdown table; exits 1 if any difference is 1e-4 or more.
The venv needs torch, numpy, Pillow, onnx, onnxruntime and safetensors (PyPI), and torchvision's
Python modules (its C++ operators are not needed: see check-torchvision-parity.py).
"""
import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np
import onnx
import onnxruntime
import safetensors.numpy
import safetensors.torch
import torch
import torch.nn as nn
from PIL import Image
from safetensors import safe_open

from torch_support import AkamasterResNet, torchvision_modules

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "data", "cifar10-sample.tar.gz")

# name -> how its model file is made: ("torchvision", depth) | ("akamaster", n) | ("train", [flags])
NETWORKS = {
    "resnet20": ("akamaster", 3),
    "resnet56": ("train", ["--recipe", "he2016"]),  # option A, per-pixel mean
    "resnet56v2": ("train", ["--shortcut", "A", "--normalization", "channel"]),
    "wrn-16-2": ("train", ["--shortcut", "B", "--normalization", "zca"]),
    "plain20": ("train", ["--normalization", "none"], {"channelOrder": "bgr"}),  # card edited: a BGR network
    "svgg": ("train", ["--normalization", "channel"]),
    "resnet18": ("torchvision", 18),
    "resnet50": ("torchvision", 50),
}


def run(args, **kw):
    result = subprocess.run(args, capture_output=True, text=True, **kw)
    if result.returncode != 0:
        raise SystemExit("failed: %s\n%s%s" % (" ".join(args), result.stdout, result.stderr))
    return result.stdout


def card_of(path):
    with safe_open(path, "np") as f:
        metadata = f.metadata() or {}
    return json.loads(metadata.get("resnet.model") or metadata["resnet.exported_model"])


def sample_images(folder):
    """One CIFAR-10 sample test JPEG per class (32x32), and six 'photos' made from them
    (enlarged to several sizes and aspect ratios, with noise; JPEG and PNG)."""
    with tarfile.open(SAMPLE) as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile() and "/test/" in m.name), key=lambda m: m.name)
        chosen, seen = [], set()
        for m in members:
            label = m.name.split("/")[-2]
            if label not in seen:
                seen.add(label)
                chosen.append(m)
        small = []
        for m in chosen:
            path = os.path.join(folder, "%s-%s" % (m.name.split("/")[-2], os.path.basename(m.name)))
            with open(path, "wb") as f:
                f.write(tar.extractfile(m).read())
            small.append(path)
    rng = np.random.default_rng(0)
    photos = []
    for k, (h, w) in enumerate([(375, 500), (500, 333), (256, 256), (224, 300), (300, 260), (480, 640)]):
        image = Image.open(small[k]).convert("RGB").resize((w, h), Image.BICUBIC)
        pixels = np.asarray(image).astype(np.int16) + rng.integers(-12, 13, size=(h, w, 3))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        path = os.path.join(folder, "photo%d.%s" % (k, "png" if k % 2 == 0 else "jpg"))
        image.save(path, quality=90) if path.endswith(".jpg") else image.save(path)
        photos.append(path)
    return small, photos


def pixels(paths, card, TF):
    """[N, C, H, W] float32 in 0..1, RGB (or gray), prepared as the card says (resize, crop)."""
    inp = card["input"]
    resize = card["preprocessing"]["resize"]
    batch = []
    for path in paths:
        image = Image.open(path).convert("L" if inp["channelOrder"] == "gray" else "RGB")
        if resize["kind"] == "shorter_side_then_center_crop":
            image = TF.center_crop(TF.resize(image, [resize["shorterSide"]], interpolation=TF.InterpolationMode.BILINEAR, antialias=True),
                                   [inp["height"], inp["width"]])
        elif image.size != (inp["width"], inp["height"]):
            image = image.resize((inp["width"], inp["height"]), Image.BILINEAR)
        x = np.asarray(image, dtype=np.float32) / 255
        batch.append(x[None] if x.ndim == 2 else x.transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(batch))


def normalized(x, card, zca=(None, None)):
    """The card's normalization in numpy (for the raw graph and the torch side; the whole ONNX
    graph does its own). ZCA needs the file's fitted mean and matrix: x - mean, times the matrix
    as stored (row-major), as SwiftResNet's loader applies it."""
    inp, norm = card["input"], card["preprocessing"]["normalization"]
    if inp["channelOrder"] == "bgr":
        x = x[:, ::-1]
    if norm["kind"] == "per_channel":
        return (x - np.array(norm["mean"], np.float32).reshape(1, -1, 1, 1)) / np.array(norm["std"], np.float32).reshape(1, -1, 1, 1)
    if norm["kind"] == "per_pixel_mean":
        return x - np.array(norm["mean"], np.float32).reshape(1, inp["channels"], inp["height"], inp["width"])
    if norm["kind"] == "none":
        return x
    if norm["kind"] == "zca" and zca[0] is not None:
        flat = (x.reshape(len(x), -1) - zca[0][None]) @ zca[1]
        return flat.reshape(x.shape).astype(np.float32)
    raise ValueError("normalization %s is not done on the torch side" % norm["kind"])


def predict(resnet, model, paths, classes):
    out = run([resnet, "predict", model] + paths + ["--top", str(classes), "--json"])
    got = np.zeros((len(paths), classes), np.float64)
    for k, result in enumerate(json.loads(out)):
        for p in result["predictions"]:
            got[k, p["index"]] = p["probability"]
    return got


def scale_torch_classifier(model, batch, classifier):
    with torch.no_grad():
        spread = float(model(batch).std())
        classifier.weight.mul_(2 / spread)
        classifier.bias.mul_(2 / spread)


def randomize_bn(model):
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)


def make_model(resnet, name, how, folder, images, TF):
    """A model file with random weights for `name`; returns its path."""
    kind, arg = how[:2]
    path = os.path.join(folder, name + ".safetensors")
    if kind in ("torchvision", "akamaster"):
        torch.manual_seed(1)
        vision, _ = torchvision_modules()
        model = getattr(vision, name)() if kind == "torchvision" else AkamasterResNet(arg)
        randomize_bn(model)
        model.eval()
        card = {"input": {"channels": 3, "height": 224 if kind == "torchvision" else 32, "width": 224 if kind == "torchvision" else 32,
                          "channelOrder": "rgb"},
                "preprocessing": {"resize": {"kind": "shorter_side_then_center_crop", "shorterSide": 256} if kind == "torchvision" else {"kind": "stretch"},
                                  "normalization": {"kind": "per_channel", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}}
        batch = torch.from_numpy(normalized(pixels(images, card, TF), card))
        scale_torch_classifier(model, batch, model.fc if kind == "torchvision" else model.linear)
        weights = os.path.join(folder, name + ".pth")
        torch.save(model.state_dict(), weights)
        run([resnet, "convert", weights, "--model", name, "--out", path])
        return path
    # A tiny training run gives a real card (normalization fitted on the sample); then random weights.
    run_dir = os.path.join(folder, "run-" + name)
    run([resnet, "train", "--model", name, "--data", SAMPLE, "--iterations", "2", "--batch-size", "16", "--validation", "100",
         "--skip-test", "--precision", "fp32", "--run-dir", run_dir] + arg)
    trained = os.path.join(run_dir, "best.safetensors")
    with safe_open(trained, "np") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys() if not k.startswith("optimizer/")}
    rng = np.random.default_rng(2)
    for key, value in tensors.items():
        ranges = {"scale": (0.5, 1.5), "shift": (-0.1, 0.1), "runningMean": (-0.1, 0.1), "runningVariance": (0.5, 1.5)}
        field = key.rsplit(".", 1)[-1]
        if field in ranges and not key.startswith("preprocessing/"):
            tensors[key] = rng.uniform(*ranges[field], size=value.shape).astype(np.float32)
    metadata = {k: v for k, v in metadata.items() if k == "resnet.model"}
    if len(how) > 2:
        card = json.loads(metadata["resnet.model"])
        card["input"].update(how[2])
        metadata["resnet.model"] = json.dumps(card)
    safetensors.numpy.save_file(tensors, path, metadata=metadata)
    # Scale the classifier so that the logits spread by about 2 (measured with the raw ONNX graph).
    raw = os.path.join(folder, name + "-raw.onnx")
    run([resnet, "export", path, "--format", "onnx", "--raw", "--out", raw])
    card = card_of(path)
    x = pixels(images, card, TF)
    zca = (tensors.get("preprocessing/zca.mean"), tensors.get("preprocessing/zca.matrix"))
    logits = onnxruntime.InferenceSession(raw, providers=["CPUExecutionProvider"]).run(None, {"input": normalized(x, card, zca)})[0]
    spread = float(logits.std())
    classifier = "fc2" if name == "svgg" else "fc"
    for suffix in ("weight", "bias"):
        tensors["%s.%s" % (classifier, suffix)] = (tensors["%s.%s" % (classifier, suffix)] * (2 / spread)).astype(np.float32)
    safetensors.numpy.save_file(tensors, path, metadata=metadata)
    return path


def check(resnet, name, how, folder, small, photos, TF):
    t0 = time.time()
    model = make_model(resnet, name, how, folder, photos if how[0] == "torchvision" else small, TF)
    card = card_of(model)
    images = photos if card["input"]["height"] == 224 else small
    classes = len(card["classNames"])
    expected = predict(resnet, model, images, classes)

    exported = os.path.join(folder, name + ".onnx")
    run([resnet, "export", model, "--format", "onnx", "--out", exported])
    onnx.checker.check_model(exported, full_check=True)
    proto = onnx.load(exported)
    assert proto.opset_import[0].version == 17 and proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    metadata = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(metadata["resnet.model"])["architecture"]["name"] == name
    assert json.loads(metadata["resnet.classes"]) == card["classNames"]
    session = onnxruntime.InferenceSession(exported, providers=["CPUExecutionProvider"])
    x = pixels(images, card, TF)
    batch = session.run(["probabilities"], {"image": x})[0]
    single = np.concatenate([session.run(["probabilities"], {"image": x[k:k + 1]})[0] for k in range(len(images))])
    onnx_difference = float(max(np.abs(batch - expected).max(), np.abs(single - expected).max()))
    # Near-saturated rows hide differences in small probabilities: their logarithms show them.
    onnx_log_difference = float(np.abs(np.log(np.maximum(batch, 1e-30)) - np.log(np.maximum(expected, 1e-30))).max())

    torch_difference, counterpart = None, "-"
    if how[0] in ("torchvision", "akamaster") or (card["architecture"]["options"]["shortcut"] == "A" and name.startswith("resnet")
                                                   and not name.endswith("v2")):
        weights = os.path.join(folder, name + "-torch.safetensors")
        run([resnet, "export", model, "--format", "torchvision", "--out", weights])
        if card["input"]["height"] == 224:
            vision, _ = torchvision_modules()
            net, counterpart = getattr(vision, name)(num_classes=classes), "torchvision `%s`" % name
        else:
            depth = int(name[len("resnet"):])
            net, counterpart = AkamasterResNet((depth - 2) // 6, classes), "akamaster `resnet%d`" % depth
        net.load_state_dict(safetensors.torch.load_file(weights))  # strict
        net.eval()
        with torch.no_grad():
            p = torch.softmax(net(torch.from_numpy(np.ascontiguousarray(normalized(x, card)))), dim=1).double().numpy()
        torch_difference = float(np.abs(p - expected).max())
    norm = card["preprocessing"]["normalization"]["kind"]
    row = dict(name=name, shortcut=card["architecture"]["options"]["shortcut"] if not name.startswith(("svgg", "plain")) else "-",
               input="%dx%d" % (card["input"]["height"], card["input"]["width"]), normalization=norm, images=len(images),
               onnx=onnx_difference, onnx_log=onnx_log_difference, order=card["input"]["channelOrder"], torch=torch_difference, counterpart=counterpart, largest=float(expected.max()),
               size=os.path.getsize(exported), seconds=time.time() - t0)
    print("%s: ONNX %.3g (log-probability %.3g), PyTorch names %s, largest probability %.3f, %.0f s"
          % (name, onnx_difference, onnx_log_difference, "-" if torch_difference is None else "%.3g" % torch_difference,
             row["largest"], row["seconds"]), flush=True)
    return row


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--resnet", required=True, help="the resnet binary")
    ap.add_argument("--keep", help="keep the files in this folder")
    ap.add_argument("networks", nargs="*", default=list(NETWORKS))
    args = ap.parse_args()
    _, TF = torchvision_modules()
    resnet = os.path.abspath(args.resnet)
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.keep or temporary
        os.makedirs(folder, exist_ok=True)
        small, photos = sample_images(folder)
        rows = [check(resnet, name, NETWORKS[name], folder, small, photos, TF) for name in args.networks]
    print("\n| network | shortcut | input | normalization (in the graph) | images | ONNX (onnxruntime) vs `resnet predict` | same, log-probabilities | PyTorch names: network | PyTorch vs `resnet predict` | largest probability |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        torch_cell = "%.1e" % r["torch"] if r["torch"] is not None else "-"
        print("| %s | %s | %s %s | %s | %d | %.1e | %.1e | %s | %s | %.3f |" % (
            r["name"], r["shortcut"], r["input"], r["order"].upper(), r["normalization"], r["images"], r["onnx"], r["onnx_log"],
            r["counterpart"], torch_cell, r["largest"]))
    print("\nlargest absolute probability differences; onnx %s, onnxruntime %s, torch %s, numpy %s, Pillow %s"
          % (onnx.__version__, onnxruntime.__version__, torch.__version__, np.__version__, Image.__version__))
    worst = max(max(r["onnx"], r["torch"] or 0) for r in rows)
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
