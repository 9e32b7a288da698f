import Foundation
@testable import ResNetData

/// CIFAR fixtures written by Python with numpy, in every pickle flavour the loader must read,
/// beside the binary version of the same arrays.
///
/// `python3 generator OUT full` writes, from one set of random arrays:
/// - `bin10/cifar-10-batches-bin`, `bin100/cifar-100-binary` (the binary layouts);
/// - `py10-V/cifar-10-batches-py` and `py100-V/cifar-100-python` for each variant V:
///   `p2` `p3` `p4` `p5` (Python 3 `pickle.dump` with numpy 2 paths), `p2-np1` `p4-np1` `p5-np1`
///   (the numpy 1 module paths `numpy.core...`), `py2` (written opcode by opcode the way Python 2's
///   cPickle wrote the official files: byte strings, `BINSTRING` data, int dtype flags) and
///   `p4-arrays` (labels as an int64 array, data as `[N, 3, 32, 32]`).
///
/// `python3 generator OUT tiny` writes only a 2-image CIFAR-10 batch and meta per variant, with a
/// pixel pattern that compresses well: the source of the embedded fixtures in `EmbeddedPickles`.
enum PythonFixtures {
    static let script = #"""
import os, sys, pickle, struct, warnings
import numpy as np
warnings.simplefilter('ignore')

out, mode = sys.argv[1], sys.argv[2]
tiny = mode == 'tiny'
CLASSES = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']
FINE = ['fine%02d' % i for i in range(100)]
COARSE = ['coarse%02d' % i for i in range(20)]
rng = np.random.RandomState(7)

def images(n):
    if tiny:
        i = np.arange(n * 3072, dtype=np.int64)
        return ((i * 7) % 251).astype(np.uint8).reshape(n, 3072)
    return rng.randint(0, 256, size=(n, 3072)).astype(np.uint8)

def numpy1(data):
    """numpy 2's module paths rewritten to numpy 1's, fixing the first frame's length."""
    for old, new in ((b'numpy._core.multiarray', b'numpy.core.multiarray'), (b'numpy._core.numeric', b'numpy.core.numeric')):
        data = data.replace(b'c' + old + b'\n', b'c' + new + b'\n')
        short_old, short_new = b'\x8c' + bytes([len(old)]) + old, b'\x8c' + bytes([len(new)]) + new
        at = data.find(short_old)
        if at >= 0:
            data = data[:at] + short_new + data[at + len(short_old):]
            if data[2:3] == b'\x95':
                (length,) = struct.unpack('<Q', data[3:11])
                assert at < 11 + length
                data = data[:3] + struct.pack('<Q', length - 1) + data[11:]
    assert b'numpy._core' not in data
    return data

class Py2:
    """A pickle as Python 2's cPickle wrote the official CIFAR files (protocol 2)."""
    def __init__(self):
        self.out, self.memo = bytearray(b'\x80\x02'), 0
    def put(self):
        self.out += (b'q' + bytes([self.memo])) if self.memo < 256 else (b'r' + struct.pack('<I', self.memo))
        self.memo += 1
    def string(self, s):
        self.out += (b'U' + bytes([len(s)]) + s) if len(s) < 256 else (b'T' + struct.pack('<i', len(s)) + s)
        self.put()
    def integer(self, v):
        if 0 <= v < 256: self.out += b'K' + bytes([v])
        elif 0 <= v < 65536: self.out += b'M' + struct.pack('<H', v)
        else: self.out += b'J' + struct.pack('<i', v)
    def glob(self, module, name):
        self.out += b'c' + module + b'\n' + name + b'\n'
        self.put()
    def value(self, v):
        if isinstance(v, str): self.string(v.encode('latin1'))
        elif isinstance(v, bytes): self.string(v)
        elif isinstance(v, int): self.integer(v)
        elif isinstance(v, np.ndarray): self.array(v)
        elif isinstance(v, list):
            self.out += b']'; self.put()
            for start in range(0, len(v), 1000):
                chunk = v[start:start + 1000]
                if len(chunk) == 1:
                    self.value(chunk[0]); self.out += b'a'
                else:
                    self.out += b'('
                    for x in chunk: self.value(x)
                    self.out += b'e'
        elif isinstance(v, dict):
            self.out += b'}'; self.put(); self.out += b'('
            for k, x in v.items(): self.value(k); self.value(x)
            self.out += b'u'
        else:
            raise TypeError(type(v))
    def array(self, a):
        assert a.dtype == np.uint8
        self.glob(b'numpy.core.multiarray', b'_reconstruct')
        self.glob(b'numpy', b'ndarray')
        self.out += b'K\x00\x85'; self.put()
        self.string(b'b')
        self.out += b'\x87'; self.put(); self.out += b'R'; self.put()
        self.out += b'(K\x01'
        for d in a.shape: self.integer(d)
        self.out += {1: b'\x85', 2: b'\x86', 3: b'\x87'}[a.ndim]; self.put()
        self.glob(b'numpy', b'dtype')
        self.string(b'u1'); self.out += b'K\x00K\x01\x87'; self.put(); self.out += b'R'; self.put()
        self.out += b'(K\x03'; self.string(b'|')
        self.out += b'NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t'; self.put(); self.out += b'b'
        self.out += b'\x89'; self.string(a.tobytes()); self.out += b't'; self.put(); self.out += b'b'
    def finish(self):
        return bytes(self.out + b'.')

def py2(obj):
    w = Py2(); w.value(obj); return w.finish()

def dump(obj, variant):
    if variant == 'py2':
        return py2(obj)
    protocol = int(variant[1])
    data = pickle.dumps(obj, protocol=protocol)
    return numpy1(data) if variant.endswith('np1') else data

VARIANTS = ['p2', 'p3', 'p4', 'p5', 'p2-np1', 'p4-np1', 'p5-np1', 'py2', 'p4-arrays']

def batch(keys, x, labels, variant, name):
    """A CIFAR batch dict: byte-string keys and values as in the official files."""
    d = {b'batch_label': ('training batch %s' % name).encode()}
    for key, y in zip(keys, labels):
        d[key] = np.array(y, dtype=np.int64) if variant == 'p4-arrays' else [int(v) for v in y]
    d[b'data'] = x.reshape(len(x), 3, 32, 32) if variant == 'p4-arrays' else x
    d[b'filenames'] = [('img_%d.png' % i).encode() for i in range(len(x))]
    return d

def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f: f.write(data)

def check(data, obj):
    """The pickle must load in Python to the same object."""
    back = pickle.loads(data, encoding='bytes')
    assert back.keys() == obj.keys()
    for k in obj:
        assert np.array_equal(np.asarray(back[k]), np.asarray(obj[k])), k

if tiny:
    x = images(2)
    for variant in VARIANTS:
        if variant == 'p4-arrays': continue
        d = batch([b'labels'], x, [[3, 7]], variant, '1 of 5')
        data = dump(d, variant); check(data, d)
        write(os.path.join(out, variant, 'data_batch'), data)
        meta = {b'label_names': [c.encode() for c in CLASSES], b'num_cases_per_batch': 10000, b'num_vis': 3072}
        write(os.path.join(out, variant, 'batches.meta'), dump(meta, variant))
    sys.exit(0)

# CIFAR-10: five training batches of 6 images and a test batch of 5.
xs = [images(6) for _ in range(5)]; ys = [list(rng.randint(0, 10, size=6)) for _ in range(5)]
xt = images(5); yt = list(rng.randint(0, 10, size=5))
binary = os.path.join(out, 'bin10', 'cifar-10-batches-bin')
for i in range(5):
    write(os.path.join(binary, 'data_batch_%d.bin' % (i + 1)), np.concatenate([np.array(ys[i], dtype=np.uint8)[:, None], xs[i]], axis=1).tobytes())
write(os.path.join(binary, 'test_batch.bin'), np.concatenate([np.array(yt, dtype=np.uint8)[:, None], xt], axis=1).tobytes())
write(os.path.join(binary, 'batches.meta.txt'), ('\n'.join(CLASSES) + '\n\n').encode())
for variant in VARIANTS:
    folder = os.path.join(out, 'py10-' + variant, 'cifar-10-batches-py')
    for i in range(5):
        d = batch([b'labels'], xs[i], [ys[i]], variant, '%d of 5' % (i + 1))
        data = dump(d, variant); check(data, d)
        write(os.path.join(folder, 'data_batch_%d' % (i + 1)), data)
    write(os.path.join(folder, 'test_batch'), dump(batch([b'labels'], xt, [yt], variant, 'test'), variant))
    meta = {b'label_names': [c.encode() for c in CLASSES], b'num_cases_per_batch': 6, b'num_vis': 3072}
    write(os.path.join(folder, 'batches.meta'), dump(meta, variant))

# CIFAR-100: 7 training and 4 test images, coarse and fine labels.
splits = {}
for split, n in (('train', 7), ('test', 4)):
    splits[split] = (images(n), list(rng.randint(0, 20, size=n)), list(rng.randint(0, 100, size=n)))
binary = os.path.join(out, 'bin100', 'cifar-100-binary')
for split, (x, coarse, fine) in splits.items():
    write(os.path.join(binary, split + '.bin'), np.concatenate([np.array(coarse, dtype=np.uint8)[:, None], np.array(fine, dtype=np.uint8)[:, None], x], axis=1).tobytes())
write(os.path.join(binary, 'fine_label_names.txt'), '\n'.join(FINE).encode())
write(os.path.join(binary, 'coarse_label_names.txt'), '\n'.join(COARSE).encode())
for variant in VARIANTS:
    folder = os.path.join(out, 'py100-' + variant, 'cifar-100-python')
    for split, (x, coarse, fine) in splits.items():
        d = batch([b'fine_labels', b'coarse_labels'], x, [fine, coarse], variant, split)
        data = dump(d, variant); check(data, d)
        write(os.path.join(folder, split), data)
    write(os.path.join(folder, 'meta'), dump({b'fine_label_names': [n.encode() for n in FINE], b'coarse_label_names': [n.encode() for n in COARSE]}, variant))
"""#

    /// The variants `full` mode writes.
    static let variants = ["p2", "p3", "p4", "p5", "p2-np1", "p4-np1", "p5-np1", "py2", "p4-arrays"]

    /// The `full` fixtures, generated once into the test cache (a folder named after the
    /// script's MD5, so a changed script regenerates them), or why Python could not make them.
    static let full: Result<String, PythonUnavailable> = {
        let folder = testCacheRoot + "/pickle-fixtures-" + MD5.hexDigest(of: Array(script.utf8))
        if FileManager.default.fileExists(atPath: folder) { return .success(folder) }
        return generate(mode: "full", into: folder)
    }()

    /// Runs the generator into a staging folder and renames it to `folder` when it succeeds.
    static func generate(mode: String, into folder: String) -> Result<String, PythonUnavailable> {
        let python: String
        switch numpyPython {
        case .success(let found): python = found
        case .failure(let failure): return .failure(failure)
        }
        let staging = folder + ".staging-\(getpid())"
        let scriptPath = staging + ".py"
        defer {
            try? FileManager.default.removeItem(atPath: scriptPath)
            try? FileManager.default.removeItem(atPath: staging)
        }
        do {
            try FileManager.default.createDirectory(atPath: testCacheRoot, withIntermediateDirectories: true)
            try Data(script.utf8).write(to: URL(fileURLWithPath: scriptPath))
            let result = try runProcess(python, [scriptPath, staging, mode])
            guard result.status == 0 else { return .failure(PythonUnavailable(reason: "the fixture generator failed: \(result.output)")) }
            try FileManager.default.moveItem(atPath: staging, toPath: folder)
            return .success(folder)
        } catch {
            return .failure(PythonUnavailable(reason: "cannot generate the fixtures with \(python): \(error)"))
        }
    }
}
