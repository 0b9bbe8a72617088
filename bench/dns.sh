#!/usr/bin/env bash
# Measures Holdfast's DNS server (internal/dns) against Debian's unbound on
# loopback, in one run: both answer the same names — examples/arvandor's,
# which bench/dnsbench serves with internal/dns and writes for unbound as
# local-zone/local-data — to the same load generator, dnsperf, with the
# same queries (every A and PTR record of the cloud, and 10 % names that
# do not exist, NXDOMAIN):
#   (a) throughput: dnsperf -c 10 -q 100 (10 sockets, 100 queries in
#       flight), in rounds of 3 s alternating between the servers, 4 each;
#       the median round of each;
#   (b) latency: 10,000 queries/s for 10 s at each, in windows of 2 s
#       alternating between the servers (dnsperf -Q 10000 -v, which
#       reports every query's latency): p50, p99, max.
# Targets (issue 13): Holdfast's throughput at least unbound's; its p99
# under 1 ms at 10,000 queries/s. Exits 1 when one is missed.
#
# Cores: each server has core 1 and dnsperf core 0 (taskset): one core per
# server, the same for both — unbound with num-threads: 1, Holdfast with
# GOMAXPROCS=1 — and the load generator never competes with the server it
# measures. (Unpinned on a 2-core machine, the figures say more about the
# scheduler than about the servers.) unbound's caches keep their defaults:
# local-data is answered before them.
#
# Noise: the machine is shared (2 cores; other work has them too). As
# root, the servers and dnsperf run at nice -20, so that another process's
# time slice on their core does not land in a thousand queries'
# latencies. The throughput rounds alternate (a busy second costs both
# servers alike) and the medians are compared with no allowance: Holdfast
# answered 1.4-2.3 times as many as unbound in every run so far
# (docs/performance.md, DNS), more than the spread of the rounds.
# For latency unbound is the control, measured in the same alternating
# windows: when both miss 1 ms, the machine was busy (descheduled for
# milliseconds: max latencies of 30-150 ms, for both), and the pair is
# measured once more. When both miss again, a 1 ms p99 cannot be measured
# on this machine now: the run says so and passes if Holdfast's p99 is no
# worse than unbound's (the one allowance, so that CI does not fail on a
# busy machine while a server slower than unbound still fails). Holdfast
# missing 1 ms while unbound meets it fails.
#
# Needs unbound and dnsperf (CI installs them, .ci/run); root only for the
# priority; about 60 s. Usage: bench/dns.sh [dnsbench-binary] (built from
# this tree when not given; give one built from another to compare).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in unbound dnsperf taskset; do
	command -v "$tool" >/dev/null || { echo "bench/dns.sh needs $tool (apt-get install unbound dnsperf)"; exit 1; }
done
work=$(mktemp -d)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

server_cpu=1 load_cpu=0
if [ "$(nproc)" -lt 2 ]; then server_cpu=0 load_cpu=0; fi
prio=()
if [ "$(id -u)" = 0 ]; then prio=(nice -n -20); fi

dnsbench=${1:-}
if [ -z "$dnsbench" ]; then
	dnsbench="$work/dnsbench"
	go build -o "$dnsbench" ./bench/dnsbench
fi
# Holdfast's server, and unbound's configuration and the queries beside
# it; each process is bounded in time, whatever happens to this script.
GOMAXPROCS=1 timeout 150 "${prio[@]}" taskset -c "$server_cpu" "$dnsbench" -spec examples/arvandor \
	-unbound "$work" -unbound-threads 1 -queries "$work/queries" -for 140s >"$work/dnsbench.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q '^holdfast ' "$work/dnsbench.out" && break; sleep 0.1; done
grep -q '^holdfast ' "$work/dnsbench.out" || { cat "$work/dnsbench.out"; exit 1; }
holdfast=$(awk '/^holdfast /{print $2}' "$work/dnsbench.out")
unbound=$(awk '/^unbound /{print $2}' "$work/dnsbench.out")
timeout 150 "${prio[@]}" taskset -c "$server_cpu" unbound -d -c "$work/unbound.conf" >"$work/unbound.log" 2>&1 &
pids+=($!)
# unbound answers every name as Holdfast does, or nothing is measured.
"$dnsbench" -spec examples/arvandor -check "$unbound" || { cat "$work/unbound.log"; exit 1; }

load() { # server-address, dnsperf flags...: dnsperf's report
	local addr=$1; shift
	timeout 60 "${prio[@]}" taskset -c "$load_cpu" dnsperf -s "${addr%:*}" -p "${addr##*:}" -d "$work/queries" "$@"
}
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2))}'; }

# (a) Throughput, and the server's CPU time per query answered over the
# rounds (its share of core 1, from /proc): what a query costs a server,
# whatever dnsperf's own limit (about 120,000 queries/s on this core).
pid_h=$(pgrep -P "${pids[0]}")
pid_u=$(pgrep -P "${pids[1]}")
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rounds_h="" rounds_u="" n_h=0 n_u=0 cpu_h=0 cpu_u=0
round() { # server-address, pid: adds the round's q/s to rounds, its queries to n, the server's CPU ticks to cpu
	local before out
	before=$(ticks "$2")
	out=$(load "$1" -c 10 -q 100 -l 3)
	cpu=$((cpu + $(ticks "$2") - before))
	n=$((n + $(echo "$out" | awk '/Queries completed/{print $3}')))
	rounds="$rounds $(echo "$out" | awk '/Queries per second/{printf "%d", $4}')"
}
for _ in 1 2 3 4; do
	rounds=$rounds_u n=$n_u cpu=$cpu_u; round "$unbound" "$pid_u"; rounds_u=$rounds n_u=$n cpu_u=$cpu
	rounds=$rounds_h n=$n_h cpu=$cpu_h; round "$holdfast" "$pid_h"; rounds_h=$rounds n_h=$n cpu_h=$cpu
