#!/usr/bin/env bash
# Measures Holdfast's front door (internal/frontdoor) against Debian's
# HAProxy on loopback, and the front door's failover time (issue 14):
#   (a) requests/s and p99 latency through each proxy to ONE backend (a
#       tiny Go server, bench/fdbench backend, the same process for both),
#       for the same route: Host localhost, keep-alive to the backend on
#       both, plain HTTP, then HTTPS with one self-signed certificate
#       (ECDSA P-256) both present. The same load generator, wrk -t2 -c50,
#       2 s of warm-up then 8 s measured, each proxy alone under load, one
#       after the other: HAProxy, the front door, HAProxy again;
#   (b) failover: the front door preferring one backend process and
#       failing over to another, a client asking every 5 ms, and the
#       preferred one killed (SIGKILL); the time from the kill to the
#       first answer from the failover backend, and the longest run of
#       failed requests, 10 times (bench/fdbench failover).
# Targets (issue 14): the front door's throughput at least 0.6 times
# HAProxy's, its p99 at most twice HAProxy's, no errors, in both runs;
# failover in a median under 3 s, every run failing over. Exits 1 when
# one is missed.
#
# Cores: the machine has 2; nothing is pinned (wrk, the proxy and the
# backend all need them, and HAProxy and the front door get the same):
# HAProxy with nbthread 2, the front door with GOMAXPROCS=2. So the
# figures compare the proxies on this machine, not either's ceiling. The
# proxy's own CPU time per request (from /proc) is printed beside them.
#
# Noise: the machine is shared. As root, everything runs at nice -20.
# HAProxy, the control, is measured before and after the front door; the
# front door is compared with the mean of the two. When the two HAProxy
# runs disagree (throughput by more than 25 %, p99 by more than 1.5 times)
# the machine was busy, and when a target is missed, the triple is
# measured once more. When the front door misses a target again while
# the machine was steady, the run fails. When it misses again and HAProxy
# again disagreed with itself, the run is INCONCLUSIVE: it passes if the
# front door meets the targets against the HAProxy run least favourable
# to HAProxy (the lower throughput, the higher p99), which is all a busy
# machine can tell, and fails if it misses even those.
#
# Needs wrk and haproxy (CI installs them, .ci/run); root only for the
# priority; about 90 s (150 s with both re-runs). Usage:
# bench/frontdoor.sh [fdbench-binary] (built from this tree when not given).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in wrk haproxy; do
	command -v "$tool" >/dev/null || { echo "bench/frontdoor.sh needs $tool (apt-get install wrk haproxy)"; exit 1; }
done
work=$(mktemp -d)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

prio=()
if [ "$(id -u)" = 0 ]; then prio=(nice -n -20); fi

fdbench=${1:-}
if [ -z "$fdbench" ]; then
	fdbench="$work/fdbench"
	go build -o "$fdbench" ./bench/fdbench
fi
waitfor() { # file, line prefix: waits up to 10 s for the line, prints its last field
	for _ in $(seq 100); do grep -q "^$2 " "$1" && break; sleep 0.1; done
	grep -q "^$2 " "$1" || { cat "$1"; return 1; }
	awk -v p="$2 " 'index($0, p) == 1 {print $NF; exit}' "$1"
}

# The backend, the front door, HAProxy; each bounded in time, whatever
# happens to this script.
timeout 170 "${prio[@]}" "$fdbench" backend -name app >"$work/backend.out" 2>&1 &
pids+=($!)
backend=$(waitfor "$work/backend.out" backend)
GOMAXPROCS=2 timeout 170 "${prio[@]}" "$fdbench" serve -backend "$backend" -dir "$work" -host localhost \
	-haproxy-threads 2 >"$work/serve.out" 2>&1 &
