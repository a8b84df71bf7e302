#!/usr/bin/env bash
# Two builds side by side in one run: the collection cycle and the scrape, alternating between a
# reference binary and the one under test, so that both see the same machine at the same time.
#   git worktree add /tmp/ref <commit> && (cd /tmp/ref && cargo build --release)
#   cargo build --release && REF=/tmp/ref/target/release/fast-launch-exporter benches/compare.sh
# Needs wrk (apt-get install wrk). Loopback only. Prints one markdown table; each cell is the
# median of ROUNDS runs (default 5), alternating reference and new.
set -euo pipefail
NEW=${NEW:-target/release/fast-launch-exporter}
REF=${REF:?REF=path of the reference binary}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
PORT=19930
work=$(mktemp -d)
cleanup() { kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

wait_ready() {
  for _ in $(seq 1 1200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/-/ready")" = 200 ] && return 0
    sleep 0.05
  done
  echo "exporter never ready" >&2; return 1
}

# Seconds from start to /-/ready: 1,000 targets, 2 pages each, 100 ms per AWS answer,
# concurrency 64 (benches/collection.sh's world); then requests/s of /metrics over those 1,000
# small targets (plain, 1 client), where the per-target lines weigh most. "seconds req/s".
collection() { # binary
  local start end rps
  start=$(date +%s.%N)
  "$1" demo --web.listen-address "127.0.0.1:$PORT" --log.level warn \
    --demo.accounts 100 --demo.regions 10 --demo.images 3 --demo.page-size 2 \
    --demo.latency 100ms --demo.concurrency 64 \
    --demo.churn 0 --demo.throttle-rate 0 --demo.interval 1h --demo.cloudwatch false &
  pid=$!
  wait_ready
  end=$(date +%s.%N)
  sleep 2
  wrk -t1 -c1 -d"$DURATION" "http://127.0.0.1:$PORT/metrics" > "$work/wrk.txt"
  grep -q 'Non-2xx' "$work/wrk.txt" && { echo "non-2xx answers" >&2; exit 1; }
  rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.txt")
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  awk -v s="$start" -v e="$end" -v r="$rps" 'BEGIN {printf "%.3f %s\n", e - s, r}'
}

# Requests/s of /metrics over 10,000 images (10 accounts x 10 regions x 100): plain and gzip,
# 1 and 16 clients, as "plain1 plain16 gzip1 gzip16".
scrape() { # binary
  "$1" demo --web.listen-address "127.0.0.1:$PORT" --log.level warn \
    --demo.accounts 10 --demo.regions 10 --demo.images 100 \
    --demo.churn 0 --demo.throttle-rate 0 --demo.interval 1h --demo.concurrency 64 --demo.cloudwatch false &
  pid=$!
  wait_ready
  sleep 2
  local out=()
  for encoding in plain gzip; do
    for clients in 1 16; do
      local header=() threads=1
      [ "$clients" -gt 1 ] && threads=2
      [ "$encoding" = gzip ] && header=(-H 'Accept-Encoding: gzip')
      wrk -t"$threads" -c"$clients" -d"$DURATION" "${header[@]}" "http://127.0.0.1:$PORT/metrics" > "$work/wrk.txt"
      grep -q 'Non-2xx' "$work/wrk.txt" && { echo "non-2xx answers" >&2; exit 1; }
      out+=("$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.txt")")
    done
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  echo "${out[*]}"
}

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

for round in $(seq 1 "$ROUNDS"); do
  for which in ref new; do
    bin=$REF; [ "$which" = new ] && bin=$NEW
    read -r seconds targets_rps < <(collection "$bin")
    echo "$seconds" >> "$work/$which.collection"; echo "$targets_rps" >> "$work/$which.targets"
    read -r p1 p16 g1 g16 < <(scrape "$bin")
    echo "$p1" >> "$work/$which.plain1"; echo "$p16" >> "$work/$which.plain16"
    echo "$g1" >> "$work/$which.gzip1"; echo "$g16" >> "$work/$which.gzip16"
  done
  echo "round $round of $ROUNDS done" >&2
done

echo "| measure (median of $ROUNDS) | reference | new | new ÷ reference |"
echo "|---|---|---|---|"
for m in collection targets plain1 plain16 gzip1 gzip16; do
  r=$(median < "$work/ref.$m"); n=$(median < "$work/new.$m")
  case $m in
    collection) label="first collection cycle, 1,000 targets (s, lower is better)" ;;
    targets) label="scrape 1,000 targets of 3 images, plain, 1 client (req/s)" ;;
    plain1) label="scrape 10,000 images, plain, 1 client (req/s)" ;;
    plain16) label="scrape 10,000 images, plain, 16 clients (req/s)" ;;
    gzip1) label="scrape 10,000 images, gzip, 1 client (req/s)" ;;
    gzip16) label="scrape 10,000 images, gzip, 16 clients (req/s)" ;;
  esac
  echo "| $label | $r | $n | $(awk -v a="$n" -v b="$r" 'BEGIN {printf "%.3f", a / b}') |"
done
