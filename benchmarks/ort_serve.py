#!/usr/bin/env python3
"""A minimal onnxruntime HTTP server, the baseline `benchmarks/load-serve --ort` compares
`resnet serve` with (issue 16): what a deployment user would write in an afternoon.

    ort_serve.py MODEL.onnx --port 8090 [--threads 2]

POST /v1/classify with a JPEG or PNG body answers {"predictions": [{"class", "index",
"probability"}, ...]} (top 5), like `resnet serve`; GET /healthz answers {"status": "ok"}.
MODEL.onnx is `resnet export MODEL --format onnx`: its input `image` is RGB in 0..1 after the
card's resize (this server stretches to the input size with Pillow's bilinear filter, as
`resnet predict` does for models trained here), the normalization and softmax are inside it.
One session, shared by the request threads (onnxruntime's `run` is thread-safe), batch 1 per
request: no dynamic batching, as a minimal server has none. Needs numpy, Pillow, onnxruntime.
"""
import argparse
import io
import json
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import onnxruntime
from PIL import Image


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    args = parser.parse_args()

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = onnxruntime.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    classes = json.loads(session.get_modelmeta().custom_metadata_map["resnet.classes"])
    _, channels, height, width = session.get_inputs()[0].shape

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/healthz":
                self.answer(200, {"status": "ok"})
            else:
                self.answer(404, {"error": "not found"})

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if not self.path.startswith("/v1/classify"):
                self.answer(404, {"error": "not found"})
                return
            try:
                image = Image.open(io.BytesIO(body)).convert("L" if channels == 1 else "RGB")
                image = image.resize((width, height), Image.BILINEAR)
            except Exception as error:  # noqa: BLE001 - any undecodable body is the client's error
                self.answer(400, {"error": str(error)})
                return
            x = np.asarray(image, dtype=np.float32).reshape(height, width, channels).transpose(2, 0, 1)[None] / 255
            p = session.run(["probabilities"], {"image": x})[0][0]
            top = np.argsort(-p, kind="stable")[:5]
            self.answer(200, {"predictions": [{"class": classes[k], "index": int(k), "probability": float(p[k])} for k in top]})

        def setup(self):
            super().setup()
            # Headers and body go out in two writes: without this, Nagle's algorithm and the
            # client's delayed ACK add ~40 ms to every keep-alive answer.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *_):
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 256   # the listen backlog (Python's default, 5, refuses wrk's 64 connections)

    Server((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
