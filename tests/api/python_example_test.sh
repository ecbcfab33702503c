#!/usr/bin/env bash
# api/examples/python_strategy.py against a real `backstop run` (sim-api.json on a free port):
# the example must trade one bracket round through the API and exit 0.
# python_example_test.sh BACKSTOP CONFIG EXAMPLE OUTDIR
set -euo pipefail
backstop=$1 config=$2 example=$3 out=$4
mkdir -p "$out"
rm -f "$out"/journal.db*
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The example config with this run's port and token file (its comments are whole lines).
python3 - "$config" "$out/config.json" "$port" "$out/api.token" <<'PY'
import json, sys
src, dst, port, token = sys.argv[1:]
cfg = json.loads("\n".join(l for l in open(src) if not l.lstrip().startswith("//")))
cfg["api"].update(port=int(port), token_file=token)
json.dump(cfg, open(dst, "w"))
PY
"$backstop" run --config "$out/config.json" --for 60s --journal "$out/journal.db" >"$out/run.log" 2>&1 &
pid=$!
trap 'kill -INT $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 300); do
  grep -q "^api: http://" "$out/run.log" && break
  kill -0 $pid 2>/dev/null || { cat "$out/run.log"; exit 1; }
  sleep 0.1
done
grep -q "^api: http://" "$out/run.log" || { echo "the API did not start"; cat "$out/run.log"; exit 1; }
python3 "$example" --url "http://127.0.0.1:$port" --token-file "$out/api.token" --rounds 1 --round-seconds 5 \
  | tee "$out/example.log"
grep -q "^round 0: .* (accepted)" "$out/example.log" || { echo "no accepted bracket"; exit 1; }
grep -q "^position at sim: AAPL" "$out/example.log" || { echo "no position read back"; exit 1; }
