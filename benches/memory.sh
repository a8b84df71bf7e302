#!/usr/bin/env bash
# Memory over time: 1-second collection cycles for MINUTES minutes (default 10) with 1,000 images
# (3 accounts × 3 regions), churn on; prints resident memory every 30 s. It must not grow.
#   cargo build --release && benches/memory.sh
set -euo pipefail
BIN=${BIN:-target/release/fast-launch-exporter}
MINUTES=${MINUTES:-10}
PORT=19920
"$BIN" demo --web.listen-address "127.0.0.1:$PORT" --log.level warn \
  --demo.accounts 3 --demo.regions 3 --demo.images 111 --demo.churn 0.05 --demo.interval 1s &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
echo "| minute | RSS (MiB) | scrapes answered |"
echo "|---|---|---|"
ok=0
for i in $(seq 1 $((MINUTES * 2))); do
  for _ in $(seq 1 30); do
    curl -s -o /dev/null -w '%{http_code}\n' "http://127.0.0.1:$PORT/metrics" | grep -q 200 && ok=$((ok + 1))
    sleep 1
  done
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  awk -v m="$i" -v r="$rss" -v ok="$ok" 'BEGIN {printf "| %.1f | %.1f | %d |\n", m / 2, r / 1024, ok}'
done
