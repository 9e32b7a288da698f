#!/usr/bin/env python3
"""Robustness harness for the release `resnet` binary.

Drives the binary through thousands of bad inputs (mutated model files, bad images, absurd
options, hostile run files, edited run directories) and checks that every run ends in one of
two ways:

  * exit code 0 with sane output (e.g. `predict --json` probabilities finite, in [0, 1],
    summing to ~1), or
  * exit code 1 with stderr whose last non-empty line starts with `Error:`, and exactly one
    line starting with `Error:`.

Family 6 kills training runs with SIGKILL at random moments (checkpoint writes included),
resumes them until they finish, and checks that their weights and optimizer buffers are bitwise
those of an uninterrupted run and that no temporary file is left behind.

Family 7 exports the fixture model in every format (`resnet export --format
safetensors|onnx|torchvision`, `--raw`) and drives the exporter through bad options, bad models
and models without a PyTorch counterpart: a valid export must write exactly its file; a refused
one must leave nothing in the output folder (neither the file nor a temporary).

A signal, a hang (per-case timeout), any other exit code, or exit 0 with garbage is a failure.

Usage:
  scripts/release-robustness.py --resnet .build/release/resnet [--cases N] [--seed S]
                                [--workdir DIR] [--jobs 2] [--timeout 20]

Python 3 standard library only. Everything is written under a temporary directory that is
removed at the end (pass --keep to keep it). Prints one line per failing case and finally
`N passed, M failed` (plus `, K skipped`); exits 1 if anything failed.
"""

import argparse
import copy
import json
import math
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

JPEG_DIR = "/work/data/cifar10/cifar-10-jpeg/test"
CLASSES = ["blue", "green", "red"]
COLORS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}


# ----------------------------------------------------------------------------------------------
# Fixtures


