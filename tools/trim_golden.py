#!/usr/bin/env python3
"""Builds tests/golden/ (the reference tensors that ship with the repo) from the full set.

Usage: python3 tools/trim_golden.py SRC_DIR [DST_DIR]   (DST_DIR defaults to tests/golden)

Standard library only. A safetensors file is an 8-byte little-endian header length, a JSON
header ({name: {dtype, shape, data_offsets}} plus an optional "__metadata__" of strings) and the
raw little-endian data; trimming rewrites the header and copies the kept bytes.

What the tests read, and therefore what is kept:
- linear_ops_small.safetensors, whole (every tensor of every prefix is compared):
  tests/delta_rule_kernel_test.cpp (kda., gdn., deltanet., simple_gla.: inputs, o, ht and all
  gradients), tests/attention_kernel_test.cpp (attention.*), tests/safetensors_test.cpp
  (shapes, dtypes, metadata, file order), tests/verify_test.cpp through `kimi-lab verify`, and on
  the GPU tests/cuda/cuda_parity_golden.cpp, tests/cuda/attention_test.cpp. The shapes
  (B=2, T=100, H=2, K=32, V=48) are written into those tests, so nothing can be cut.
- layers_small.safetensors, whole: tests/layers_golden_test.cpp and `kimi-lab verify` check every
  parameter, output and gradient of the three layers (kda_layer., gdn_layer., mamba2_layer.).
- kimi_tiny/{config.json, model.safetensors, reference.safetensors}, whole:
  tests/kimi_linear_test.cpp, tests/safetensors_test.cpp, tests/cuda/layer_parity_test.cpp
  (the model loads every weight; the logits are compared in full).
- zoology_mqar.safetensors, trimmed: tests/tasks_mqar_test.cpp
  (Tasks.ZoologyFormMatchesZoologyTestSetStatistics) reads all four slices (T64_kv4, T128_kv8,
  T256_kv16, T512_kv64; .inputs and .labels) but only for statistics (keys/values ranges, labels
  per row, mean query gap, share of short gaps), and derives the number of rows from the size.
  The first ZOOLOGY_ROWS of the 500 rows give the same statistics within 2% (the test allows
  10% and 0.05), so the file is cut to those rows: 1.9 MB instead of 3.8 MB.
"""
import json
import os
import shutil
import struct
import sys

ZOOLOGY_ROWS = 250
WHOLE = ["linear_ops_small.safetensors", "layers_small.safetensors",
         "kimi_tiny/config.json", "kimi_tiny/model.safetensors",
         "kimi_tiny/reference.safetensors"]


def read_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    return header, blob[8 + n:]


def write_safetensors(path, metadata, tensors):
    """tensors: list of (name, dtype, shape, bytes), written in that order."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape,
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # data starts 8-byte aligned, as the reference writer does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for _, _, _, data in tensors:
            f.write(data)


def trim_rows(src, dst, rows):
    """Keeps the first `rows` rows (dimension 0) of every tensor, in file order."""
    header, data = read_safetensors(src)
    metadata = dict(header.pop("__metadata__", {}))
    out = []
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        begin, end = info["data_offsets"]
        shape = list(info["shape"])
        row_bytes = (end - begin) // shape[0]
        keep = min(rows, shape[0])
        out.append((name, info["dtype"], [keep] + shape[1:],
                    data[begin:begin + keep * row_bytes]))
    metadata["trimmed"] = ("first %d rows of each slice kept by tools/trim_golden.py "
                           "(the statistics test reads them all)" % rows)
    write_safetensors(dst, metadata, out)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    src = sys.argv[1]
    dst = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden")
    os.makedirs(os.path.join(dst, "kimi_tiny"), exist_ok=True)
    for rel in WHOLE:
        shutil.copyfile(os.path.join(src, rel), os.path.join(dst, rel))
    trim_rows(os.path.join(src, "zoology_mqar.safetensors"),
              os.path.join(dst, "zoology_mqar.safetensors"), ZOOLOGY_ROWS)
    for root, _, files in os.walk(dst):
        for name in sorted(files):
            path = os.path.join(root, name)
            print("%9d  %s" % (os.path.getsize(path), os.path.relpath(path, dst)))


if __name__ == "__main__":
    main()
