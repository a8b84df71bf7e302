#!/usr/bin/env bash
# Organisation scale: an organization of 1,000 accounts discovered through the simulated AWS
# Organizations, every one of the 17 default regions each (`regions: all`, DescribeRegions per
# account): 17,000 targets, 3 images each, 50 ms added to every simulated AWS answer,
# concurrency 64. Collected as one process, then as 4 shards (4 processes, each with its own copy
# of the same simulated world). Reports RSS (peak, VmHWM; the demo's simulator and its world live
# in the same process, so this overstates the exporter), the first cycle (start to /-/ready:
# discovery, DescribeRegions, then every target collected once) against the ideal (every AWS
# call × latency / concurrency), the AWS calls, and the shards' split.
#   cargo build --release && benches/organization.sh
set -euo pipefail
BIN=${BIN:-target/release/fast-launch-exporter}
ACCOUNTS=${ACCOUNTS:-1000}
LATENCY_MS=${LATENCY_MS:-50}
CONCURRENCY=${CONCURRENCY:-64}
BASE_PORT=19930
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

start_demo() { # port index total
  "$BIN" demo --web.listen-address "127.0.0.1:$1" --log.level warn \
    --shard.index "$2" --shard.total "$3" \
    --demo.organization --demo.accounts "$ACCOUNTS" --demo.regions 17 --demo.images 3 \
    --demo.latency "${LATENCY_MS}ms" --demo.concurrency "$CONCURRENCY" \
    --demo.churn 0 --demo.throttle-rate 0 --demo.interval 1h --demo.cloudwatch false &
  pids+=($!)
}

wait_ready() { # port
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/-/ready")" = 200 ]; do sleep 0.05; done
}

report() { # label port pid start end
  local metrics calls targets failed hwm
  metrics=$(curl -s "http://127.0.0.1:$2/metrics")
  calls=$(echo "$metrics" | awk '/^fast_launch_exporter_aws_requests_total/ {s += $NF} END {print s}')
  targets=$(echo "$metrics" | awk '/^fast_launch_exporter_targets / {print $NF}')
  failed=$(echo "$metrics" | awk '/^fast_launch_exporter_collection_success/ && $NF == 0 {n++} END {print n + 0}')
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$3/status")
  awk -v label="$1" -v s="$4" -v e="$5" -v calls="$calls" -v targets="$targets" -v failed="$failed" \
      -v hwm="$hwm" -v lat="$LATENCY_MS" -v c="$CONCURRENCY" 'BEGIN {
    took = e - s; ideal = calls * lat / 1000 / c
    printf "| %s | %d | %d | %.1f s | %.1f s | %.2f | %.0f MiB | %d |\n", label, targets, calls, took, ideal, took / ideal, hwm / 1024, failed
  }'
}

echo "| process | targets | AWS calls | first cycle | ideal | ratio | peak RSS | failed targets |"
echo "|---|---|---|---|---|---|---|---|"
start=$(date +%s.%N)
start_demo "$BASE_PORT" 0 1
wait_ready "$BASE_PORT"
end=$(date +%s.%N)
report "one process" "$BASE_PORT" "${pids[0]}" "$start" "$end"
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
pids=()

start=$(date +%s.%N)
for i in 0 1 2 3; do start_demo $((BASE_PORT + 1 + i)) "$i" 4; done
# Each shard's own time to ready, polled together (the four share the machine's cores).
ends=("" "" "" "")
until [ -n "${ends[0]}" ] && [ -n "${ends[1]}" ] && [ -n "${ends[2]}" ] && [ -n "${ends[3]}" ]; do
  for i in 0 1 2 3; do
    if [ -z "${ends[$i]}" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((BASE_PORT + 1 + i))/-/ready")" = 200 ]; then
      ends[i]=$(date +%s.%N)
    fi
  done
  sleep 0.1
done
for i in 0 1 2 3; do
  report "shard $i of 4" $((BASE_PORT + 1 + i)) "${pids[$i]}" "$start" "${ends[$i]}"
done
total=$((ACCOUNTS * 17))
for i in 0 1 2 3; do
  curl -s "http://127.0.0.1:$((BASE_PORT + 1 + i))/metrics" | awk '/^fast_launch_exporter_targets / {print $NF}'
done | awk -v total="$total" '{n[NR] = $1; s += $1} END {
  even = total / 4; worst = 0
  for (i = 1; i <= 4; i++) { d = (n[i] - even) / even * 100; if (d < 0) d = -d; if (d > worst) worst = d }
  printf "\nshards: %d %d %d %d targets (sum %d of %d); worst deviation from an even split %.1f %%\n", n[1], n[2], n[3], n[4], s, total, worst
}'
