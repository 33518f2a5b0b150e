#!/usr/bin/env python3
"""Generate a large, deterministic test image set and push it to a registry over the distribution API.

Pushes REGISTRY/bench/kernel:v1 (a fake kernel + modules tar) and REGISTRY/bench/big:v1 (several
gzip layers of thousands of files, half compressible text and half random bytes, seeded so every run
produces the same bytes), then writes a spec that uses them.

Usage: make_image.py REGISTRY SPEC_OUT [TOTAL_MB]
"""

import gzip
import hashlib
import io
import json
import random
import sys
import tarfile
import tempfile
import urllib.request

MTIME = 1700000000
WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore "
         "et dolore magna aliqua kernel module service container overlay namespace cgroup").split()


def file_bytes(rng, size):
    """Half compressible text, half random bytes."""
    text_len = size // 2
    words = []
    length = 0
    while length < text_len:
        w = rng.choice(WORDS)
        words.append(w)
        length += len(w) + 1
    text = " ".join(words).encode()[:text_len]
    return text + rng.randbytes(size - len(text))


def add(tar, name, data=None, mode=0o644, kind=tarfile.REGTYPE):
    info = tarfile.TarInfo(name)
    info.mtime = MTIME
    info.mode = mode
    info.type = kind
    if data is not None:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    else:
        tar.addfile(info)


def layer(build, path):
    """Writes a gzip layer with build(tar); returns (digest, size, uncompressed bytes, diff_id)."""
    raw = tempfile.TemporaryFile()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        build(tar)
    uncompressed = raw.tell()
    raw.seek(0)
    diff_id = hashlib.sha256()
    with open(path, "wb") as out:
        with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1, mtime=0) as gz:
            while chunk := raw.read(1 << 20):
                diff_id.update(chunk)
                gz.write(chunk)
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return "sha256:" + h.hexdigest(), size, uncompressed, "sha256:" + diff_id.hexdigest()


def request(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req) as resp:
        return resp.status, dict(resp.headers), resp.read()


def push_blob(registry, repo, path_or_bytes, digest, size):
    _, headers, _ = request("POST", f"http://{registry}/v2/{repo}/blobs/uploads/")
    location = headers["Location"]
    if location.startswith("/"):
        location = f"http://{registry}{location}"
    sep = "&" if "?" in location else "?"
    body = path_or_bytes if isinstance(path_or_bytes, bytes) else open(path_or_bytes, "rb")
    request("PUT", f"{location}{sep}digest={digest}", body,
            {"Content-Length": str(size), "Content-Type": "application/octet-stream"})


def push_image(registry, repo, tag, layers, config):
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
    push_blob(registry, repo, config_bytes, config_digest, len(config_bytes))
    for path, digest, size in layers:
        push_blob(registry, repo, path, digest, size)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                   "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": s}
                   for _, d, s in layers],
    }
    request("PUT", f"http://{registry}/v2/{repo}/manifests/{tag}", json.dumps(manifest).encode(),
            {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})


def image_config(diff_ids, **extra):
    config = {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
              "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": extra}
    return config


def main():
    registry, spec_out = sys.argv[1], sys.argv[2]
    total_mb = int(sys.argv[3]) if len(sys.argv) > 3 else 600
    rng = random.Random(42)
    work = tempfile.mkdtemp()
    uncompressed_total = 0

    # The kernel image: a 12 MB "kernel" and a modules tar.
    modules = io.BytesIO()
    with tarfile.open(fileobj=modules, mode="w", format=tarfile.USTAR_FORMAT) as mt:
        add(mt, "lib/", kind=tarfile.DIRTYPE, mode=0o755)
        for i in range(200):
            add(mt, f"lib/modules/6.6.0/kernel/m{i}.ko", file_bytes(rng, 20_000))
    kernel_data = file_bytes(rng, 12 << 20)

    def kernel_layer(tar):
        add(tar, "kernel", kernel_data)
        add(tar, "kernel.tar", modules.getvalue())
    k_digest, k_size, k_raw, k_diff_id = layer(kernel_layer, f"{work}/kernel.tar.gz")
    uncompressed_total += k_raw
    push_image(registry, "bench/kernel", "v1", [(f"{work}/kernel.tar.gz", k_digest, k_size)],
               image_config([k_diff_id]))

    # The big image: layers of ~150 MB each, ~150 KB per file on average.
    layers = []
    diff_ids = []
    per_layer = 150 << 20
    remaining = total_mb << 20
    index = 0
    while remaining > 0:
        budget = min(per_layer, remaining)

        def big_layer(tar, budget=budget, index=index):
            used = 0
            n = 0
            add(tar, f"data{index}/", kind=tarfile.DIRTYPE, mode=0o755)
            while used < budget:
                size = min(rng.randint(1_000, 300_000), budget - used)
                add(tar, f"data{index}/d{n // 100}/f{n}.bin", file_bytes(rng, size))
                used += size
                n += 1
        path = f"{work}/big{index}.tar.gz"
        digest, size, raw, diff_id = layer(big_layer, path)
        uncompressed_total += raw
        layers.append((path, digest, size))
        diff_ids.append(diff_id)
        remaining -= budget
        index += 1
    push_image(registry, "bench/big", "v1", layers,
               image_config(diff_ids, Cmd=["/bin/true"]))

    with open(spec_out, "w") as spec:
        spec.write(f"kernel:\n  image: {registry}/bench/kernel:v1\n  cmdline: console=ttyS0\n"
                   f"onboot:\n  - name: big\n    image: {registry}/bench/big:v1\n")
    print(uncompressed_total)


if __name__ == "__main__":
    main()
