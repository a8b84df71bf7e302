#!/usr/bin/env bash
# Scrape cost of /metrics against nginx serving the same bytes, plus idle memory and CPU.
#   cargo build --release && benches/scrape.sh            (needs wrk and nginx: apt-get install wrk nginx)
# Prints one markdown table row per (images, encoding, clients). Loopback only.
# Each p50 and req/s is the median of ROUNDS (default 5) rounds of ROUND (default 2s) against the
# exporter and nginx in turn, so that a slow stretch of the machine (a VM's neighbours) falls on
# both alike instead of on whichever ran then.
set -euo pipefail
# shellcheck source=benches/nginx.sh
source "$(dirname "$0")/nginx.sh"
BIN=${BIN:-target/release/fast-launch-exporter}
ROUNDS=${ROUNDS:-5}
ROUND=${ROUND:-2s}
PORT=19900
NGINX_PORT=19901
work=$(mktemp -d)
cleanup() { kill "${demo_pid:-}" 2>/dev/null || true; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

wait_ready() {
  for _ in $(seq 1 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/-/ready")" = 200 ] && return 0
    sleep 0.2
  done
  echo "exporter never ready" >&2; return 1
}

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# wrk's p50 latency and requests/s over one round.
measure() { # url clients gzip?
  local url=$1 clients=$2 gzip=$3 threads=1 header=()
  [ "$clients" -gt 1 ] && threads=2
  [ "$gzip" = gzip ] && header=(-H 'Accept-Encoding: gzip')
  wrk -t"$threads" -c"$clients" -d"$ROUND" --latency "${header[@]}" "$url" > "$work/wrk.txt"
  grep -q 'Non-2xx' "$work/wrk.txt" && { echo "non-2xx answers" >&2; exit 1; }
  local p50 rps
  p50=$(awk '/^ +50%/ {print $2}' "$work/wrk.txt")
  rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.txt")
  echo "$p50 $rps"
}

# wrk's latency as microseconds (it prints 512.00us, 1.42ms or 2.10s).
micros() { awk '{v=$1; u=1; if (v ~ /ms$/) u=1000; else if (v ~ /[0-9]s$/) u=1000000; sub(/[a-z]+$/, "", v); printf "%.0f\n", v * u}'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR + 1) / 2)]}'; }
# Microseconds as wrk shows them: 512us, 1.42ms.
shown() { awk '{if ($1 >= 1000) printf "%.2fms\n", $1 / 1000; else printf "%dus\n", $1}'; }
# The median p50 and req/s of the exporter's and nginx's rounds, run in turn.
compare() { # clients gzip? -> e_p50 e_rps n_p50 n_rps
  local e_lat=() e_rps=() n_lat=() n_rps=() p r
  for _ in $(seq 1 "$ROUNDS"); do
    read -r p r < <(measure "http://127.0.0.1:$PORT/metrics" "$1" "$2"); e_lat+=("$p"); e_rps+=("$r")
    read -r p r < <(measure "http://127.0.0.1:$NGINX_PORT/metrics" "$1" "$2"); n_lat+=("$p"); n_rps+=("$r")
  done
  echo "$(printf '%s\n' "${e_lat[@]}" | micros | median | shown) $(printf '%s\n' "${e_rps[@]}" | median)" \
    "$(printf '%s\n' "${n_lat[@]}" | micros | median | shown) $(printf '%s\n' "${n_rps[@]}" | median)"
}

echo "| images | bytes (plain / gzip) | RSS idle | idle CPU (30 s) | encoding | clients | exporter p50 | exporter req/s | nginx p50 | nginx req/s | exporter ÷ nginx req/s |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
# Sizes as "images accounts regions images-per-target"; SIZES=1000 runs one of them.
for spec in "100 1 1 100" "1000 1 10 100" "10000 10 10 100" "100000 10 10 1000"; do
  read -r images accounts regions per_target <<<"$spec"
  [ -n "${SIZES:-}" ] && [[ " $SIZES " != *" $images "* ]] && continue
  "$BIN" demo --web.listen-address "127.0.0.1:$PORT" --log.level warn \
    --demo.accounts "$accounts" --demo.regions "$regions" --demo.images "$per_target" \
    --demo.churn 0 --demo.throttle-rate 0 --demo.interval 1h --demo.concurrency 64 --demo.cloudwatch false &
  demo_pid=$!
  wait_ready
  sleep 1
  curl -s "http://127.0.0.1:$PORT/metrics" -o "$work/metrics"
  chmod -R a+rX "$work"   # nginx workers run as www-data
  plain=$(stat -c %s "$work/metrics")
  gz=$(curl -s -H 'Accept-Encoding: gzip' "http://127.0.0.1:$PORT/metrics" | wc -c)
  rss=$(rss_kib "$demo_pid")
  t0=$(cpu_ticks "$demo_pid"); sleep 30; t1=$(cpu_ticks "$demo_pid")
  idle_cpu=$(awk -v d=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f s", d / hz}')
  nginx_serve "$work" "$NGINX_PORT"
  for encoding in plain gzip; do
    for clients in 1 16; do
      read -r e_p50 e_rps n_p50 n_rps < <(compare "$clients" "$encoding")
      ratio=$(awk -v a="$e_rps" -v b="$n_rps" 'BEGIN {printf "%.2f", a / b}')
      echo "| $images | $plain / $gz | $((rss / 1024)) MiB | $idle_cpu | $encoding | $clients | $e_p50 | $e_rps | $n_p50 | $n_rps | $ratio |"
    done
  done
  kill "$(cat "$work/nginx.pid")"; kill "$demo_pid"; wait "$demo_pid" 2>/dev/null || true
  demo_pid=
done