done
qps_h=$(echo "$rounds_h" | median)
qps_u=$(echo "$rounds_u" | median)
hz=$(getconf CLK_TCK)
us_h=$(awk -v c="$cpu_h" -v n="$n_h" -v hz="$hz" 'BEGIN{printf "%.1f", c / hz * 1e6 / n}')
us_u=$(awk -v c="$cpu_u" -v n="$n_u" -v hz="$hz" 'BEGIN{printf "%.1f", c / hz * 1e6 / n}')

# (b) Latency at 10,000 queries/s, 10 s per server in windows of 2 s
# alternating between them, so that a busy moment of the machine falls on
# both alike: every answer's latency, the queries not answered (lost)
# counted as slower than any.
window() { # server-address, name: appends its latencies (s) and the count sent
	load "$1" -c 10 -Q 10000 -l 2 -v >"$work/$2.v"
	grep '^> ' "$work/$2.v" | awk '{print $NF}' >>"$work/$2.lat"
	awk '/Queries sent:/{print $3}' "$work/$2.v" >>"$work/$2.sent"
}
percentiles() { # name: "answered p50 p99 max" in ms
	local sent
	sent=$(awk '{n += $1} END{print n}' "$work/$1.sent")
	sort -n "$work/$1.lat" | awk -v sent="$sent" '
		function at(p,   i) { i = int(p * sent + 0.999999); return i <= NR ? sprintf("%.3f", a[i] * 1000) : "lost" }
		{ a[NR] = $1 }
		END { printf "%d %s %s %s\n", NR, at(0.5), at(0.99), (NR < sent ? "lost" : sprintf("%.3f", a[NR] * 1000)) }'
}
under1ms() { [ "$1" != lost ] && awk -v v="$1" 'BEGIN{exit !(v < 1)}'; }
for try in 1 2; do
	rm -f "$work"/*.lat "$work"/*.sent
	for _ in 1 2 3 4 5; do
		window "$holdfast" holdfast
		window "$unbound" unbound
	done
	read -r n_h p50_h p99_h max_h < <(percentiles holdfast)
	read -r n_u p50_u p99_u max_u < <(percentiles unbound)
	if under1ms "$p99_h" || under1ms "$p99_u" || [ "$try" = 2 ]; then break; fi
	echo "latency, try $try: both servers' p99 over 1 ms (holdfast $p99_h, unbound $p99_u): the machine was busy; again"
done

echo
echo "DNS on loopback: examples/arvandor's names, $(wc -l <"$work/queries") queries in turn; $(dnsperf -h 2>&1 | awk '/^Version/{print "dnsperf " $2}'),"
echo "$(unbound -V | awk 'NR==1{print "unbound " $2}'); each server alone on core $server_cpu, dnsperf on core $load_cpu ($(nproc) cores)"
printf '%-40s %14s %14s\n' "" holdfast unbound
printf '%-40s %14s %14s\n' "throughput, median of 4 rounds (q/s)" "$qps_h" "$qps_u"
printf '%-40s %14s %14s\n' "  rounds" "$(echo $rounds_h | tr ' ' /)" "$(echo $rounds_u | tr ' ' /)"
printf '%-40s %14s %14s\n' "  server CPU per query (µs)" "$us_h" "$us_u"
printf '%-40s %14s %14s\n' "at 10,000 q/s, 5 x 2 s: answered" "$n_h" "$n_u"
printf '%-40s %14s %14s\n' "  p50 latency (ms)" "$p50_h" "$p50_u"
printf '%-40s %14s %14s\n' "  p99 latency (ms)" "$p99_h" "$p99_u"
printf '%-40s %14s %14s\n' "  max latency (ms)" "$max_h" "$max_u"

fail=0
if [ "$qps_h" -lt "$qps_u" ]; then
	echo "FAIL: Holdfast answers $qps_h queries/s, fewer than unbound's $qps_u"
	fail=1
fi
ms() { [ "$1" = lost ] && echo 1e9 || echo "$1"; } # lost: slower than any
if ! under1ms "$p99_h"; then
	if ! under1ms "$p99_u" && awk -v h="$(ms "$p99_h")" -v u="$(ms "$p99_u")" 'BEGIN{exit !(h <= u)}'; then
		echo "INCONCLUSIVE: the machine was too busy to measure a 1 ms p99: unbound, the control, had $p99_u ms;"
		echo "  Holdfast's $p99_h ms is no worse, which is all this run can tell"
	else
		echo "FAIL: Holdfast's p99 at 10,000 queries/s is $p99_h ms, not under 1 ms (unbound's: $p99_u ms)"
		fail=1
	fi
fi
if [ "$fail" = 0 ] && under1ms "$p99_h"; then
	echo "PASS: Holdfast's throughput at least unbound's; p99 under 1 ms at 10,000 queries/s"
fi
exit "$fail"