def png_bytes(width, height, rows, color_type=2, bit_depth=8, interlace=0, extra_chunks=()):
    """A PNG file: `rows` are the raw scanlines (without filter bytes)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + r for r in rows)
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, interlace)
    body = chunk(b"IHDR", ihdr)
    for kind, data in extra_chunks:
        body += chunk(kind, data)
    return b"\x89PNG\r\n\x1a\n" + body + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def noise_png(rng, w, h, base=(128, 128, 128), spread=60):
    rows = [bytes(max(0, min(255, v + rng.randint(-spread, spread))) for _ in range(w) for v in base) for _ in range(h)]
    return png_bytes(w, h, rows)


def make_dataset(root, rng, train=30, test=10, side=16):
    for split, n in (("train", train), ("test", test)):
        for name in CLASSES:
            d = os.path.join(root, split, name)
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                with open(os.path.join(d, "%03d.png" % i), "wb") as f:
                    f.write(noise_png(rng, side, side, COLORS[name], 40))


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    return data, n, header


def write_safetensors(path, header, payload, raw_header=None):
    text = raw_header if raw_header is not None else json.dumps(header, separators=(",", ":")).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + payload)


# ----------------------------------------------------------------------------------------------
# Output checks (for exit code 0)


def finite01(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and 0 <= x <= 1


def check_predict_json(expect_files=None):
    def check(stdout):
        try:
            results = json.loads(stdout)
        except Exception as e:  # noqa: BLE001
            return "stdout is not JSON (%s)" % str(e)[:80]
        if not isinstance(results, list) or not results:
            return "JSON is not a non-empty array"
        if expect_files is not None and len(results) != expect_files:
            return "%d results for %d images" % (len(results), expect_files)
        for r in results:
            preds = r.get("predictions") if isinstance(r, dict) else None
            if not isinstance(preds, list) or not preds:
                return "a result without predictions"
            total = 0.0
            for p in preds:
                prob = p.get("probability") if isinstance(p, dict) else None
                if not finite01(prob):
                    return "probability %r is not a finite number in [0,1]" % (prob,)
                if not isinstance(p.get("index"), int) or p["index"] < 0:
                    return "bad class index %r" % (p.get("index"),)
                total += prob
            # --top is larger than any class count we make, so every class is listed.
            if abs(total - 1) > 1e-3:
                return "probabilities sum to %r, not 1" % total
        return None

    return check


def check_evaluate_json(stdout):
    try:
        r = json.loads(stdout)
    except Exception as e:  # noqa: BLE001
        return "stdout is not JSON (%s)" % str(e)[:80]
    if not isinstance(r, dict):
        return "JSON is not an object"
    for key in ("top1", "top5"):
        if not finite01(r.get(key)):
            return "%s = %r is not a finite fraction" % (key, r.get(key))
    loss = r.get("loss")
    if not (isinstance(loss, (int, float)) and math.isfinite(loss) and loss >= 0):
        return "loss = %r is not finite and >= 0" % (loss,)
    return None


def check_summary_json(stdout):
    try:
        json.loads(stdout)
    except Exception as e:  # noqa: BLE001
        return "stdout is not JSON (%s)" % str(e)[:80]
    return None


# ----------------------------------------------------------------------------------------------
# Cases


class Case:
    __slots__ = ("family", "name", "argv", "check", "must_fail", "must_succeed", "prepare", "cleanup", "timeout", "skip")

    def __init__(self, family, name, argv, check=None, must_fail=False, must_succeed=False, prepare=None,
                 cleanup=(), timeout=None):
        self.family = family
        self.name = name
        self.argv = argv
        self.check = check
        self.must_fail = must_fail
        self.must_succeed = must_succeed
        self.prepare = prepare
        self.cleanup = list(cleanup)
        self.timeout = timeout
        self.skip = None


class Harness:
    def __init__(self, args, work):
        self.args = args
        self.resnet = os.path.abspath(args.resnet)
        self.work = work
        self.rng = random.Random(args.seed)
        self.cases = []
        self.notes = []
        self.counter = 0
        self.lock = threading.Lock()
        self.env = dict(os.environ)
        self.env["RESNET_THREADS"] = "1"
        self.env.pop("RESNET_DATA", None)
        self.env["XDG_CACHE_HOME"] = os.path.join(work, "cache")
        self.env["HOME"] = os.path.join(work, "home")
        # A crash must fail its case at once. With Swift's backtracer on, the crashed process
        # waits while swift-backtrace symbolicates it; the backtracer outlived a killed process
        # and held run_raw's pipe for ~20 minutes (b158436's first version, 2026-12-02). The
        # case still reports the signal and the runtime's "Fatal error" line; rerun it by hand
        # for the backtrace.
        self.env["SWIFT_BACKTRACE"] = "enable=no"
        os.makedirs(self.env["HOME"], exist_ok=True)
        self.prlimit = shutil.which("prlimit")

    # -- helpers

    def path(self, name):
        with self.lock:
            self.counter += 1
            n = self.counter
        return os.path.join(self.work, "cases", "%05d-%s" % (n, name))

    def add(self, case):
        self.cases.append(case)

    def run_raw(self, argv, timeout=120):
        p = subprocess.run([self.resnet] + argv, stdin=subprocess.DEVNULL, capture_output=True, env=self.env,
                           cwd=self.work, timeout=timeout)
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")

    # -- fixtures

    def make_fixtures(self):
        a = self.args
        self.data = os.path.join(self.work, "data")
        make_dataset(self.data, random.Random(a.seed))
        os.makedirs(os.path.join(self.work, "cases"), exist_ok=True)
        self.img = os.path.join(self.data, "test", "red", "000.png")
        self.test_images = sorted(os.path.join(self.data, "test", c, f) for c in CLASSES
                                  for f in os.listdir(os.path.join(self.data, "test", c)))
        self.run = os.path.join(self.work, "run")
        train = ["train", "--model", "resnet8", "--dataset", "folder", "--data", self.data, "--iterations", "4",
                 "--batch-size", "16", "--validation", "12", "--run-dir", self.run, "--skip-test", "--seed", "0"]
        rc, out, err = self.run_raw(train, timeout=300)
        if rc != 0 or not os.path.exists(os.path.join(self.run, "best.safetensors")):
            print("FATAL: training the fixture model failed (exit %d): %s" % (rc, last_line(err)), flush=True)
            return False
        self.model = os.path.join(self.work, "model.safetensors")
        rc, out, err = self.run_raw(["export", self.run, "--out", self.model])
        if rc != 0 or not os.path.exists(self.model):
            self.notes.append("note: `resnet export` failed (exit %d: %s); using RUN/best.safetensors as the model"
                              % (rc, last_line(err)))
            self.export_failed = (rc, last_line(err))
            self.model = os.path.join(self.run, "best.safetensors")
        else:
            self.export_failed = None
        self.checkpoint = os.path.join(self.run, "best.safetensors")
        self.model_bytes, self.model_n, self.model_header = read_safetensors(self.model)
        self.ckpt_bytes, self.ckpt_n, self.ckpt_header = read_safetensors(self.checkpoint)
        # A bigger PNG for truncations, and special PNGs.
        self.big_png = noise_png(random.Random(1), 48, 40)
        self.jpegs = []
        if os.path.isdir(JPEG_DIR):
            for sub in sorted(os.listdir(JPEG_DIR))[:3]:
                d = os.path.join(JPEG_DIR, sub)
                if os.path.isdir(d):
                    files = sorted(f for f in os.listdir(d) if f.lower().endswith((".jpg", ".jpeg")))[:2]
                    self.jpegs += [os.path.join(d, f) for f in files]
        if not self.jpegs:
            self.notes.append("note: %s not found: JPEG cases skipped" % JPEG_DIR)
        return True

    # -- family 0: baselines (the valid inputs must work, or every mutation test is meaningless)

    def baselines(self):
        f = "0-baseline"
        self.add(Case(f, "predict valid model", ["predict", self.model] + self.test_images[:5] + ["--json", "--top", "1000"],
                      check=check_predict_json(5), must_succeed=True))
        self.add(Case(f, "predict checkpoint", ["predict", self.checkpoint, self.img, "--json", "--top", "1000"],
                      check=check_predict_json(1), must_succeed=True))
        self.add(Case(f, "predict run dir", ["predict", self.run, self.img, "--json", "--top", "1000"],
                      check=check_predict_json(1), must_succeed=True))
        self.add(Case(f, "evaluate valid model", ["evaluate", self.model, "--dataset", "folder", "--data", self.data, "--json"],
                      check=check_evaluate_json, must_succeed=True))
        if self.export_failed:
            rc, line = self.export_failed
            self.add(Case(f, "export run", ["export", self.run, "--out", os.path.join(self.work, "model2.safetensors")],
                          must_succeed=True))
        for j in self.jpegs[:2]:
            self.add(Case(f, "predict jpeg", ["predict", self.model, j, "--json", "--top", "1000"],
                          check=check_predict_json(1), must_succeed=True))

    # -- family 1: mutated model files

    def model_case(self, name, make, must_fail=False, evaluate=False, source="model"):
        """`make(path)` writes the mutated file."""
        f = "1-model-file"
        p = self.path(name.replace(" ", "_")[:40] + ".safetensors")
        if evaluate:
            argv = ["evaluate", p, "--dataset", "folder", "--data", self.data, "--json", "--batch-size", "64"]
            check = check_evaluate_json
        else:
            argv = ["predict", p, self.img, "--json", "--top", "1000"]
            check = check_predict_json(1)
        self.add(Case(f, name + (" [evaluate]" if evaluate else ""), argv, check=check, must_fail=must_fail,
                      prepare=make_writer(p, make), cleanup=[p]))

    def family_model(self, budget):
        rng = self.rng
        data, n, header = self.model_bytes, self.model_n, self.model_header
        payload = data[8 + n:]
        tensors = [k for k in header if k != "__metadata__"]
        data_end = max(header[k]["data_offsets"][1] for k in tensors)
        full = 8 + n + data_end

        def raw(b):
            return lambda p: write_bytes(p, b)

        def structured(hdr, pay=payload, raw_header=None):
            return lambda p: write_safetensors(p, hdr, pay, raw_header)

        # Structured edits of the header (each also through evaluate).
        edits = []
        for t in rng.sample(tensors, min(6, len(tensors))):
            h = copy.deepcopy(header)
            shape = h[t]["shape"]
            if shape:
                shape[rng.randrange(len(shape))] += rng.choice([1, -1, 7])
            edits.append(("shape of %s changed" % t, structured(h), True))
            h = copy.deepcopy(header)
            h[t]["shape"] = [0] if rng.random() < 0.5 else [2 ** 62, 2 ** 62]
            edits.append(("shape of %s %s" % (t, h[t]["shape"]), structured(h), True))
            h = copy.deepcopy(header)
            h[t]["shape"] = [-1] + h[t]["shape"][1:]
            edits.append(("negative shape of %s" % t, structured(h), True))
            h = copy.deepcopy(header)
            del h[t]
            edits.append(("tensor %s deleted" % t, structured(h), True))
            h = copy.deepcopy(header)
            h[t]["dtype"] = rng.choice(["F16", "BF16", "F64", "I64", "U8", "BOOL", "XYZ", ""])
            edits.append(("dtype of %s = %s" % (t, h[t]["dtype"]), structured(h), True))
            h = copy.deepcopy(header)
            b, e = h[t]["data_offsets"]
            for v in (["offsets reversed", [e, b]], ["offsets past end", [b + 10 ** 9, e + 10 ** 9]],
                      ["offsets huge", [2 ** 63, 2 ** 64 - 1]], ["offsets negative", [-4, e]],
                      ["offsets overlap", [max(0, b - 4), e - 4]], ["offsets not numbers", ["a", None]]):
                hh = copy.deepcopy(header)
                hh[t]["data_offsets"] = v[1]
                edits.append(("%s of %s" % (v[0], t), structured(hh), True))
        for _ in range(4):
            h = copy.deepcopy(header)
            a, b = rng.sample(tensors, 2)
            h[a]["data_offsets"], h[b]["data_offsets"] = h[b]["data_offsets"], h[a]["data_offsets"]
            same = header[a]["shape"] == header[b]["shape"]
            edits.append(("offsets of %s and %s swapped" % (a, b), structured(h), not same and
                          header[a]["data_offsets"][1] - header[a]["data_offsets"][0] != header[b]["data_offsets"][1] - header[b]["data_offsets"][0]))
        # Duplicate keys, written by hand.
        text = json.dumps(header, separators=(",", ":"))
        for t in rng.sample(tensors, 3):
            entry = json.dumps(header[t], separators=(",", ":"))
            other = json.dumps(dict(header[t], shape=[1]), separators=(",", ":"))
            dup = text[:-1] + ",%s:%s}" % (json.dumps(t), other)
            edits.append(("duplicate key %s" % t, structured(None, raw_header=dup.encode()), False))
            dup2 = "{%s:%s," % (json.dumps(t), entry) + text[1:]
            edits.append(("duplicate key %s (same value)" % t, structured(None, raw_header=dup2.encode()), False))
        meta_dup = text[:-1] + ',"__metadata__":{"resnet.model":"{}"}}'
        edits.append(("duplicate __metadata__", structured(None, raw_header=meta_dup.encode()), False))
        # Added tensors.
        for name, entry in (("extra.weight", {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}),
                            ("fc.weight2", {"dtype": "F32", "shape": [2 ** 31, 2 ** 31], "data_offsets": [0, 16]}),
                            ("__metadata2__", {"dtype": "F32", "shape": [], "data_offsets": [0, 4]})):
            h = copy.deepcopy(header)
            h[name] = entry
            edits.append(("unexpected tensor %s" % name, structured(h), False))
        # Metadata of the wrong types.
        for desc, meta in (("metadata not an object", [1, 2]), ("metadata value a number", {"resnet.model": 5}),
                           ("metadata missing", None), ("card empty string", {"resnet.model": ""}),
                           ("card is 'null'", {"resnet.model": "null"}), ("card is a JSON array", {"resnet.model": "[]"})):
            h = copy.deepcopy(header)
            if meta is None:
                h.pop("__metadata__", None)
            else:
                h["__metadata__"] = meta
            edits.append((desc, structured(h), True))
        h = copy.deepcopy(header)
        h["__metadata__"] = dict(h.get("__metadata__", {}))
        h["__metadata__"]["junk"] = "x" * 100000
        edits.append(("large extra metadata", structured(h), False))
        # Header length edge cases.
        for desc, ln in (("header length 0", 0), ("header length 2**63", 2 ** 63), ("header length 2**64-1", 2 ** 64 - 1),
                         ("header length past file", len(data)), ("header length one short", n - 1),
                         ("header length 100MB", 100 * 2 ** 20)):
            edits.append((desc, raw(struct.pack("<Q", ln) + data[8:]), True))
        edits.append(("header padded with spaces", raw(struct.pack("<Q", n + 8) + data[8:8 + n] + b" " * 8 + payload), False))
        edits.append(("header not UTF-8", raw(struct.pack("<Q", n) + b"\xff\xfe" + data[10:]), True))
        edits.append(("trailing garbage after data", raw(data + os.urandom(17)), False))
        # NaN / Inf / huge values in the data.
        for t in rng.sample(tensors, min(8, len(tensors))) + ["fc.weight", "fc.bias"]:
            if t not in header:
                continue
            b, e = header[t]["data_offsets"]
            if header[t]["dtype"] != "F32" or e <= b:
                continue
            for label, value in (("NaN", float("nan")), ("+Inf", float("inf")), ("-Inf", float("-inf")), ("3e38", 3e38)):
                k = b + 4 * rng.randrange((e - b) // 4)
                pay = payload[:k] + struct.pack("<f", value) + payload[k + 4:]
                edits.append(("%s in %s" % (label, t), structured(header, pay), False))
            # every value of the tensor NaN
            pay = payload[:b] + struct.pack("<f", float("nan")) * ((e - b) // 4) + payload[e:]
            edits.append(("all NaN in %s" % t, structured(header, pay), False))
        # Negative running variance.
        for t in [t for t in tensors if t.endswith("runningVariance") or t.endswith("runningVar")][:3]:
            b, e = header[t]["data_offsets"]
            pay = payload[:b] + struct.pack("<f", -1.0) * ((e - b) // 4) + payload[e:]
            edits.append(("negative %s" % t, structured(header, pay), False))

        # Model card edits.
        edits += self.card_edits(header, payload)
        # Run config edits (on the checkpoint, which has resnet.config).
        edits += self.config_edits()

        for i, (desc, make, mf) in enumerate(edits):
            self.model_case(desc, make, must_fail=mf)
            if i % 3 == 0:
                self.model_case(desc, make, must_fail=mf, evaluate=True)

        # Random mutations fill the rest of the budget.
        remaining = max(0, budget - 2 * len(edits) // 3 - len(edits))
        specials = [0, 1, 7, 8, 9, 8 + n // 2, 8 + n - 1, 8 + n, 8 + n + 1, full - 4, full - 1]
        for cut in specials:
            self.model_case("truncated at %d of %d" % (cut, len(data)), raw(data[:cut]), must_fail=cut < full)
        for i in range(remaining):
            kind = rng.random()
            if kind < 0.25:
                cut = rng.randrange(len(data))
                self.model_case("truncated at %d of %d" % (cut, len(data)), raw(data[:cut]), must_fail=cut < full,
                                evaluate=(i % 25 == 0))
            elif kind < 0.35:
                buf = bytearray(data)
                pos = rng.randrange(8)
                buf[pos] = rng.randrange(256)
                self.model_case("header length byte %d = 0x%02x" % (pos, buf[pos]), raw(bytes(buf)),
                                evaluate=(i % 25 == 1))
            elif kind < 0.7:
                buf = bytearray(data)
                flips = []
                for _ in range(rng.choice([1, 1, 2, 4])):
                    pos = 8 + rng.randrange(n)
                    buf[pos] = rng.choice([rng.randrange(256), ord(rng.choice('{}[]",:0-9e.')), 0])
                    flips.append("%d=0x%02x" % (pos, buf[pos]))
                self.model_case("JSON header bytes %s" % ",".join(flips), raw(bytes(buf)), evaluate=(i % 25 == 2))
            else:
                buf = bytearray(data)
                flips = []
                for _ in range(rng.choice([1, 2, 8, 64])):
                    pos = 8 + n + rng.randrange(len(data) - 8 - n)
                    buf[pos] = rng.randrange(256)
                    flips.append("%d" % pos)
                self.model_case("tensor data bytes %s" % ",".join(flips[:4]) + ("..." if len(flips) > 4 else ""),
                                raw(bytes(buf)), evaluate=(i % 25 == 3))

    def card_edits(self, header, payload):
        meta = header.get("__metadata__", {})
        if "resnet.model" not in meta:
            self.notes.append("note: the model file has no resnet.model card: card edits skipped")
            return []
        card = json.loads(meta["resnet.model"])
        edits = []
        # The card's key style (snake_case or camelCase) follows whatever the binary writes.
        camel = "classNames" in card

        def K(key):
            if not camel or "_" not in key:
                return key
            head, *rest = key.split("_")
            return head + "".join(w[:1].upper() + w[1:] for w in rest)

        def KD(value):
            if isinstance(value, dict):
                return {K(k): KD(v) for k, v in value.items()}
            return value

        def with_card(desc, fn, must_fail=True, text=None):
            c = copy.deepcopy(card)
            if text is None:
                fn(c)
            h = copy.deepcopy(header)
            h["__metadata__"] = dict(meta)
            h["__metadata__"]["resnet.model"] = text if text is not None else json.dumps(c)
            edits.append(("card: " + desc, lambda p, h=h: write_safetensors(p, h, payload), must_fail))

        def setp(path, value):
            def fn(c):
                d = c
                for k in path[:-1]:
                    d = d.setdefault(K(k), {})
                d[K(path[-1])] = KD(value)
            return fn

        def drop(path):
            def fn(c):
                d = c
                for k in path[:-1]:
                    d = d.get(K(k), {})
                d.pop(K(path[-1]), None)
            return fn

        for name in ["garbage", "", "resnet99999999999999999", "resnet9223372036854775807", "resnet-8", "resnet7",
                     "wrn-28-100000", "wrn-99999999999999999999-1", "wrn--1--1", "resnet20\u0000", "svgg", "resnet50",
                     "plain20", "resnet1202"]:
            # a different but valid network mismatches the tensors: must fail
            with_card("architecture %r" % name, setp(["architecture", "name"], name))
        for opt, value in (("shortcut", "Z"), ("shortcut", 5), ("dropout", float("nan")), ("dropout", 1.5), ("dropout", -1),
                           ("stride_on_first1x1", "yes"), ("zero_initialized_residual", None)):
            with_card("architecture option %s=%r" % (opt, value), setp(["architecture", "options", opt], value),
                      must_fail=True)
        for key in ("height", "width"):
            for v in (0, -5, 2 ** 40, 100000, 2 ** 63 - 1, 1, 4096, 1.5, "16", None):
                # other valid sizes (1..4096) may legitimately work for a convolutional net
                valid = isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= 4096
                with_card("input %s=%r" % (key, v), setp(["input", key], v), must_fail=not valid and v != 1 and v != 4096)
        for v in (0, 1, 7, -3, 2 ** 40):
            with_card("input channels=%r" % v, setp(["input", "channels"], v))
        for v in ("gray", "bgr", "cmyk", ""):
            with_card("channel_order=%r" % v, setp(["input", "channel_order"], v), must_fail=v in ("gray", "cmyk", ""))
        with_card("class_names []", setp(["class_names"], []))
        with_card("class_names 10**6", setp(["class_names"], ["c%d" % i for i in range(10 ** 6)]))
        with_card("class_names 2 names", setp(["class_names"], ["a", "b"]))
        with_card("class_names 4 names", setp(["class_names"], ["a", "b", "c", "d"]))
        with_card("class_names not strings", setp(["class_names"], [1, 2, 3]))
        with_card("class name of 1 MB", setp(["class_names"], ["x" * 2 ** 20, "b", "c"]))
        with_card("class names duplicated", setp(["class_names"], ["a", "a", "a"]), must_fail=False)
        with_card("class names with control chars", setp(["class_names"], ["a\u0000b", "\n\n", "\u202e"]), must_fail=False)
        norm = card.get("preprocessing", {}).get("normalization", {})
        mean = norm.get("mean", [0.5] * 768)
        for desc, value in (("per_pixel_mean short", {"kind": "per_pixel_mean", "mean": mean[:-1]}),
                            ("per_pixel_mean empty", {"kind": "per_pixel_mean", "mean": []}),
                            ("per_pixel_mean long", {"kind": "per_pixel_mean", "mean": mean + [0.1]}),
                            ("per_pixel_mean NaN", {"kind": "per_pixel_mean", "mean": [None] + mean[1:]}),
                            ("per_channel 2 values", {"kind": "per_channel", "mean": [0.5, 0.5], "std": [0.2, 0.2]}),
                            ("per_channel std 0", {"kind": "per_channel", "mean": [0.5] * 3, "std": [0, 0.2, 0.2]}),
                            ("per_channel std negative", {"kind": "per_channel", "mean": [0.5] * 3, "std": [-1, 0.2, 0.2]}),
                            ("per_channel 1e39", {"kind": "per_channel", "mean": [1e39] * 3, "std": [0.2] * 3}),
                            ("per_channel no std", {"kind": "per_channel", "mean": [0.5] * 3}),
                            ("zca without tensors", {"kind": "zca", "epsilon": 0.1}),
                            ("zca epsilon -1", {"kind": "zca", "epsilon": -1}),
                            ("kind unknown", {"kind": "whiten"}), ("kind missing", {}),
                            ("normalization not object", "none")):
            with_card("normalization " + desc, setp(["preprocessing", "normalization"], value))
        # NaN written as a bare token (what a careless writer produces).
        c = copy.deepcopy(card)
        c["preprocessing"]["normalization"] = {"kind": "per_channel", "mean": [0.5] * 3, "std": [0.2] * 3}
        txt = json.dumps(c).replace('"std": [0.2, 0.2, 0.2]', '"std": [NaN, 0.2, 0.2]')
        with_card("normalization per_channel std NaN token", None, text=txt)
        txt = json.dumps(c).replace('"mean": [0.5, 0.5, 0.5]', '"mean": [Infinity, 0.5, 0.5]')
        with_card("normalization per_channel mean Infinity token", None, text=txt)
        for desc, value in (("resize crop 0", {"kind": "shorter_side_then_center_crop", "shorter_side": 0}),
                            ("resize crop -1", {"kind": "shorter_side_then_center_crop", "shorter_side": -1}),
                            ("resize crop 2**40", {"kind": "shorter_side_then_center_crop", "shorter_side": 2 ** 40}),
                            ("resize crop 8 < input", {"kind": "shorter_side_then_center_crop", "shorter_side": 8}),
                            ("resize unknown", {"kind": "squash"})):
            with_card(desc, setp(["preprocessing", "resize"], value))
        with_card("resize crop 16 (valid)", setp(["preprocessing", "resize"], {"kind": "shorter_side_then_center_crop", "shorter_side": 16}),
                  must_fail=False)
        for v in (99, 0, -1, 2 ** 63, "1", None, 1.5):
            with_card("format %r" % (v,), setp(["format"], v))
        for key in ("format", "architecture", "input", "preprocessing", "class_names"):
            with_card("key %s dropped" % key, drop([key]))
        with_card("provenance dropped", drop(["provenance"]), must_fail=False)
        with_card("provenance metrics NaN string", setp(["provenance", "metrics"], {"validation_top1": "nan"}), must_fail=False)
        with_card("provenance origin unknown", setp(["provenance", "origin"], "stolen"), must_fail=False)
        with_card("card is not JSON", None, text="{architecture: resnet8")
        with_card("card deeply nested", None, text="[" * 100000 + "]" * 100000)
        with_card("card 20 MB", None, text=json.dumps(dict(card, junk="x" * 20 * 2 ** 20)), must_fail=False)
        with_card("card with an unknown key", setp(["bogus_key"], 1), must_fail=False)
        return edits

    def config_edits(self):
        data, n, header = self.ckpt_bytes, self.ckpt_n, self.ckpt_header
        payload = data[8 + n:]
        meta = header.get("__metadata__", {})
        if "resnet.config" not in meta:
            self.notes.append("note: the checkpoint has no resnet.config: config edits skipped")
            return []
        config = json.loads(meta["resnet.config"])
        edits = []
        for key, value in (("imageShape", []), ("imageShape", [3]), ("imageShape", [3, 2 ** 40, 2 ** 40]),
                           ("imageShape", [3, -16, 16]), ("trainingCount", -1),
                           ("validationCount", -5), ("threads", 1000000), ("threads", -1), ("classNames", []),
                           ("model", "resnet99999999999999999"), ("normalization", {"perPixelMean": {"_0": []}}),
                           ("seed", -1), ("recipe", "fast"), ("recipe", {}), ("dataset", 5)):
            c = copy.deepcopy(config)
            c[key] = value
            h = copy.deepcopy(header)
            h["__metadata__"] = dict(meta)
            h["__metadata__"]["resnet.config"] = json.dumps(c)
            edits.append(("checkpoint resnet.config %s=%s" % (key, json.dumps(value)[:30]),
                          lambda p, h=h: write_safetensors(p, h, payload), False))
        for desc, text in (("not JSON", "{"), ("empty", ""), ("array", "[]")):
            h = copy.deepcopy(header)
            h["__metadata__"] = dict(meta)
            h["__metadata__"]["resnet.config"] = text
            edits.append(("checkpoint resnet.config " + desc, lambda p, h=h: write_safetensors(p, h, payload), False))
        return edits

    # -- family 2: bad images

    def image_case(self, name, make=None, path=None, must_fail=False, check_files=1, extra=()):
        f = "2-image"
        if path is None:
            path = self.path(name.replace(" ", "_").replace("/", "_")[:40])
            prep = make_writer(path, make)
            cleanup = [path]
        else:
            prep, cleanup = (make if callable(make) else None), []
        argv = ["predict", self.model] + list(extra) + [path, "--json", "--top", "1000"]
        self.add(Case(f, name, argv, check=check_predict_json(check_files), must_fail=must_fail, prepare=prep, cleanup=cleanup))

    def family_images(self, budget):
        rng = self.rng
        big = self.big_png

        def raw(b):
            return lambda p: write_bytes(p, b)

        def ihdr_png(w, h, ct=2, bd=8, rows=None, interlace=0, extra=()):
            if rows is None:
                rows = [b"\x80" * 48] * 16
            return png_bytes(w, h, rows, ct, bd, interlace, extra)

        self.image_case("empty file.png", raw(b""), must_fail=True)
        self.image_case("text file.png", raw(b"hello, this is not an image\n" * 10), must_fail=True)
        self.image_case("text file.jpg", raw(b"hello, this is not an image\n"), must_fail=True)
        self.image_case("png signature only.png", raw(big[:8]), must_fail=True)
        self.image_case("png named.jpg", raw(big), must_fail=False)
        self.image_case("directory", path=self.data, must_fail=True)
        self.image_case("directory named.png", make=lambda: os.makedirs(os.path.join(self.work, "dir.png"), exist_ok=True),
                        path=os.path.join(self.work, "dir.png"), must_fail=True)
        self.image_case("/dev/zero", path="/dev/zero", must_fail=True)
        self.image_case("/dev/null", path="/dev/null", must_fail=True)
        self.image_case("/dev/urandom", path="/dev/urandom", must_fail=True)
        fifo = os.path.join(self.work, "fifo.png")
        try:
            os.mkfifo(fifo)
            self.image_case("FIFO (nobody writes)", path=fifo, must_fail=True)
        except (OSError, AttributeError) as e:
            self.notes.append("note: mkfifo failed (%s): FIFO case skipped" % e)
        self.image_case("missing file", path=os.path.join(self.work, "no-such.png"), must_fail=True)
        self.image_case("path of 5000 chars", path="/" + "a" * 5000 + ".png", must_fail=True)
        loop = os.path.join(self.work, "loop.png")
        try:
            os.symlink(loop, loop)
            self.image_case("symlink loop", path=loop, must_fail=True)
        except OSError:
            pass
        self.image_case("PNG claiming 100000x100000", raw(ihdr_png(100000, 100000)), must_fail=True)
        self.image_case("PNG claiming 2**31-1 x 2**31-1", raw(ihdr_png(2 ** 31 - 1, 2 ** 31 - 1)), must_fail=True)
        self.image_case("PNG claiming 0x0", raw(ihdr_png(0, 0)), must_fail=True)
        self.image_case("PNG claiming 0x16", raw(ihdr_png(0, 16)), must_fail=True)
        self.image_case("PNG claiming 100000x1", raw(ihdr_png(100000, 1)), must_fail=True)
        self.image_case("PNG 20000x1 real", raw(png_bytes(20000, 1, [b"\x40" * 60000])))
        self.image_case("PNG 1x1", raw(png_bytes(1, 1, [b"\xff\x00\x00"])))
        self.image_case("PNG 1x5000", raw(png_bytes(1, 5000, [b"\x10\x20\x30"] * 5000)))
        self.image_case("PNG 16-bit", raw(png_bytes(4, 4, [b"\x12\x34" * 12] * 4, bit_depth=16)))
        self.image_case("PNG gray", raw(png_bytes(4, 4, [b"\x80" * 4] * 4, color_type=0)))
        self.image_case("PNG gray+alpha", raw(png_bytes(4, 4, [b"\x80\xff" * 4] * 4, color_type=4)))
        self.image_case("PNG RGBA", raw(png_bytes(4, 4, [b"\x80\x10\x10\x00" * 4] * 4, color_type=6)))
        self.image_case("PNG 1-bit gray", raw(png_bytes(8, 2, [b"\xaa", b"\x55"], color_type=0, bit_depth=1)))
        self.image_case("PNG palette", raw(png_bytes(2, 2, [b"\x00\x01"] * 2, color_type=3, extra_chunks=[(b"PLTE", b"\xff\x00\x00\x00\xff\x00")])))
        self.image_case("PNG palette without PLTE", raw(png_bytes(2, 2, [b"\x00\x01"] * 2, color_type=3)), must_fail=True)
        self.image_case("PNG palette index past PLTE", raw(png_bytes(2, 2, [b"\x07\x09"] * 2, color_type=3, extra_chunks=[(b"PLTE", b"\xff\x00\x00")])))
        self.image_case("PNG bad color type 5", raw(ihdr_png(16, 16, ct=5)), must_fail=True)
        self.image_case("PNG bad bit depth 7", raw(ihdr_png(16, 16, bd=7)), must_fail=True)
        self.image_case("PNG interlace flag, plain data", raw(ihdr_png(16, 16, interlace=1)), must_fail=True)
        self.image_case("PNG too little IDAT", raw(png_bytes(16, 16, [b"\x80" * 48] * 3)), must_fail=True)
        self.image_case("PNG too much IDAT", raw(png_bytes(16, 2, [b"\x80" * 48] * 300)))
        self.image_case("PNG zlib bomb (1 GB of IDAT)", make=lambda p: write_bytes(p, zbomb_png()), must_fail=False)
        self.image_case("many images (100)", raw(big), extra=[self.img] * 99, check_files=100)
        for i, j in enumerate(self.jpegs[:1]):
            jb = open(j, "rb").read()
            self.image_case("JPEG header only", raw(jb[:20]), must_fail=True)
            self.image_case("JPEG SOI only", raw(b"\xff\xd8"), must_fail=True)
            self.image_case("JPEG claiming 65535x65535", raw(jpeg_with_size(jb, 65535, 65535)))
            self.image_case("JPEG claiming 0x0", raw(jpeg_with_size(jb, 0, 0)), must_fail=True)
        # Random truncations and flips of PNGs and JPEGs.
        sources = [("png", big), ("png16", open(self.img, "rb").read())]
        for j in self.jpegs:
            sources.append(("jpeg", open(j, "rb").read()))
        for i in range(max(0, budget - 40)):
            kind, src = sources[i % len(sources)]
            ext = ".jpg" if kind == "jpeg" else ".png"
            if rng.random() < 0.5:
                cut = rng.randrange(len(src))
                # a PNG truncated before its last IDAT byte cannot decode
                idat_end = src.rfind(b"IEND") - 8 if kind != "jpeg" else 0
                self.image_case("%s truncated at %d of %d%s" % (kind, cut, len(src), ext), raw(src[:cut]),
                                must_fail=(kind != "jpeg" and cut < idat_end))
            else:
                buf = bytearray(src)
                pos = []
                for _ in range(rng.choice([1, 1, 3, 10])):
                    k = rng.randrange(len(buf))
                    buf[k] = rng.randrange(256)
                    pos.append(k)
                self.image_case("%s bytes flipped at %s%s" % (kind, ",".join(map(str, pos[:4])), ext), raw(bytes(buf)))

    # -- family 3: absurd options

    def family_options(self):
        f = "3-options"
        model, data, img = self.model, self.data, self.img

        def add(argv, must_fail=False, check=None, prepare=None, timeout=None):
            self.add(Case(f, " ".join(argv)[:200], argv, check=check, must_fail=must_fail, prepare=prepare, timeout=timeout))

        def train(*extra, must_fail=True):
            rd = self.path("run")
            argv = ["train", "--model", "resnet8", "--dataset", "folder", "--data", data, "--validation", "6",
                    "--run-dir", rd, "--skip-test"] + list(extra)
            if not any(e.startswith(("--iterations", "--epochs")) for e in extra):
                argv += ["--iterations", "2"]
            if not any(e.startswith("--batch-size") for e in extra):
                argv += ["--batch-size", "8"]
            self.add(Case(f, "train " + " ".join(extra), argv, must_fail=must_fail, cleanup=[rd]))

        for m in ("resnet99999999999999999999", "resnet9223372036854775807", "resnet-20", "resnet0", "resnet", "wrn-28-100000",
                  "wrn-100000-1", "wrn-28-0", "wrn-28--10", "wrn-0-1", "wrn--28-10", "plain999999999999", "resnet1000000000v2",
                  "resnet6n+2", "", " ", "resnet20\u0000x", "../../etc/passwd"):
            add(["summary", m], must_fail=True)
            add(["summary", m, "--json"], must_fail=True)
        for c in ("100000000000", "0", "-1", "9223372036854775807", "100001"):
            add(["summary", "resnet20", "--classes=" + c], must_fail=c != "100001")
        # bench-kernels' --peak divides its rates: refused before anything is measured.
        for v in ("nan", "inf", "0", "-230"):
            add(["bench-kernels", "--peak", v], must_fail=True)
        # Campaigns: only --report, which reads the runs folder and trains nothing.
        runs = self.path("campaigns")
        for name in ("depth", "degradation", "shortcuts", "transfer"):
            # Nothing has started there: an error, not an empty table (which --publish would copy).
            add(["experiment", name, "--runs", runs, "--report"], must_fail=True)
            add(["experiment", name, "--runs", runs, "--report", "--publish", self.path("published")], must_fail=True)
        for extra in (["--depths", "21"], ["--depths", "x,"], ["--depths", ""], ["--depths", "99999999999999999999"],
                      ["--seeds", "-1"], ["--seeds", ","], ["--schedule-scale", "nan"], ["--schedule-scale", "0"],
                      ["--schedule-scale", "inf"], ["--schedule-scale", "1e9"], ["--publish", model], ["--publish", model + "/x"]):
            add(["experiment", "depth", "--runs", runs, "--report"] + extra, must_fail=True)
        for bad in (model, model + "/sub", "/dev/null", ""):
            add(["experiment", "depth", "--runs", bad, "--report"], must_fail=True)
        add(["experiment", "nosuch", "--runs", runs, "--report"], must_fail=True)
        # A run in the wrong folder (the fixture, a ResNet-8, where the campaign's ResNet-20 or 32
        # belongs; or linked as the shortcut campaign's option A) must be refused, never reported
        # in the wrong row.
        misplaced = self.path("campaigns-misplaced")

        def misplace():
            with self.lock:   # both cases prepare it, maybe at once
                make_misplaced()

        def make_misplaced():
            shutil.copytree(self.run, os.path.join(misplaced, "depth", "resnet32-seed0"), dirs_exist_ok=True)
            os.makedirs(os.path.join(misplaced, "shortcuts"), exist_ok=True)
            link = os.path.join(misplaced, "shortcuts", "resnet32-A-seed0")
            if not os.path.lexists(link):
                os.symlink("../depth/resnet32-seed0", link)
        add(["experiment", "depth", "--runs", misplaced, "--report"], must_fail=True, prepare=misplace)
        add(["experiment", "shortcuts", "--runs", misplaced, "--report"], must_fail=True, prepare=misplace)
        for inp in ("100000x100000x3", "0x0x3", "32x32x0", "32x32x100000", "-32x32x3", "32x32", "1x1x3", "4096x4096x3", "9223372036854775807x1x1", "axbxc"):
            add(["summary", "resnet20", "--input=" + inp], must_fail=inp not in ("1x1x3", "4096x4096x3", "32x32", "100000x100000x3", "32x32x100000"))
        add(["summary", "resnet1202", "--json"], check=check_summary_json)
        add(["summary", "wrn-1000-1"])
        add(["summary", "wrn-28-1000"])
        add(["summary", "resnet152", "--classes=100000"])
        for t in ("1000", "0", "-1", "9223372036854775807", "abc"):
            add(["predict", model, img, "--json", "--top", "1000", "--threads=" + t],
                check=check_predict_json(1), must_fail=t in ("-1", "abc"))
        for top in ("0", "-1", "9223372036854775807", "1"):
            add(["predict", model, img, "--json", "--top=" + top], must_fail=top in ("0", "-1"),
                check=check_predict_json(1) if top != "1" else None)
        valid_precisions = ("bf16", "auto", "fp32", "int8")
        for precision in ("bf16", "auto", "fp32", "int8", "fp8", "", "BF16", "INT8", "s8"):
            add(["predict", model, img, "--json", "--precision=" + precision], must_fail=precision not in valid_precisions,
                check=check_predict_json(1) if precision in valid_precisions else None)
            add(["evaluate", model, "--dataset", "folder", "--data", data, "--json", "--precision=" + precision],
                must_fail=precision not in valid_precisions, check=check_evaluate_json if precision in valid_precisions else None)
        # int8 calibration: counts, and folders that are missing, empty, not folders or hold a broken image.
        empty_folder = self.path("empty-calibration")
        os.makedirs(empty_folder, exist_ok=True)
        broken_folder = self.path("broken-calibration")
        os.makedirs(broken_folder, exist_ok=True)
        with open(os.path.join(broken_folder, "broken.jpg"), "wb") as broken:
            broken.write(b"\xff\xd8\xff\xe0 not really a JPEG")
        for count in ("1", "3", "0", "-1", "100001", "9223372036854775807", "x"):
            add(["predict", model, img, "--json", "--precision", "int8", "--calibration-images=" + count],
                must_fail=count not in ("1", "3"), check=check_predict_json(1) if count in ("1", "3") else None)
        for folder, fails in ((os.path.join(data, "train"), False), (empty_folder, True), (broken_folder, True), ("/dev/zero", True),
                              (os.path.join(self.work, "no-such-folder"), True), (img, True)):
            add(["predict", model, img, "--json", "--precision", "int8", "--calibration", folder],
                must_fail=fails, check=None if fails else check_predict_json(1))
            add(["evaluate", model, "--dataset", "folder", "--data", data, "--json", "--precision", "int8", "--calibration", folder],
                must_fail=fails, check=None if fails else check_evaluate_json)
        add(["predict", model], must_fail=True)
        add(["predict", os.path.join(self.work, "nope.safetensors"), img], must_fail=True)
        add(["predict", os.path.join(data, "test"), img], must_fail=True)
        add(["predict", img, img], must_fail=True)
        add(["predict", "/dev/zero", img], must_fail=True)
        add(["predict", "/dev/null", img], must_fail=True)
        for bs in ("1000000000", "0", "-1", "9223372036854775807", "1"):
            add(["evaluate", model, "--dataset", "folder", "--data", data, "--json", "--batch-size=" + bs],
                check=check_evaluate_json, must_fail=bs in ("0", "-1"))
        for t in ("1000", "0", "-1"):
            add(["evaluate", model, "--dataset", "folder", "--data", data, "--json", "--threads=" + t],
                check=check_evaluate_json, must_fail=t == "-1")
        add(["evaluate", model, "--dataset", "folder", "--data", data, "--split", "val"], must_fail=False)
        add(["evaluate", model, "--dataset", "folder", "--data", data, "--split", "nope"], must_fail=True)
        add(["evaluate", model, "--dataset", "folder", "--data", "/dev/zero"], must_fail=True)
        add(["evaluate", model, "--dataset", "folder", "--data", os.path.join(data, "test", "red")], must_fail=True)
        add(["evaluate", model, "--dataset", "cifar10", "--data", data], must_fail=True)
        add(["evaluate", model, "--dataset", "nonsense"], must_fail=True)
        add(["evaluate", model, "--dataset", "cifar10"], must_fail=True)
        add(["evaluate", model, "--dataset", "folder", "--data", data, "--bn", "batch", "--batch-size=1", "--json"],
            check=check_evaluate_json)
        train("--epochs=9223372036854775807", "--iterations", "2", must_fail=False)
        train("--epochs=9223372036854775807")
        train("--iterations=-1")
        for bad in ("--mpi-bucket-mb=0", "--mpi-bucket-mb=nan", "--mpi-bucket-mb=100000", "--mpi-timeout=0", "--mpi-timeout=inf",
                    "--micro-batches=0", "--micro-batches=3"):
            train(bad)   # refused in one process too (without mpirun they would do nothing)
        train("--iterations=0")
        train("--iterations=9223372036854775807", "--epochs=1", must_fail=False)
        train("--epochs=0")
        train("--epochs=-3")
        for lr in ("nan", "inf", "-inf", "-0.1", "0", "1e39", "-nan"):
            train("--lr=" + lr, must_fail=lr not in ("0",))
        for flag, vals in (("--momentum", ("nan", "-1", "inf", "2")), ("--weight-decay", ("nan", "-inf", "inf")),
                           ("--label-smoothing", ("nan", "-0.5", "1.5", "inf")), ("--validation", ("-1", "100000", "9223372036854775807", "90")),
                           ("--batch-size", ("0", "-1", "9223372036854775807", "1000000000")), ("--seed", ("-1", "18446744073709551616")),
                           ("--threads", ("1000", "0", "-1")), ("--augment", ("crop:-4", "crop:100000", "cutout:99999999999", "rotate:nan",
                                                                                  "zoom:inf", "shift:-2", "flip,flip,flip", "bogus", "crop:4:weird", ""))):
            for v in vals:
                ok = (flag == "--threads" and v in ("1000", "0")) or (flag == "--batch-size" and v == "1000000000") \
                    or (flag == "--augment" and v in ("flip,flip,flip",)) or (flag == "--momentum" and v == "2")
                train(flag + "=" + v, must_fail=not ok and flag != "--seed")
        train("--model", "resnet99999999999999999")
        train("--model", "wrn-28-100000")
        train("--data", "/dev/zero")
        train("--data", os.path.join(self.work, "missing-data"))
        train("--resume", os.path.join(self.work, "missing-run"))
        train("--run-dir", "/dev/null")
        train("--config", "/dev/zero")
        train("--config", os.path.join(self.work, "missing.yaml"))
        # --image-size (dataset-info).
        for size in ("100000x100000", "0x0", "-1x-1", "9223372036854775807x9223372036854775807", "axb", "16x16", "1x1", "64x64"):
            add(["dataset-info", "--dataset", "folder", "--data", data, "--image-size=" + size],
                must_fail=size not in ("16x16", "1x1", "64x64"))
        add(["dataset-info", "--dataset", "folder", "--data", "/dev/zero"], must_fail=True)
        add(["dataset-info", "--dataset", "folder", "--data", self.model], must_fail=True)
        add(["augment-preview", "--dataset", "folder", "--data", data, "--count=100000000", "--out", os.path.join(self.work, "prev.png")],
            must_fail=False)
        # download: no network here; must fail fast with one line.
        dl = os.path.join(self.work, "dl")
        for t in ("nan", "inf", "-1", "0", "1e308", "0.000001"):
            add(["download", "cifar10", "--timeout=" + t, "--to", dl], must_fail=True, timeout=min(self.args.timeout, 60))
        add(["download", "imagenet", "--to", dl], must_fail=True)
        add(["download", "cifar10", "--to", "/dev/null"], must_fail=True)
        # bench.
        for extra in (["--batch-size=0"], ["--batch-size=-1"], ["--repeats=0"], ["--repeats=-1"], ["--iterations=0"],
                      ["--iterations=-5"], ["--warmup=-1"], ["--batch-size=1000000000"], ["--input", "100000x100000x3"],
                      ["--classes=100000000000"], ["--threads=1000", "--batch-size=2", "--repeats=1", "--iterations=1", "--warmup=0"]):
            ok = "--threads=1000" in extra
            add(["bench", "resnet20"] + extra, must_fail=not ok)
        add(["bench", "resnet99999999999999999999"], must_fail=True)
        add(["bench-data", "--batch-size=0"], must_fail=True)
        add(["demo", "--epochs=-1"], must_fail=True)
        add(["nonsense-subcommand"], must_fail=True)

    # -- family 4: run files

    def family_runfiles(self):
        f = "4-run-file"
        base = {"model": "resnet8", "dataset": "folder", "data": self.data, "iterations": 2, "batch_size": 8, "validation": 6}

        def case(desc, text, ext=".yaml", must_fail=True, make=None):
            p = self.path("run" + ext)
            rd = self.path("run")
            argv = ["train", "--config", p, "--run-dir", rd, "--skip-test"]
            prepare = make_writer(p, make if make else (lambda q: write_bytes(q, text.encode() if isinstance(text, str) else text)))
            self.add(Case(f, desc, argv, must_fail=must_fail, prepare=prepare, cleanup=[p, rd]))

        def yaml_of(d):
            return "".join("%s: %s\n" % (k, json.dumps(v)) for k, v in d.items())

        case("valid YAML (baseline)", yaml_of(base), must_fail=False)
        case("valid JSON (baseline)", json.dumps(base), ext=".json", must_fail=False)
        laughs = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
        prev = "a"
        for i, name in enumerate("bcdefghijklmnop"):
            laughs += "%s: &%s [*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s]\n" % ((name, name) + (prev,) * 9)
            prev = name
        case("YAML billion laughs (unknown keys)", laughs)
        case("YAML billion laughs under a known key", "model: resnet8\n" + laughs.replace("a: &a", "augment: &a", 1).replace("*a", "*a"))
        bomb2 = "x: &x [" + ",".join(["0"] * 10) + "]\n"
        prev = "x"
        lines = []
        for i in range(12):
            nm = "x%d" % i
            lines.append("%s: &%s [%s]" % (nm, nm, ",".join(["*" + prev] * 10)))
            prev = nm
        case("YAML alias bomb as batch_size", yaml_of(base).replace("batch_size: 8\n", "") + bomb2 + "\n".join(lines) + "\nbatch_size: *%s\n" % prev)
        case("YAML deeply nested flow (100k)", "model: " + "[" * 100000 + "]" * 100000 + "\n")
        case("YAML deeply nested flow (1M)", "augment: " + "[" * 1000000 + "\n")
        case("YAML deeply nested block (20k)", "".join("%sa:\n" % (" " * i) for i in range(20000)))
        case("YAML deeply nested maps {}", "lr: " + "{a: " * 50000 + "1" + "}" * 50000 + "\n")
        case("JSON deeply nested (1M)", "{\"lr\": " + "[" * 1000000 + "]" * 1000000 + "}", ext=".json")
        case("huge YAML file (30 MB of comments)", None, must_fail=False,
             make=lambda q: write_bytes(q, (yaml_of(base) + "# " + "x" * 1000 + "\n") * 1 + ("# " + "y" * 1000 + "\n") * 30000))
        case("huge YAML file (30 MB string value)", None,
             make=lambda q: write_bytes(q, (yaml_of(base) + "augment: \"" + "flip," * 6 * 2 ** 20 + "\"\n").encode()))
        case("huge JSON file (200k keys)", None, ext=".json",
             make=lambda q: write_bytes(q, json.dumps(dict(base, **{"k%d" % i: i for i in range(200000)})).encode()))
        case("YAML not a mapping", "- 1\n- 2\n")
        case("YAML scalar", "hello\n")
        case("YAML empty", "")
        case("YAML binary garbage", bytes(random.Random(3).randrange(256) for _ in range(4096)))
        case("YAML tab indentation", "model:\n\t- resnet8\n")
        case("YAML duplicate keys", yaml_of(base) + "batch_size: 0\n")
        case("YAML custom tag", yaml_of(base).replace("batch_size: 8", "batch_size: !!python/object:os.system 8"), must_fail=False)
        case("YAML unknown key", yaml_of(dict(base, learning_rate=0.1)))
        case("JSON unknown key", json.dumps(dict(base, bogus=1)), ext=".json")
        case("JSON not an object", "[1,2,3]", ext=".json")
        case("JSON invalid", "{\"model\": ", ext=".json")
        case("JSON with NaN token", json.dumps(base)[:-1] + ", \"lr\": NaN}", ext=".json")
        case("unknown extension .txt", json.dumps(base), ext=".txt", must_fail=False)
        for key, value in (("batch_size", "eight"), ("batch_size", 8.5), ("batch_size", [8]), ("lr", "fast"), ("lr", {"x": 1}),
                           ("epochs", 1e300), ("iterations", 2 ** 70), ("seed", -1), ("seed", 2 ** 64), ("nesterov", "maybe"),
                           ("model", 20), ("augment", ["flip"]), ("normalization", "sphere"), ("optimizer", "lion"),
                           ("validation", -3), ("validation", 10 ** 6), ("monitor_test", 3), ("precision", "fp8"),
                           ("shortcut", "Z"), ("recipe", "nope"), ("run_dir", 5), ("data", None), ("schedule", "cosine"),
                           ("schedule", {"cosine": {"base": "x"}}), ("schedule", {"unknownKind": {}}), ("schedule", {})):
            case("JSON %s=%s" % (key, json.dumps(value)[:30]), json.dumps(dict(base, **{key: value})), ext=".json",
                 must_fail=not (key == "data" and value is None))
        for value in (0, -1, -2 ** 63, 2 ** 62):
            case("YAML batch_size %d" % value, yaml_of(dict(base, batch_size=value)))
        for key in ("lr", "momentum", "weight_decay", "label_smoothing"):
            for token in (".nan", ".inf", "-.inf", "-1"):
                ok = key == "momentum" and False
                case("YAML %s %s" % (key, token), yaml_of(base) + "%s: %s\n" % (key, token), must_fail=not ok)
        scheds = {
            "multiStep negative multiplier late": {"multiStep": {"base": 0.1, "milestones": [1], "multipliers": [-1], "unit": "iteration"}},
            "multiStep NaN base": {"multiStep": {"base": "nan", "milestones": [1], "multipliers": [0.1], "unit": "iteration"}},
            "multiStep unsorted milestones": {"multiStep": {"base": 0.1, "milestones": [5, 1], "multipliers": [0.1, 0.01], "unit": "iteration"}},
            "multiStep negative milestone": {"multiStep": {"base": 0.1, "milestones": [-1], "multipliers": [0.1], "unit": "iteration"}},
            "multiStep length mismatch": {"multiStep": {"base": 0.1, "milestones": [1, 2], "multipliers": [0.1], "unit": "iteration"}},
            "multiStep 1e6 milestones": {"multiStep": {"base": 0.1, "milestones": list(range(1, 10 ** 6)), "multipliers": [0.5] * (10 ** 6 - 1), "unit": "iteration"}},
            "constant negative": {"constant": {"_0": -0.1}},
            "constant 1e39": {"constant": {"_0": 1e39}},
            "cosine iterations 0": {"cosine": {"base": 0.1, "minimum": 0, "iterations": 0}},
            "cosine minimum negative": {"cosine": {"base": 0.1, "minimum": -5, "iterations": 2}},
            "oneCycle divFactor 0": {"oneCycle": {"maximum": 0.1, "iterations": 2, "warmupFraction": 0.3, "divFactor": 0, "finalDivFactor": 0}},
            "oneCycle warmupFraction 2": {"oneCycle": {"maximum": 0.1, "iterations": 2, "warmupFraction": 2, "divFactor": 25, "finalDivFactor": 1e4}},
            "oneCycle iterations -1": {"oneCycle": {"maximum": 0.1, "iterations": -1, "warmupFraction": 0.3, "divFactor": 25, "finalDivFactor": 1e4}},
            "warmup iterations -5": {"warmup": {"iterations": -5, "learningRate": 0.01, "linear": True, "then": {"constant": {"_0": 0.1}}}},
        }
        nested = {"constant": {"_0": 0.1}}
        for _ in range(20000):
            nested = {"warmup": {"iterations": 1, "learningRate": 0.01, "linear": True, "then": nested}}
        for desc, s in scheds.items():
            case("schedule " + desc, json.dumps(dict(base, schedule=s)), ext=".json",
                 must_fail=desc not in ("multiStep 1e6 milestones", "cosine iterations 0", "oneCycle warmupFraction 2"))
        case("schedule nested 20000 warmups", None, ext=".json",
             make=lambda q: write_bytes(q, dump_deep(dict(base, schedule=nested))))
        # negative rate only after the milestone reached late in the run
        case("schedule negative at a late milestone",
             json.dumps(dict(base, iterations=6, schedule={"multiStep": {"base": 0.1, "milestones": [2, 5], "multipliers": [0.1, -10], "unit": "iteration"}})),
             ext=".json")

    # -- family 5: edited run directories

    def family_resume(self):
        f = "5-resume"
        last = os.path.join(self.run, "last.safetensors")
        if not os.path.exists(last):
            self.notes.append("note: the fixture run has no last.safetensors: resume cases skipped")
            return
        data, n, header = read_safetensors(last)
        payload = data[8 + n:]
        meta = header.get("__metadata__", {})
        state = json.loads(meta.get("resnet.state", "{}"))
        config = json.loads(open(os.path.join(self.run, "config.json")).read())

        def case(desc, edit_config=None, config_text=None, edit_state=None, state_text=None, edit_header=None,
                 must_fail=True, must_succeed=False, extra=()):
            rc = self.path("resume")

            def prepare():
                shutil.copytree(self.run, rc, symlinks=True)
                if edit_config or config_text is not None:
                    text = config_text
                    if text is None:
                        c = copy.deepcopy(config)
                        edit_config(c)
                        text = json.dumps(c, indent=1)
                    write_bytes(os.path.join(rc, "config.json"), text.encode() if isinstance(text, str) else text)
                if edit_state or state_text is not None or edit_header:
                    h = copy.deepcopy(header)
                    h["__metadata__"] = dict(meta)
                    if edit_state or state_text is not None:
                        text = state_text
                        if text is None:
                            s = copy.deepcopy(state)
                            mid_run(s)
                            edit_state(s)
                            text = json.dumps(s)
                        h["__metadata__"]["resnet.state"] = text
                    if edit_header:
                        edit_header(h)
                    write_safetensors(os.path.join(rc, "last.safetensors"), h, payload)

            self.add(Case(f, desc, ["train", "--resume", rc] + list(extra), must_fail=must_fail, must_succeed=must_succeed,
                          prepare=prepare, cleanup=[rc]))

        def setk(k, v):
            """Sets a dotted key path (recipe.batchSize)."""
            def fn(d):
                *head, last = k.split(".")
                for part in head:
                    d = d.setdefault(part, {})
                d[last] = v
            return fn

        def mid_run(s):
            """The state of the run halfway (step 2 of 4), so that resuming trains."""
            s["finished"] = False
            s.pop("stopReason", None)
            s["step"] = 2
            s["batchInEpoch"] = 2
            s["epoch"] = 0
            s["history"] = []
            s["bestValidationAccuracy"] = None
            s["bestEpoch"] = None
            # The finished run's validation at step 4 lies beyond step 2: left in, it made every
            # edited state fail for that reason instead of the edit's.
            s["validations"] = []

        case("unchanged finished run", must_fail=False, must_succeed=True)
        case("state finished=false (continues)", edit_state=lambda s: None, must_fail=False, must_succeed=True)
        for k, v in (("recipe.batchSize", 0), ("recipe.batchSize", -1), ("recipe.batchSize", 2 ** 62),
                     ("recipe.duration", {"iterations": {"_0": -1}}), ("recipe.duration", {"epochs": {"_0": 2 ** 62}}),
                     ("recipe.schedule", {"multiStep": {"base": 0.1, "milestones": [3], "multipliers": [-1], "unit": "iteration"}}),
                     ("recipe.schedule", {"constant": {"_0": "nan"}}), ("recipe.momentum", -5),
                     ("recipe.augmentations", [{"padCrop": {"fill": "constant", "padding": -4}}]),
                     ("recipe.validationCount", -1), ("recipe.optimizer", "lion"),
                     ("imageShape", [3, 2 ** 40, 2 ** 40]), ("imageShape", []),
                     ("imageShape", [3]), ("trainingCount", -1), ("trainingCount", 10 ** 12), ("validationCount", -1),
                     ("threads", 1000000), ("threads", -5), ("classNames", []), ("model", "resnet99999999999999999"),
                     ("seed", -1), ("deterministic", "yes"), ("precision", "fp8"), ("dataset", "nope"), ("dataPath", "/dev/zero")):
            case("config.json %s=%s" % (k, json.dumps(v)[:30]), edit_config=setk(k, v), edit_state=lambda s: None,
                 must_fail=not (k == "threads" and v == 1000000))
        case("config.json invalid JSON", config_text="{\"model\": ")
        case("config.json empty", config_text="")
        case("config.json deeply nested", config_text="[" * 1000000)
        rcdir = self.path("resume")

        def prep_missing(rc=rcdir):
            shutil.copytree(self.run, rc, symlinks=True)
            os.remove(os.path.join(rc, "config.json"))
        self.add(Case(f, "config.json deleted", ["train", "--resume", rcdir], must_fail=True, prepare=prep_missing, cleanup=[rcdir]))
        rcdir2 = self.path("resume")

        def prep_nolast(rc=rcdir2):
            shutil.copytree(self.run, rc, symlinks=True)
            os.remove(os.path.join(rc, "last.safetensors"))
        self.add(Case(f, "last.safetensors deleted", ["train", "--resume", rcdir2], must_fail=True, prepare=prep_nolast, cleanup=[rcdir2]))
        for k, v in (("step", -5), ("batchInEpoch", -5), ("batchInEpoch", 10 ** 9), ("epoch", 2 ** 62), ("epoch", -1),
                     ("step", 2 ** 62), ("bestValidationAccuracy", "nan"), ("bestEpoch", -7), ("partialSeen", -1),
                     ("partialCorrect", 10 ** 9), ("dropoutState", [1]), ("history", None),
                     ("history", [{"epoch": 1}]), ("partialLoss", "inf")):
            case("resnet.state %s=%s" % (k, json.dumps(v)[:30]), edit_state=setk(k, v))
        case("resnet.state invalid JSON", state_text="{")
        case("resnet.state empty", state_text="")
        case("resnet.state NaN token", state_text=json.dumps(dict(state, finished=False))[:-1] + ",\"partialLoss\":NaN}")
        opt = [k for k in header if k.startswith("optimizer/")]
        if opt:
            t = opt[0]
            case("optimizer tensor %s missing" % t, edit_state=lambda s: None, edit_header=lambda h, t=t: h.pop(t))
            case("all optimizer tensors missing", edit_state=lambda s: None,
                 edit_header=lambda h: [h.pop(k) for k in opt])
            case("optimizer tensor with wrong shape", edit_state=lambda s: None,
                 edit_header=lambda h, t=t: h[t].update(shape=[1]))
        # config.json is the run's configuration; the checkpoint's copy disagreeing is tolerated if the run trains
        case("resnet.config in last.safetensors differs", edit_state=lambda s: None, must_fail=False,
             edit_header=lambda h: h["__metadata__"].update({"resnet.config": json.dumps(dict(config, recipe=dict(config["recipe"], batchSize=0)))}))
        case("resnet.state missing", edit_header=lambda h: h["__metadata__"].pop("resnet.state", None))
        case("resume with --iterations flag", edit_state=lambda s: None, extra=["--iterations", "6"], must_fail=False)
        case("resume with --batch-size 0", edit_state=lambda s: None, extra=["--batch-size", "0"])
        # Epoch times (reports add them up). Runs made before CPU times were recorded have none and
        # resume; out-of-range ones are refused.
        record = dict((state.get("history") or [{}])[0])

        def with_history(**changes):
            def fn(s):
                r = {k: v for k, v in record.items() if k != "cpu_seconds"}
                r.update({k: v for k, v in changes.items() if v is not None})
                s["history"] = [r]
            return fn
        case("resnet.state partialCPUSeconds=-1", edit_state=setk("partialCPUSeconds", -1))
        case("resnet.state partialCPUSeconds absent (older run)", edit_state=lambda s: s.pop("partialCPUSeconds", None), must_fail=False,
             must_succeed=True)
        case("history without cpu_seconds (older run)", edit_state=with_history(), must_fail=False, must_succeed=True)
        case("history cpu_seconds=-1", edit_state=with_history(cpu_seconds=-1))
        case("history cpu_seconds=\"nan\"", edit_state=with_history(cpu_seconds="nan"))
        case("history seconds=-3 (clock stepped back, older run)", edit_state=with_history(seconds=-3), must_fail=False, must_succeed=True)
        # Accuracies (reports average their errors) are fractions.
        case("history train_accuracy=1.5", edit_state=with_history(train_accuracy=1.5))
        case("history val_accuracy=-0.25", edit_state=with_history(val_accuracy=-0.25))
        case("history test_accuracy=7", edit_state=with_history(test_accuracy=7))
        # Reading a finished run's state without training (the path Swift 6.3.1 once miscompiled
        # in the release build only: ARCHITECTURE.md, Testing).
        for desc, edit, fails in (("compare of the finished run", None, False),
                                  ("compare of a run with cpu_seconds=-1", with_history(cpu_seconds=-1), True),
                                  ("compare of a run with train_accuracy=2", with_history(train_accuracy=2), True)):
            cdir = self.path("compare")

            def prep_compare(rc=cdir, edit=edit):
                shutil.copytree(self.run, rc, symlinks=True)
                if edit:
                    h = copy.deepcopy(header)
                    h["__metadata__"] = dict(meta)
                    s = copy.deepcopy(state)
                    edit(s)
                    h["__metadata__"]["resnet.state"] = json.dumps(s)
                    write_safetensors(os.path.join(rc, "last.safetensors"), h, payload)
            self.add(Case(f, desc, ["compare", cdir, "--out", os.path.join(cdir, "compare.png")], must_fail=fails,
                          must_succeed=not fails, prepare=prep_compare, cleanup=[cdir]))


def make_writer(path, make):
    if make is None:
        return None

    def prepare():
        make(path)
    return prepare


def write_bytes(path, data):
    if isinstance(data, str):
        data = data.encode()
    with open(path, "wb") as f:
        f.write(data)


def dump_deep(obj):
    """json.dumps without recursion limits (for deeply nested objects)."""
    out = []
    stack = [obj]
    while stack:
        x = stack.pop()
        if isinstance(x, str) and x.startswith("\0raw:"):
            out.append(x[5:])
        elif isinstance(x, dict):
            items = list(x.items())
            parts = ["\0raw:{"]
            for i, (k, v) in enumerate(items):
                parts.append("\0raw:" + ("," if i else "") + json.dumps(k) + ":")
                parts.append(v)
            parts.append("\0raw:}")
            stack.extend(reversed(parts))
        elif isinstance(x, list):
            parts = ["\0raw:["]
            for i, v in enumerate(x):
                if i:
                    parts.append("\0raw:,")
                parts.append(v)
            parts.append("\0raw:]")
            stack.extend(reversed(parts))
        else:
            out.append(json.dumps(x))
    return "".join(out).encode()


def zbomb_png():
    """A 16000x16000 RGB PNG with a valid, highly compressed all-zero IDAT (~770 MB decoded)."""
    w = h = 16000
    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + 3 * w)
    parts = [comp.compress(row) for _ in range(h)]
    parts.append(comp.flush())
    idat = b"".join(parts)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def jpeg_with_size(data, w, h):
    """The JPEG with the frame header's (SOF0/SOF2) size replaced."""
    buf = bytearray(data)
    i = 2
    while i + 9 < len(buf):
        if buf[i] != 0xFF:
            break
        marker = buf[i + 1]
        length = struct.unpack(">H", bytes(buf[i + 2:i + 4]))[0]
        if marker in (0xC0, 0xC1, 0xC2):
            buf[i + 5:i + 9] = struct.pack(">HH", h, w)
            return bytes(buf)
        i += 2 + length
    return bytes(buf)