pids+=($!)
fd_http=$(waitfor "$work/serve.out" "frontdoor http")
fd_https=$(waitfor "$work/serve.out" "frontdoor https")
ha_http=$(waitfor "$work/serve.out" "haproxy http")
ha_https=$(waitfor "$work/serve.out" "haproxy https")
timeout 170 "${prio[@]}" haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.log" 2>&1 &
pids+=($!)
# HAProxy reaches the backend as the front door does, or nothing is
# measured (fdbench serve checked its own routes before it said so).
for url in "http://localhost:${ha_http##*:}/" "https://localhost:${ha_https##*:}/"; do
	"$fdbench" check -url "$url" -want "fdbench backend app" || { cat "$work/haproxy.log"; exit 1; }
done
pid_fd=$(pgrep -P "${pids[1]}")
pid_ha=$(pgrep -P "${pids[2]}")

# wrk reports through a script of its own: the exact figures, in
# microseconds, rather than its rounded text.
cat >"$work/report.lua" <<'EOF'
done = function(summary, latency, requests)
	local e = summary.errors
	io.write(string.format("result %d %d %d %d %d %d\n", summary.requests, summary.duration,
		latency:percentile(50), latency:percentile(99), latency.max,
		e.connect + e.read + e.write + e.timeout + e.status))
end
EOF
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
measure() { # url, pid: "req/s p50-ms p99-ms max-ms errors cpu-µs-per-request"
	local before out
	timeout 30 "${prio[@]}" wrk -t2 -c50 -d2s "$1" >/dev/null
	before=$(ticks "$2")
	out=$(timeout 30 "${prio[@]}" wrk -t2 -c50 -d8s --latency -s "$work/report.lua" "$1")
	echo "$out" >>"$work/wrk.log"
	echo "$out" | awk -v cpu="$(($(ticks "$2") - before))" -v hz="$hz" '/^result /{
		printf "%d %.3f %.3f %.3f %d %.1f\n", $2 / ($3 / 1e6), $4 / 1000, $5 / 1000, $6 / 1000, $7, cpu / hz * 1e6 / $2 }'
}
# verdict: the front door (rps, p99, errors) against HAProxy's throughput
# and p99: "ok", or what it missed.
verdict() { # fd-rps fd-p99 fd-errors ha-rps ha-p99
	awk -v r="$1" -v p="$2" -v e="$3" -v hr="$4" -v hp="$5" 'BEGIN{
		m = ""
		if (r < 0.6 * hr) m = m sprintf("throughput %d req/s < 0.6 x %d; ", r, hr)
		if (p > 2 * hp) m = m sprintf("p99 %.3f ms > 2 x %.3f ms; ", p, hp)
		if (e > 0) m = m sprintf("%d errors; ", e)
		sub(/; $/, "", m)
		print (m == "" ? "ok" : m) }'
}

