#!/usr/bin/env bash
# Scrape time with 1,000 slow connections held open (nothing sent, part of a request line, or
# headers that never end), against the same scrape with none: docs/performance.md "Scrapes
# under 1,000 slow connections". The integration test
# (server_limits::a_thousand_slow_connections_hold_back_no_scrape) asserts only the order (each
# answer comes while every slow connection is still open); the time is measured here.
#   cargo build && benches/slow-connections.sh      (python3 and curl; BIN= for another build)
# RUNS=5 scrapes each way; TARGET=1 (seconds, issue 12's target) fails the run when exceeded.
set -euo pipefail
BIN=${BIN:-target/debug/fast-launch-exporter}
RUNS=${RUNS:-5}
TARGET=${TARGET:-1}
PORT=19920
work=$(mktemp -d)
cleanup() { kill "${holder_pid:-}" "${demo_pid:-}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

"$BIN" demo --web.listen-address "127.0.0.1:$PORT" --log.level warn \
  --demo.accounts 3 --demo.regions 3 --demo.images 111 \
  --demo.churn 0 --demo.throttle-rate 0 --demo.interval 1h --demo.cloudwatch false &
demo_pid=$!
for _ in $(seq 1 600); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/-/ready")" = 200 ] && break
  sleep 0.2
done
url="http://127.0.0.1:$PORT/metrics"

scrapes() { # label
  local label=$1 times=() slowest=0
  for _ in $(seq 1 "$RUNS"); do
    read -r code time < <(curl -s -o /dev/null -w '%{http_code} %{time_total}\n' "$url")
    [ "$code" = 200 ] || { echo "$label: scrape answered $code" >&2; exit 1; }
    times+=("$time")
    slowest=$(awk -v a="$slowest" -v b="$time" 'BEGIN {print (b > a) ? b : a}')
  done
  echo "| $label | $(printf '%s\n' "${times[@]}" | sort -n | sed -n '1p;$p' | paste -sd '-') s |"
  awk -v s="$slowest" -v t="$TARGET" 'BEGIN {exit !(s < t)}' \
    || { echo "$label: a scrape took ${slowest}s, over the ${TARGET}s target" >&2; exit 1; }
}

echo "| | scrape time ($RUNS runs, fastest-slowest) |"
echo "|---|---|"
scrapes "no slow connection"
# The holder opens the connections, says so, and keeps them until it is killed.
python3 - "$PORT" > "$work/holder" <<'EOF' &
import socket, sys, time
sockets = []
for i in range(1000):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s.sendall([b"", b"GET /metr", b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "][i % 3])
    sockets.append(s)
print("open", flush=True)
time.sleep(3600)
EOF
holder_pid=$!
for _ in $(seq 1 300); do
  grep -q open "$work/holder" && break
  sleep 0.1
done
grep -q open "$work/holder" || { echo "the slow connections never opened" >&2; exit 1; }
scrapes "1,000 slow connections open"