def last_line(text):
    lines = [l for l in text.splitlines() if l.strip()]
    return lines[-1] if lines else ""


# ----------------------------------------------------------------------------------------------
# Running


def run_case(h, case):
    args = h.args
    timeout = case.timeout or args.timeout
    try:
        if case.prepare:
            case.prepare()
    except Exception as e:  # noqa: BLE001
        return case, "skip", "fixture could not be made: %s" % e, None, ""
    argv = [h.resnet] + case.argv
    if h.prlimit and args.memory_limit_gb > 0:
        argv = [h.prlimit, "--as=%d" % (args.memory_limit_gb * 2 ** 30), "--"] + argv
    start = time.monotonic()
    out_path = os.path.join(h.work, "out-%d" % threading.get_ident())
    err_path = os.path.join(h.work, "err-%d" % threading.get_ident())
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=h.env, cwd=h.work,
                                    start_new_session=True)
        except (ValueError, OSError) as e:
            for p in case.cleanup:
                remove(p)
            return case, "skip", "cannot run: %s" % e, None, ""
        timed_out = False
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            rc = proc.wait()
    elapsed = time.monotonic() - start
    stdout = read_capped(out_path)
    stderr = read_capped(err_path)
    for p in case.cleanup:
        remove(p)
    last = last_line(stderr)
    if timed_out:
        return case, "fail", "timeout after %gs" % timeout, rc, last
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = str(-rc)
        fatal = [l for l in stderr.splitlines() if "Fatal error" in l or "fatal error" in l or "Swift runtime failure" in l or "terminate" in l]
        return case, "fail", "killed by signal %s" % name, rc, (fatal[0].strip() if fatal else last)
    if rc == 0:
        if case.must_fail:
            return case, "fail", "exit 0 on an input that must be refused", rc, last or first_line(stdout)
        if case.check:
            why = case.check(stdout)
            if why:
                return case, "fail", "exit 0 with bad output: " + why, rc, last
        if elapsed > timeout * 0.8:
            return case, "pass", "slow (%.1fs)" % elapsed, rc, last
        return case, "pass", "", rc, last
    if case.must_succeed:
        return case, "fail", "valid input refused (exit %d)" % rc, rc, last
    errors = [l for l in stderr.splitlines() if l.startswith("Error:")]
    if rc == 1:
        if last.startswith("Error:") and len(errors) == 1:
            return case, "pass", "", rc, last
        if not last.startswith("Error:"):
            return case, "fail", "exit 1 but the last stderr line is not 'Error: ...'", rc, last
        return case, "fail", "exit 1 with %d 'Error:' lines" % len(errors), rc, last
    if rc == 64 and args.accept_usage_errors and errors and len(errors) == 1:
        return case, "pass", "", rc, last
    if rc == 64:
        return case, "fail", "exit 64 (argument parser usage error, usage text after Error:)", rc, errors[0] if errors else last
    return case, "fail", "exit %d" % rc, rc, last


