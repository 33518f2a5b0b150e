#!/usr/bin/env bash
# `moby push gcp` benchmark: examples/linuxkit.yml built as gcp, plain and with an extra 600 MB
# file of incompressible data, pushed to a local Cloud Storage emulator (scripts/gcs-emulator.sh)
# with a stand-in Compute Engine that accepts the image at once. Prints the archive size, the
# push's wall time (archive check + upload + import), upload throughput and peak RSS. The
# emulator (Python) is the bottleneck here, not moby: the figures bound moby's own cost from above.
#
# Usage: scripts/bench/gcp.sh        (packages must be in the cache: scripts/build-packages.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q --bin moby
scripts/gcs-emulator.sh >/dev/null
moby="$PWD/target/release/moby"
work="$(mktemp -d)"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

storage_port=$(free_port)
target/gcs-emulator/bin/gcp-storage-emulator start --host 127.0.0.1 --port "$storage_port" --in-memory -q \
  --default-bucket bench >/dev/null 2>&1 &
pids+=($!)
compute_port=$(free_port)
cat >"$work/compute.py" <<'PY'
import http.server, json, sys
class Compute(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args): pass
    def answer(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):  # images.get: no such image yet
        self.answer(404, {"error": {"code": 404, "message": "not found", "errors": [{"reason": "notFound"}]}})
    def do_POST(self):  # images.insert: done at once
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.answer(200, {"name": "op", "status": "DONE"})
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Compute).serve_forever()
PY
python3 "$work/compute.py" "$compute_port" &
pids+=($!)
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$work/key.pem" 2>/dev/null
python3 -c 'import json,sys; json.dump({"type": "service_account", "project_id": "bench", "private_key_id": "k",
  "private_key": open(sys.argv[1]).read(), "client_email": "bench@bench.iam.gserviceaccount.com",
  "client_id": "1", "token_uri": "http://127.0.0.1:9/token"}, open(sys.argv[2], "w"))' "$work/key.pem" "$work/key.json"
sleep 1

push() { # label, archive
  local label="$1" archive="$2" size
  size=$(stat -c %s "$archive")
  /usr/bin/time -f "%e %M" -o "$work/time" "$moby" -q push gcp --keys "$work/key.json" --project bench \
    --bucket bench --compute-endpoint "http://127.0.0.1:$compute_port/compute/v1/" \
    --storage-endpoint "http://127.0.0.1:$storage_port" --img-name "img-$RANDOM" "$archive" >/dev/null
  read -r wall rss_kb <"$work/time"
  printf '%-28s archive %7.1f MB  push %6.2f s  %6.1f MB/s  peak RSS %6.1f MB\n' "$label" \
    "$(echo "$size / 1048576" | bc -l)" "$wall" "$(echo "$size / 1048576 / $wall" | bc -l)" "$(echo "$rss_kb / 1024" | bc -l)"
}

"$moby" -q build --format gcp --dir "$work/out" --name plain examples/linuxkit.yml
push "linuxkit.yml" "$work/out/plain.img.tar.gz"
head -c 600M /dev/urandom >"$work/blob"
sed -e "s|^files:|files:\n  - path: var/blob\n    source: $work/blob|" -e "s|@pkg:\.\./|@pkg:$PWD/|" \
  examples/linuxkit.yml >"$work/large.yml"
"$moby" -q build --format gcp --dir "$work/out" --name large --size 2G "$work/large.yml"
push "linuxkit.yml + 600 MB file" "$work/out/large.img.tar.gz"
