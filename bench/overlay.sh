#!/usr/bin/env bash
# Measures Arvandor with its Nebula overlay on the local engine (as root):
# the apply that creates it (15 VMs, their certificates, the isolated
# bridge), a no-op apply, and how long after the apply every instance's agent
# reports its overlay member up (the guest service of holdfast serve
# answering them). Targets: apply < 5 s, no-op < 1 s.
# Usage: sudo bench/overlay.sh [holdfast-binary]
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/overlay.sh needs root (the local engine makes namespaces)"; exit 1; }
bin=${1:-}
if [ -z "$bin" ]; then
	bin=$(mktemp -d)/holdfast
	go build -o "$bin" ./cmd/holdfast
fi
work=$(mktemp -d)
state="$work/state"
spec=examples/arvandor
serve_pid=
cleanup() {
	[ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
	"$bin" destroy "$spec" --yes --state-dir "$state" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%6.2f", b-a}'; }
timed() { # label, command...: runs it, prints the wall time, fails if it fails
	local label=$1; shift
	local start; start=$(now)
	"$@" >"$work/out" 2>&1 || { cat "$work/out"; exit 1; }
	printf '%-40s %s s   %s\n' "$label" "$(since "$start")" "$(tail -n 1 "$work/out")"
}
# The control plane's guest service answers the agents (its reconciler is
# kept out of the way of the applies measured here).
"$bin" serve "$spec" --state-dir "$state" --no-tls --listen 127.0.0.1:0 --no-reconcile >"$work/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 100); do [ -S "$state/arvandor/guest/sock/agent.sock" ] && break; sleep 0.1; done

echo "Arvandor: 15 VMs on an isolated bridge, a Nebula overlay of 15 members ($(nproc) cores):"
start=$(now)
timed "apply (create all)" "$bin" apply "$spec" --yes --state-dir "$state"
until "$bin" status "$spec" --state-dir "$state" -o json 2>/dev/null |
	python3 -c 'import json,sys; s=json.load(sys.stdin); a=[x for x in s if x.get("agent")]; sys.exit(0 if a and all(x["agent"]["state"]=="ok" for x in a) else 1)'; do
	sleep 0.2
done
printf '%-40s %s s   (from the start of the apply)\n' "every agent reports its overlay up" "$(since "$start")"
timed "apply (no changes)" "$bin" apply "$spec" --yes --state-dir "$state"
timed "destroy" "$bin" destroy "$spec" --yes --state-dir "$state"