fail=0
results=()
for proto in http https; do
	if [ "$proto" = http ]; then
		fd_url="http://localhost:${fd_http##*:}/" ha_url="http://localhost:${ha_http##*:}/"
	else
		fd_url="https://localhost:${fd_https##*:}/" ha_url="https://localhost:${ha_https##*:}/"
	fi
	for try in 1 2; do
		read -r hr1 h50_1 hp1 hmax1 he1 hc1 < <(measure "$ha_url" "$pid_ha")
		read -r fr f50 fp fmax fe fc < <(measure "$fd_url" "$pid_fd")
		read -r hr2 h50_2 hp2 hmax2 he2 hc2 < <(measure "$ha_url" "$pid_ha")
		hr=$(((hr1 + hr2) / 2))
		hp=$(awk -v a="$hp1" -v b="$hp2" 'BEGIN{printf "%.3f", (a + b) / 2}')
		steady=$(awk -v r1="$hr1" -v r2="$hr2" -v p1="$hp1" -v p2="$hp2" 'BEGIN{
			print (r1 <= 1.25 * r2 && r2 <= 1.25 * r1 && p1 <= 1.5 * p2 && p2 <= 1.5 * p1) ? "yes" : "no" }')
		v=$(verdict "$fr" "$fp" "$fe" "$hr" "$hp")
		if [ "$v" = ok ] && [ "$steady" = yes ]; then break; fi
		if [ "$try" = 1 ]; then
			why=""
			[ "$v" = ok ] || why="the front door missed: $v"
			[ "$steady" = yes ] || why="${why:+$why; }HAProxy unsteady: ${hr1}/${hr2} req/s, p99 ${hp1}/${hp2} ms"
			echo "$proto, try 1: $why; again"
		fi
	done
	results+=("$(printf '%-6s %-34s %12s %12s %12s' "$proto" "throughput (req/s)" "$fr" "$hr1" "$hr2")"
		"$(printf '%-6s %-34s %12s %12s %12s' "" "p50 latency (ms)" "$f50" "$h50_1" "$h50_2")"
		"$(printf '%-6s %-34s %12s %12s %12s' "" "p99 latency (ms)" "$fp" "$hp1" "$hp2")"
		"$(printf '%-6s %-34s %12s %12s %12s' "" "max latency (ms)" "$fmax" "$hmax1" "$hmax2")"
		"$(printf '%-6s %-34s %12s %12s %12s' "" "errors (socket, non-2xx)" "$fe" "$he1" "$he2")"
		"$(printf '%-6s %-34s %12s %12s %12s' "" "proxy CPU per request (µs)" "$fc" "$hc1" "$hc2")")
	if [ "$he1" -gt 0 ] || [ "$he2" -gt 0 ]; then
		results+=("FAIL: $proto: HAProxy had errors (${he1}, ${he2}): the bench is broken; see its log")
		fail=1
	elif [ "$v" = ok ]; then
		results+=("PASS: $proto: front door $fr req/s, p99 $fp ms; HAProxy $hr req/s, p99 $hp ms (mean of two)")
	elif [ "$steady" = no ]; then
		worst=$(verdict "$fr" "$fp" "$fe" "$(( hr1 < hr2 ? hr1 : hr2 ))" "$(awk -v a="$hp1" -v b="$hp2" 'BEGIN{print (a > b ? a : b)}')")
		if [ "$worst" = ok ]; then
			results+=("INCONCLUSIVE: $proto: the machine was busy (HAProxy ${hr1}/${hr2} req/s, p99 ${hp1}/${hp2} ms, twice);"
				"  against the mean the front door missed ($v), against HAProxy's worse run it meets the targets")
		else
			results+=("FAIL: $proto: the front door missed the targets even against HAProxy's worse run: $worst")
			fail=1
		fi
	else
		results+=("FAIL: $proto: $v")
		fail=1
	fi
done

# (b) Failover, in a process of its own (its backends are its children).
GOMAXPROCS=2 timeout 90 "${prio[@]}" "$fdbench" failover -runs 10 >"$work/failover.out" 2>&1 ||
	{ cat "$work/failover.out"; exit 1; }
read -r fo_median fo_max < <(awk '/^failover median /{print $3, $5}' "$work/failover.out")
no_failover=$(awk '/^no-failover /{print $2}' "$work/failover.out")

echo
echo "Front door on loopback: $(wrk -v 2>&1 | awk 'NR==1{print "wrk " $2}') -t2 -c50, 2 s warm-up then 8 s; $(haproxy -v | awk 'NR==1{print "HAProxy " $3}') nbthread 2,"
echo "the front door GOMAXPROCS=2; one backend (bench/fdbench); $(nproc) cores, nothing pinned: wrk, proxy and backend share them"
printf '%-6s %-34s %12s %12s %12s\n' "" "" "front door" "HAProxy 1" "HAProxy 2"
printf '%s\n' "${results[@]}"
echo
grep -v '^failover median\|^failed requests\|^no-failover' "$work/failover.out"
echo "failover time: median $fo_median ms, max $fo_max ms; $(awk '/^failed requests /{print $3 " requests failed in all, the longest failing run " $5 " ms"}' "$work/failover.out")"
if [ "$no_failover" != 0 ]; then
	echo "FAIL: failover: $no_failover runs never answered from the failover backend"
	fail=1
elif awk -v m="$fo_median" 'BEGIN{exit !(m < 3000)}'; then
	echo "PASS: failover: median $fo_median ms < 3 s"
else
	echo "FAIL: failover: median $fo_median ms, not under 3 s"
	fail=1
fi
exit "$fail"