def read_capped(path, cap=64 * 2 ** 20):
    try:
        with open(path, "rb") as f:
            return f.read(cap).decode("utf-8", "replace")
    except OSError:
        return ""


def first_line(text):
    for l in text.splitlines():
        if l.strip():
            return l
    return ""


def remove(p):
    try:
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            os.remove(p)
    except OSError:
        pass


def shell_quote(argv):
    import shlex
    return " ".join(shlex.quote(a if len(a) < 200 else a[:200] + "...") for a in argv)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resnet", required=True, help="the release resnet binary")
    ap.add_argument("--cases", type=int, default=3000, help="approximate number of cases (default 3000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", help="parent of the temporary work directory (default: the system's)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=20, help="seconds per case (default 20)")
    ap.add_argument("--memory-limit-gb", type=int, default=8,
                    help="address-space limit per run through prlimit, 0 for none (default 8)")
    ap.add_argument("--accept-usage-errors", action="store_true",
                    help="accept ArgumentParser's exit 64 with one Error: line followed by usage text")
    ap.add_argument("--family", action="append", help="only these families (0..7); repeatable")
    ap.add_argument("--kill-trials", type=int, default=8, help="runs killed and resumed in family 6 (default 8)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--verbose", action="store_true", help="print every case")
    args = ap.parse_args()
    if not (os.path.isfile(args.resnet) and os.access(args.resnet, os.X_OK)):
        print("error: %s is not an executable file" % args.resnet, file=sys.stderr)
        return 2
    started = time.monotonic()
    work = tempfile.mkdtemp(prefix="resnet-robustness-", dir=args.workdir)
    try:
        return run(args, work, started)
    finally:
        if args.keep:
            print("work directory kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


def export_cases(h):
    """Family 7: `resnet export` in every format. A valid export exits 0 and leaves exactly its
    file in the (otherwise empty) output folder; a refused one exits 1 with one `Error:` line and
    leaves the folder empty: no file, no temporary. Returns (passed, failures)."""
    folder = os.path.join(h.work, "exports")
    model, run_dir = h.model, h.run
    # The fixture is resnet8 with option A, which has no shortcut tensors: under the name plain8
    # it is a valid model of a network with no PyTorch counterpart.
    data, n, header = read_safetensors(model)
    card = json.loads(header["__metadata__"]["resnet.model"])
    card["architecture"]["name"] = "plain8"
    header["__metadata__"]["resnet.model"] = json.dumps(card)
    plain = os.path.join(h.work, "plain8.safetensors")
    write_safetensors(plain, header, data[8 + n:])
    truncated = os.path.join(h.work, "truncated.safetensors")
    write_bytes(truncated, data[:len(data) // 2])

    def out(name):
        return os.path.join(folder, name)

    # The run's test.json goes into the exported card: a valid one is taken; a damaged one, or
    # another run's (other classes), is refused.
    def run_with_test(name, content=None, link=None):
        d = os.path.join(h.work, "run-test-" + name)
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(run_dir, d)
        if link:
            os.symlink(link, os.path.join(d, "test.json"))
        else:
            write_bytes(os.path.join(d, "test.json"), (content if isinstance(content, str) else json.dumps(content)).encode())
        return d
    valid = {"count": 30, "loss": 0.6, "top1": 0.8, "top5": 1.0, "per_class": [0.9, 0.8, 0.7],
             "confusion_matrix": [[9, 1, 0], [2, 8, 0], [0, 3, 7]], "classes": CLASSES}
    tested = run_with_test("valid", valid)
    damaged = [run_with_test("top1", dict(valid, top1=1.5)), run_with_test("diagonal", dict(valid, top1=0.7)),
               run_with_test("matrix", dict(valid, confusion_matrix=[[9, 1], [2, 8]])),
               run_with_test("classes", dict(valid, classes=["cat", "dog", "red"])),
               run_with_test("truncated", json.dumps(valid)[:40]), run_with_test("zero", link="/dev/zero")]

    cases = [  # (argv, file that must be written, or None: must be refused)
        (["export", model, "--out", out("m.safetensors")], "m.safetensors"),
        (["export", run_dir, "--format", "onnx", "--out", out("m.onnx")], "m.onnx"),
        (["export", model, "--out", out("m.onnx")], "m.onnx"),
        (["export", model, "--format", "onnx", "--raw", "--out", out("raw.onnx")], "raw.onnx"),
        (["export", model, "--format", "torchvision", "--out", out("t.safetensors")], "t.safetensors"),
        (["export", model, "--format", "torchvision", "--option-a-padding", "end", "--out", out("t.safetensors")], "t.safetensors"),
        (["export", plain, "--format", "onnx", "--out", out("plain.onnx")], "plain.onnx"),
        (["export", plain, "--format", "torchvision", "--out", out("t.safetensors")], None),
        (["export", truncated, "--format", "onnx", "--out", out("m.onnx")], None),
        (["export", truncated, "--format", "torchvision", "--out", out("t.safetensors")], None),
        (["export", model, "--format", "onnx", "--out", out("m.safetensors")], None),
        (["export", model, "--format", "torchvision", "--out", out("m.onnx")], None),
        (["export", model, "--raw", "--out", out("m.safetensors")], None),
        (["export", model, "--format", "onnx", "--option-a-padding", "end", "--out", out("m.onnx")], None),
        (["export", model, "--format", "torchvision", "--option-a-padding", "middle", "--out", out("t.safetensors")], None),
        (["export", model, "--format", "keras", "--out", out("m.keras")], None),
        (["export", model, "--format", "onnx", "--out", out("missing/m.onnx")], None),
        (["export", model, "--format", "onnx", "--out", out("dir.onnx")], None),  # a directory of that name exists
        (["export", model, "--format", "onnx", "--out", "/dev/null/m.onnx"], None),
        (["export", os.path.join(h.work, "nope.safetensors"), "--format", "onnx", "--out", out("m.onnx")], None),
        (["export", "/dev/zero", "--format", "torchvision", "--out", out("t.safetensors")], None),
        (["export", tested, "--out", out("m.safetensors")], "m.safetensors"),
    ] + [(["export", d, "--out", out("m.safetensors")], None) for d in damaged]
    passed, failures = 0, []
    for argv, written in cases:
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        if "dir.onnx" in argv[-1]:
            os.makedirs(out("dir.onnx"))
        rc, stdout, stderr = h.run_raw(argv, timeout=h.args.timeout * 3)
        left = sorted(f for f in os.listdir(folder) if f != "dir.onnx") + sorted(os.listdir(out("dir.onnx")) if os.path.isdir(out("dir.onnx")) else [])
        errors = [l for l in stderr.splitlines() if l.startswith("Error:")]
        name = shell_quote(argv)
        if written:
            if rc != 0:
                failures.append("%s: valid export refused (exit %d): %s" % (name, rc, last_line(stderr)))
            elif left != [written] or os.path.getsize(out(written)) == 0:
                failures.append("%s: the folder holds %s, not just %s" % (name, left, written))
            else:
                passed += 1
        elif rc != 1 or len(errors) != 1 or not last_line(stderr).startswith("Error:"):
            failures.append("%s: exit %d with %d Error: lines (must be 1 and 1): %s" % (name, rc, len(errors), last_line(stderr)))
        elif left:
            failures.append("%s: refused, but left %s behind" % (name, left))
        else:
            passed += 1
    # The valid test.json's figures are in the exported card.
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    rc, stdout, stderr = h.run_raw(["export", tested, "--out", out("m.safetensors")])
    metrics = json.loads(read_safetensors(out("m.safetensors"))[2]["__metadata__"]["resnet.model"])["provenance"].get("metrics", {}) if rc == 0 else {}
    if metrics.get("test_top1") == 0.8 and metrics.get("test_top5") == 1.0:
        passed += 1
    else:
        failures.append("export of a run with a valid test.json: exit %d, card metrics %s (want test_top1 0.8, test_top5 1.0)" % (rc, metrics))
    print("export: %d cases, %d passed" % (len(cases) + 1, passed), flush=True)
    return passed, failures


def tensor_bytes(path):
    """The tensors of a safetensors file by name, as raw bytes (metadata such as card dates aside)."""
    data, n, header = read_safetensors(path)
    body = data[8 + n:]
    return {k: body[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in header.items() if k != "__metadata__"}


def kill_and_resume(h, trials, rng):
    """Family 6: `kill -9` at random moments, mid-write included, then `--resume`, until the run
    finishes; its weights and optimizer buffers must be bitwise those of an uninterrupted run,
    and no temporary file may be left. Returns (passed, failures)."""
    base = ["train", "--model", "resnet8", "--dataset", "folder", "--data", h.data, "--iterations", "200",
            "--batch-size", "16", "--validation", "12", "--skip-test", "--seed", "3", "--deterministic",
            "--threads", "1", "--precision", "fp32"]
    reference = os.path.join(h.work, "kill-reference")
    start = time.monotonic()
    rc, _, err = h.run_raw(base + ["--run-dir", reference], timeout=300)
    length = time.monotonic() - start
    if rc != 0:
        return 0, ["uninterrupted reference run failed (exit %d): %s" % (rc, last_line(err))]
    expected = tensor_bytes(os.path.join(reference, "last.safetensors"))
    passed, failures, kills = 0, [], 0
    for trial in range(trials):
        run_dir = os.path.join(h.work, "kill-%d" % trial)
        argv = base + ["--run-dir", run_dir]
        for attempt in range(60):
            p = subprocess.Popen([h.resnet] + argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, env=h.env, cwd=h.work)
            try:
                _, err = p.communicate(timeout=rng.uniform(0.02, 0.9 * length))
                rc = p.returncode
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()
                kills += 1
                rc = None
            if rc == 0:
                break
            if rc is not None and rc != 0:
                failures.append("trial %d: exit %d: %s" % (trial, rc, last_line(err.decode("utf-8", "replace"))))
                break
            # Killed: continue the run if it had written its first checkpoint, else start afresh.
            argv = (["train", "--resume", run_dir] if os.path.exists(os.path.join(run_dir, "last.safetensors"))
                    else base + ["--run-dir", run_dir])
            if argv[:2] != ["train", "--resume"]:
                shutil.rmtree(run_dir, ignore_errors=True)
        else:
            failures.append("trial %d: did not finish in 60 attempts" % trial)
            continue
        if rc != 0:
            continue
        got = tensor_bytes(os.path.join(run_dir, "last.safetensors"))
        leftovers = [f for f in os.listdir(run_dir) if f.endswith(".tmp")]
        if got != expected:
            differing = sorted(k for k in set(got) | set(expected) if got.get(k) != expected.get(k))
            failures.append("trial %d: weights differ from the uninterrupted run (%d tensors, e.g. %s)"
                            % (trial, len(differing), differing[:3]))
        elif leftovers:
            failures.append("trial %d: temporary files left: %s" % (trial, leftovers))
        else:
            passed += 1
    print("kill -9 / resume: %d trials, %d kills (runs of %.1f s), %d bitwise equal to the uninterrupted run"
          % (trials, kills, length, passed), flush=True)
    return passed, failures


def run(args, work, started):
    h = Harness(args, work)
    if not h.make_fixtures():
        print("0 passed, 1 failed")
        return 1
    n = max(args.cases, 100)
    families = set(args.family or ["0", "1", "2", "3", "4", "5", "6", "7"])
    if "0" in families:
        h.baselines()
    if "1" in families:
        h.family_model(int(n * 0.62))
    if "2" in families:
        h.family_images(int(n * 0.25))
    if "3" in families:
        h.family_options()
    if "4" in families:
        h.family_runfiles()
    if "5" in families:
        h.family_resume()
    for note in h.notes:
        print(note, flush=True)
    per_family = {}
    for c in h.cases:
        per_family[c.family] = per_family.get(c.family, 0) + 1
    print("cases: %s (fixtures took %.0fs)" % (", ".join("%s %d" % kv for kv in sorted(per_family.items())),
                                                time.monotonic() - started), flush=True)
    passed = failed = skipped = 0
    failures = []
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for case, status, why, rc, last in pool.map(lambda c: run_case(h, c), h.cases):
            if status == "pass":
                passed += 1
                if args.verbose or why:
                    print("ok   [%s] %s %s" % (case.family, case.name, why), flush=True)
            elif status == "skip":
                skipped += 1
                print("SKIP [%s] %s: %s" % (case.family, case.name, why), flush=True)
            else:
                failed += 1
                failures.append((case, why, rc, last))
                print("FAIL [%s] %s | resnet %s | %s | rc=%s | %s" % (case.family, case.name, shell_quote(case.argv),
                                                                     why, rc, last[:300]), flush=True)
    if "6" in families:
        ok, problems = kill_and_resume(h, args.kill_trials, random.Random(args.seed + 6))
        passed += ok
        failed += len(problems)
        for problem in problems:
            print("FAIL [6-kill-resume] %s" % problem, flush=True)
    if "7" in families:
        ok, problems = export_cases(h)
        passed += ok
        failed += len(problems)
        for problem in problems:
            print("FAIL [7-export] %s" % problem, flush=True)
    print("time: %.0fs" % (time.monotonic() - started))
    summary = "%d passed, %d failed" % (passed, failed)
    if skipped:
        summary += ", %d skipped" % skipped
    print(summary)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
