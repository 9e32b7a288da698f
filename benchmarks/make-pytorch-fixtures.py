#!/usr/bin/env python3
"""Writes the PyTorch checkpoint fixtures of Tests/ResNetDataTests/Fixtures/pytorch.

Usage (a venv outside the repository, with torch and numpy from PyPI):
    python3 -m venv /work/venv-torch && /work/venv-torch/bin/pip install torch numpy
    /work/venv-torch/bin/python benchmarks/make-pytorch-fixtures.py [OUT]

OUT defaults to Tests/ResNetDataTests/Fixtures/pytorch. Every file is written by torch.save
itself except the hostile ones, whose pickles are written opcode by opcode (never run).
`expected.json` holds, for each fixture, the state_dict's names, shapes, dtypes and values in
row-major order: float values as the hex bit patterns of float32 (after torch's own `.float()`
for float16, bfloat16 and float64), int64 values as integers. The fixtures are deterministic
for one torch version (seeded); the committed ones were made with torch 2.13.0+cpu, numpy 2.4.6,
Python 3.11.
"""
import collections
import io
import json
import os
import struct
import sys
import zipfile

import torch

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "ResNetDataTests", "Fixtures", "pytorch")
os.makedirs(OUT, exist_ok=True)
expected = {}


def record(name, state):
    """Remembers what the reader must return for fixture `name`."""
    tensors = []
    for key, tensor in state.items():
        entry = {"name": key, "shape": list(tensor.shape), "dtype": str(tensor.dtype).replace("torch.", "")}
        flat = tensor.contiguous().reshape(-1)
        if tensor.dtype.is_floating_point:
            entry["bits"] = ["%08x" % struct.unpack("<I", struct.pack("<f", v))[0] for v in flat.float().tolist()]
        else:
            entry["ints"] = [int(v) for v in flat.tolist()]
        tensors.append(entry)
    expected[name] = tensors


def save(name, state, **options):
    torch.save(state, os.path.join(OUT, name), **options)
    record(name, state)


class Tiny(torch.nn.Module):
    """A Conv2d + BatchNorm2d + Linear: the kinds of tensors a ResNet's state_dict holds."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, bias=False)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(8, 3)


torch.manual_seed(15)
model = Tiny()
with torch.no_grad():
    for tensor in (model.bn.weight, model.bn.bias, model.bn.running_mean):
        tensor.copy_(torch.randn_like(tensor))
    model.bn.running_var.copy_(torch.rand(4) + 0.5)
    model.bn.num_batches_tracked.fill_(1234567)
state = model.state_dict()

save("float32.pth", state)
save("float16.pth", collections.OrderedDict((k, v.half() if v.is_floating_point() else v) for k, v in state.items()))
save("bfloat16.pth", collections.OrderedDict((k, v.bfloat16() if v.is_floating_point() else v) for k, v in state.items()))

# Views: a transposed (non-contiguous) weight, two tensors sharing one storage at offsets, a
# strided slice, a scalar and a float64 tensor.
base = torch.randn(40)
wide = torch.randn(5, 3)
views = collections.OrderedDict([
    ("transposed", wide.t()),
    ("first", base[2:8].view(2, 3)),
    ("second", base[5:17].view(3, 4)),
    ("every_third", base[1::3]),
    ("column", base[:36].view(6, 6)[:, 4]),
    ("scalar", base[7]),
    ("double", torch.randn(2, 3, dtype=torch.float64)),
    ("empty", base[3:3].view(0, 5)),
])
assert not views["transposed"].is_contiguous() and views["first"].untyped_storage().data_ptr() == views["second"].untyped_storage().data_ptr()
save("views.pth", views)

save("legacy.pth", state, _use_new_zipfile_serialization=False)
save("legacy-views.pth", views, _use_new_zipfile_serialization=False)

# The float32 archive with its members deflated (PyTorch writes them stored; other zip tools may not).
with zipfile.ZipFile(os.path.join(OUT, "float32.pth")) as source, \
        zipfile.ZipFile(os.path.join(OUT, "deflated.pth"), "w", zipfile.ZIP_DEFLATED) as target:
    for info in source.infolist():
        target.writestr(info.filename, source.read(info.filename))
expected["deflated.pth"] = expected["float32.pth"]

# The float32 archive claiming big-endian data: refused.
with zipfile.ZipFile(os.path.join(OUT, "float32.pth")) as source, \
        zipfile.ZipFile(os.path.join(OUT, "bigendian.pth"), "w", zipfile.ZIP_STORED) as target:
    for info in source.infolist():
        data = b"big" if info.filename.endswith("/byteorder") else source.read(info.filename)
        target.writestr(info.filename, data)

# A whole pickled module (not a state_dict): refused, naming the module class.
torch.save(model, os.path.join(OUT, "module.pth"))


def malicious_pickle():
    """OrderedDict({'weight': os.system('touch /tmp/pwned-by-pth')}), by hand: GLOBAL + REDUCE."""
    command = b"touch /tmp/pwned-by-pth"
    return (b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01("
            + b"X" + struct.pack("<I", 6) + b"weight"
            + b"cos\nsystem\nq\x02"
            + b"X" + struct.pack("<I", len(command)) + command + b"\x85R"
            + b"u.")


# The zip layout torch.save writes, with the hostile pickle as data.pkl (written by torch's own
# archive writer so that only the pickle differs from a real checkpoint).
writer = torch._C.PyTorchFileWriter(os.path.join(OUT, "malicious.pth"))
payload = malicious_pickle()
writer.write_record("data.pkl", payload, len(payload))
writer.write_record("byteorder", b"little", 6)
writer.write_record("version", b"3\n", 2)
writer.write_end_of_file()
del writer

# The legacy stream with the hostile pickle as its main pickle.
import pickle  # noqa: E402
stream = io.BytesIO()
pickle.dump(0x1950A86A20F9469CFC6C, stream, protocol=2)
pickle.dump(1001, stream, protocol=2)
pickle.dump({"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}, stream, protocol=2)
stream.write(malicious_pickle())
pickle.dump([], stream, protocol=2)
with open(os.path.join(OUT, "malicious-legacy.pth"), "wb") as f:
    f.write(stream.getvalue())

with open(os.path.join(OUT, "expected.json"), "w") as f:
    json.dump({"torch": torch.__version__, "fixtures": expected}, f, indent=0, sort_keys=True)
    f.write("\n")
assert not os.path.exists("/tmp/pwned-by-pth")
total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
print("wrote %d files, %d bytes, to %s (torch %s)" % (len(os.listdir(OUT)), total, OUT, torch.__version__))
