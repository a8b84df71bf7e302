#!/usr/bin/env bash
# Collection cycle: 1,000 targets (100 accounts × 10 regions), 2 pages each, 100 ms added to
# every simulated AWS answer, concurrency 64. Measures the first full cycle (start to /-/ready,
# i.e. every target collected once) and compares it with the ideal.
#   cargo build --release && benches/collection.sh
set -euo pipefail
BIN=${BIN:-target/release/fast-launch-exporter}
PORT=19910
LATENCY_MS=${LATENCY_MS:-100}
CONCURRENCY=${CONCURRENCY:-64}
start=$(date +%s.%N)
"$BIN" demo --web.listen-address "127.0.0.1:$PORT" --log.level warn \
  --demo.accounts 100 --demo.regions 10 --demo.images 3 --demo.page-size 2 \
  --demo.latency "${LATENCY_MS}ms" --demo.concurrency "$CONCURRENCY" \
  --demo.churn 0 --demo.throttle-rate 0 --demo.interval 1h --demo.cloudwatch false &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/-/ready")" = 200 ]; do sleep 0.05; done
end=$(date +%s.%N)
metrics=$(curl -s "http://127.0.0.1:$PORT/metrics")
calls=$(echo "$metrics" | awk '/^fast_launch_exporter_aws_requests_total/ {s += $NF} END {print s}')
pages=$(echo "$metrics" | awk '/^fast_launch_exporter_aws_requests_total/ && /api="DescribeFastLaunchImages"/ {s += $NF} END {print s}')
failed=$(echo "$metrics" | awk '/^fast_launch_exporter_collection_success/ && $NF == 0 {n++} END {print n + 0}')
awk -v s="$start" -v e="$end" -v calls="$calls" -v pages="$pages" -v lat="$LATENCY_MS" -v c="$CONCURRENCY" -v failed="$failed" 'BEGIN {
  took = e - s
  ideal_pages = pages * lat / 1000 / c
  ideal_calls = calls * lat / 1000 / c
  printf "| targets | pages | AWS calls (pages + AssumeRole + GetCallerIdentity) | first cycle | ideal (pages) | ratio | ideal (all calls) | ratio | failed targets |\n"
  printf "|---|---|---|---|---|---|---|---|---|\n"
  printf "| 1000 | %d | %d | %.2f s | %.2f s | %.2f | %.2f s | %.2f | %d |\n", pages, calls, took, ideal_pages, took / ideal_pages, ideal_calls, took / ideal_calls, failed
}'
