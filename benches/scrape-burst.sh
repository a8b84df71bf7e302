#!/usr/bin/env bash
# 100,000 images: scrape latency at one client, then 16 concurrent scrapers for 60 s with peak
# RSS, every answer counted, and /-/healthy timed every 250 ms throughout.
#   cargo build --release && benches/scrape-burst.sh      (needs wrk: apt-get install wrk)
# ENCODINGS="plain gzip" (default), DURATION=60s, SCRAPERS=16. Loopback only.
set -euo pipefail
BIN=${BIN:-target/release/fast-launch-exporter}
DURATION=${DURATION:-60s}
SCRAPERS=${SCRAPERS:-16}
PORT=19910
work=$(mktemp -d)
cleanup() { kill "${demo_pid:-}" "${probe_pid:-}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

"$BIN" demo --web.listen-address "127.0.0.1:$PORT" --log.level warn \
  --demo.accounts 10 --demo.regions 10 --demo.images 1000 \
  --demo.churn 0 --demo.throttle-rate 0 --demo.interval 1h --demo.concurrency 64 --demo.cloudwatch false &
demo_pid=$!
for _ in $(seq 1 600); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/-/ready")" = 200 ] && break
  sleep 0.2
done
sleep 3   # rendering ahead runs 1 s after the collections land
url="http://127.0.0.1:$PORT/metrics"
hwm() { awk '/VmHWM/ {printf "%d MiB", $2 / 1024}' "/proc/$demo_pid/status"; }
echo "ready: RSS $(awk '/VmRSS/ {printf "%d MiB", $2 / 1024}' "/proc/$demo_pid/status")"
echo "first scrape after ready: $(curl -s -o /dev/null -w '%{time_total} s, %{size_download} bytes' "$url")"

echo "| encoding | clients | duration | scrapes answered | errors | p50 | p99 | /-/healthy max | /-/healthy p99 | peak RSS |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for encoding in ${ENCODINGS:-plain gzip}; do
  header=()
  [ "$encoding" = gzip ] && header=(-H 'Accept-Encoding: gzip')
  for clients in 1 "$SCRAPERS"; do
    threads=1; [ "$clients" -gt 1 ] && threads=2
    duration=$DURATION; [ "$clients" = 1 ] && duration=10s
    (while :; do curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$PORT/-/healthy"; sleep 0.25; done) > "$work/healthy" &
    probe_pid=$!
    wrk -t"$threads" -c"$clients" -d"$duration" --timeout 30s --latency "${header[@]}" "$url" > "$work/wrk"
    kill "$probe_pid"; wait "$probe_pid" 2>/dev/null || true; probe_pid=
    answered=$(awk '/requests in/ {print $1}' "$work/wrk")
    errors=$(awk '/Socket errors|Non-2xx/ {print}' "$work/wrk" | tr '\n' ' ')
    p50=$(awk '/^ +50%/ {print $2}' "$work/wrk")
    p99=$(awk '/^ +99%/ {print $2}' "$work/wrk")
    h_max=$(sort -n "$work/healthy" | tail -1 | awk '{printf "%.1f ms", $1 * 1000}')
    h_p99=$(sort -n "$work/healthy" | awk '{v[NR] = $1} END {printf "%.1f ms", v[int(NR * 0.99 + 0.5)] * 1000}')
    echo "| $encoding | $clients | $duration | $answered | ${errors:-none} | $p50 | $p99 | $h_max | $h_p99 | $(hwm) |"
  done
done
