#!/usr/bin/env bash
# Organisation scale as users live it: 1,000 accounts × 17 regions × 3 images (17,000 targets,
# 51,000 images) discovered through the simulated AWS Organizations, in one exporter process,
# with the simulated AWS in a second process (`simulate`), so that the exporter's own memory
# shows. Measures, in one run, beside nginx serving the same bytes (gzip level 1 per request):
#   - the first cycle (start to /-/ready) against the ideal: AWS calls × latency / concurrency;
#   - the exposition's size, plain and gzip (the exporter's body against nginx's);
#   - plain and gzip scrape p50 at one client, exporter and nginx;
#   - peak RSS (VmHWM) of the exporter through the first cycle, and after 16 concurrent
#     scrapers (8 plain, 8 gzip) for 15 s.
#   cargo build --release && benches/organization-scrape.sh   (needs wrk and nginx)
# ACCOUNTS=1000 REGIONS=17 IMAGES=3 LATENCY_MS=50 CONCURRENCY=64 DURATION=10s. Loopback only.
set -euo pipefail
# shellcheck source=benches/nginx.sh
source "$(dirname "$0")/nginx.sh"
BIN=${BIN:-target/release/fast-launch-exporter}
ACCOUNTS=${ACCOUNTS:-1000}
REGIONS=${REGIONS:-17}
IMAGES=${IMAGES:-3}
LATENCY_MS=${LATENCY_MS:-50}
CONCURRENCY=${CONCURRENCY:-64}
DURATION=${DURATION:-10s}
PORT=19940
SIM_PORT=19941
NGINX_PORT=19942
work=$(mktemp -d)
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

world=(--demo.organization --demo.accounts "$ACCOUNTS" --demo.regions "$REGIONS"
  --demo.images "$IMAGES" --demo.latency "${LATENCY_MS}ms" --demo.concurrency "$CONCURRENCY"
  --demo.churn 0 --demo.throttle-rate 0 --demo.interval 1h --demo.cloudwatch false)
"$BIN" simulate --web.listen-address "127.0.0.1:$SIM_PORT" --log.level warn "${world[@]}" &
pids+=($!)
until curl -s -o /dev/null "http://127.0.0.1:$SIM_PORT/"; do sleep 0.05; done

start=$(date +%s.%N)
"$BIN" demo --web.listen-address "127.0.0.1:$PORT" --log.level warn "${world[@]}" \
  --demo.simulator "http://127.0.0.1:$SIM_PORT" &
exporter=$!
pids+=("$exporter")
until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/-/ready")" = 200 ]; do sleep 0.05; done
end=$(date +%s.%N)
hwm() { awk '/VmHWM/ {printf "%d", $2 / 1024}' "/proc/$exporter/status"; }
rss() { awk '/VmRSS/ {printf "%d", $2 / 1024}' "/proc/$exporter/status"; }
first_cycle_hwm=$(hwm)
sleep 3   # rendering ahead runs after the collections land

url="http://127.0.0.1:$PORT/metrics"
curl -s "$url" -o "$work/metrics"
calls=$(awk '/^fast_launch_exporter_aws_requests_total/ {s += $NF} END {print s}' "$work/metrics")
targets=$(awk '/^fast_launch_exporter_targets / {print $NF}' "$work/metrics")
series=$(grep -vc '^#' "$work/metrics")
plain=$(stat -c %s "$work/metrics")
gz=$(curl -s -H 'Accept-Encoding: gzip' "$url" | wc -c)
chmod -R a+rX "$work"   # nginx workers run as www-data

nginx_serve "$work" "$NGINX_PORT"
nginx_gz=$(curl -s -H 'Accept-Encoding: gzip' "http://127.0.0.1:$NGINX_PORT/metrics" | wc -c)

p50() { # url gzip? -> milliseconds
  local header=()
  [ "$2" = gzip ] && header=(-H 'Accept-Encoding: gzip')
  wrk -t1 -c1 -d"$DURATION" --timeout 30s --latency "${header[@]}" "$1" > "$work/wrk.txt"
  grep -q 'Non-2xx' "$work/wrk.txt" && { echo "non-2xx answers from $1" >&2; exit 1; }
  awk '/^ +50%/ {v = $2; if (v ~ /us$/) {sub(/us/, "", v); v /= 1000} else if (v ~ /ms$/) {sub(/ms/, "", v)} else if (v ~ /s$/) {sub(/s/, "", v); v *= 1000}; printf "%.1f", v}' "$work/wrk.txt"
}

echo "| exposition | targets | AWS calls | first cycle | ideal | ratio | peak RSS, first cycle |"
echo "|---|---|---|---|---|---|---|"
awk -v series="$series" -v plain="$plain" -v targets="$targets" -v calls="$calls" -v s="$start" -v e="$end" \
    -v lat="$LATENCY_MS" -v c="$CONCURRENCY" -v hwm="$first_cycle_hwm" 'BEGIN {
  took = e - s; ideal = calls * lat / 1000 / c
  printf "| %d series, %.1f MB | %d | %d | %.1f s | %.1f s | %.2f | %d MiB |\n", series, plain / 1e6, targets, calls, took, ideal, took / ideal, hwm
}'
echo
echo "| encoding | body: exporter | body: nginx | ratio | p50: exporter | p50: nginx | ratio |"
echo "|---|---|---|---|---|---|---|"
for encoding in plain gzip; do
  e=$(p50 "$url" "$encoding")
  n=$(p50 "http://127.0.0.1:$NGINX_PORT/metrics" "$encoding")
  if [ "$encoding" = plain ]; then eb=$plain; nb=$plain; else eb=$gz; nb=$nginx_gz; fi
  awk -v enc="$encoding" -v eb="$eb" -v nb="$nb" -v e="$e" -v n="$n" 'BEGIN {
    printf "| %s | %.2f MB | %.2f MB | %.2f× | %.0f ms | %.0f ms | %.2f× |\n", enc, eb / 1e6, nb / 1e6, eb / nb, e, n, e / n
  }'
done

# 16 concurrent scrapers, 8 plain and 8 gzip, for 15 s.
wrk -t1 -c8 -d15s --timeout 60s "$url" > "$work/plain16.txt" &
w1=$!
wrk -t1 -c8 -d15s --timeout 60s -H 'Accept-Encoding: gzip' "$url" > "$work/gzip16.txt" &
w2=$!
wait "$w1" "$w2"
answered=$(awk '/requests in/ {s += $1} END {print s}' "$work/plain16.txt" "$work/gzip16.txt")
errors=$(cat "$work/plain16.txt" "$work/gzip16.txt" | grep -E 'Socket errors|Non-2xx' | tr '\n' ' ' || true)
echo
echo "| 16 scrapers (8 plain, 8 gzip), 15 s | scrapes answered | errors | peak RSS (VmHWM) | RSS after |"
echo "|---|---|---|---|---|"
echo "| exporter | $answered | ${errors:-none} | $(hwm) MiB | $(rss) MiB |"
