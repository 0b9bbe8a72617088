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
#   (b) latency: 10,000 queries/s for 10 s at each (dnsperf -Q 10000 -v,
#       which reports every query's latency): p50, p99, max.
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
# Noise: the machine is shared. As root, the servers and dnsperf run at
# nice -20, so that another process's time slice on their core (a few ms)
# does not land in the latencies of a thousand queries. The throughput
# rounds alternate (a busy second costs both servers alike) and the
# medians are compared with no allowance: Holdfast's margin
# (docs/performance.md, DNS) is several times the spread of the rounds.
# For latency unbound is the control: when both miss 1 ms, something else
# had the core, and the pair is measured once more; when Holdfast misses
# alone, or again, it fails.
#
# Needs unbound and dnsperf (CI installs them, .ci/run); root only for the
# priority; about 60 s. Usage: bench/dns.sh
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

go build -o "$work/dnsbench" ./bench/dnsbench
# Holdfast's server, and unbound's configuration and the queries beside
# it; each process is bounded in time, whatever happens to this script.
GOMAXPROCS=1 timeout 150 "${prio[@]}" taskset -c "$server_cpu" "$work/dnsbench" -spec examples/arvandor \
	-unbound "$work" -unbound-threads 1 -queries "$work/queries" -for 140s >"$work/dnsbench.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q '^holdfast ' "$work/dnsbench.out" && break; sleep 0.1; done
grep -q '^holdfast ' "$work/dnsbench.out" || { cat "$work/dnsbench.out"; exit 1; }
holdfast=$(awk '/^holdfast /{print $2}' "$work/dnsbench.out")
unbound=$(awk '/^unbound /{print $2}' "$work/dnsbench.out")
timeout 150 "${prio[@]}" taskset -c "$server_cpu" unbound -d -c "$work/unbound.conf" >"$work/unbound.log" 2>&1 &
pids+=($!)
# unbound answers every name as Holdfast does, or nothing is measured.
"$work/dnsbench" -spec examples/arvandor -check "$unbound" || { cat "$work/unbound.log"; exit 1; }

load() { # server-address, dnsperf flags...: dnsperf's report
	local addr=$1; shift
	timeout 60 "${prio[@]}" taskset -c "$load_cpu" dnsperf -s "${addr%:*}" -p "${addr##*:}" -d "$work/queries" "$@"
}
qps() { awk '/Queries per second/{printf "%d", $4}'; }
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2))}'; }

# (a) Throughput.
rounds_h="" rounds_u=""
for _ in 1 2 3 4; do
	rounds_u="$rounds_u $(load "$unbound" -c 10 -q 100 -l 3 | qps)"
	rounds_h="$rounds_h $(load "$holdfast" -c 10 -q 100 -l 3 | qps)"
done
qps_h=$(echo "$rounds_h" | median)
qps_u=$(echo "$rounds_u" | median)

# (b) Latency at 10,000 queries/s: every answer's latency in seconds, the
# queries not answered (lost) counted as slower than any.
latency() { # server-address, name: "answered p50 p99 max" in ms
	load "$1" -c 10 -Q 10000 -l 10 -v >"$work/$2.v"
	local sent
	sent=$(awk '/Queries sent:/{print $3}' "$work/$2.v")
	grep '^> ' "$work/$2.v" | awk '{print $NF}' | sort -n | awk -v sent="$sent" '
		function at(p,   i) { i = int(p * sent + 0.999999); return i <= NR ? sprintf("%.3f", a[i] * 1000) : "lost" }
		{ a[NR] = $1 }
		END { printf "%d %s %s %s\n", NR, at(0.5), at(0.99), (NR < sent ? "lost" : sprintf("%.3f", a[NR] * 1000)) }'
}
under1ms() { [ "$1" != lost ] && awk -v v="$1" 'BEGIN{exit !(v < 1)}'; }
for try in 1 2; do
	read -r n_h p50_h p99_h max_h < <(latency "$holdfast" holdfast)
	read -r n_u p50_u p99_u max_u < <(latency "$unbound" unbound)
	if under1ms "$p99_h" || under1ms "$p99_u" || [ "$try" = 2 ]; then break; fi
	echo "latency, try $try: both servers' p99 over 1 ms (holdfast $p99_h, unbound $p99_u): the machine was busy; again"
done

echo
echo "DNS on loopback: examples/arvandor's names, $(wc -l <"$work/queries") queries in turn; $(dnsperf -h 2>&1 | awk '/^Version/{print "dnsperf " $2}'),"
echo "$(unbound -V | awk 'NR==1{print "unbound " $2}'); each server alone on core $server_cpu, dnsperf on core $load_cpu ($(nproc) cores)"
printf '%-40s %14s %14s\n' "" holdfast unbound
printf '%-40s %14s %14s\n' "throughput, median of 4 rounds (q/s)" "$qps_h" "$qps_u"
printf '%-40s %14s %14s\n' "  rounds" "$(echo $rounds_h | tr ' ' /)" "$(echo $rounds_u | tr ' ' /)"
printf '%-40s %14s %14s\n' "at 10,000 q/s for 10 s: answered" "$n_h" "$n_u"
printf '%-40s %14s %14s\n' "  p50 latency (ms)" "$p50_h" "$p50_u"
printf '%-40s %14s %14s\n' "  p99 latency (ms)" "$p99_h" "$p99_u"
printf '%-40s %14s %14s\n' "  max latency (ms)" "$max_h" "$max_u"

fail=0
if [ "$qps_h" -lt "$qps_u" ]; then
	echo "FAIL: Holdfast answers $qps_h queries/s, fewer than unbound's $qps_u"
	fail=1
fi
if ! under1ms "$p99_h"; then
	echo "FAIL: Holdfast's p99 at 10,000 queries/s is $p99_h ms, not under 1 ms"
	fail=1
fi
[ "$fail" = 0 ] && echo "PASS: Holdfast's throughput at least unbound's; p99 under 1 ms at 10,000 queries/s"
exit "$fail"
