#!/usr/bin/env bash
# Measures the local engine (as root): apply of 200 instances in 10 zones on
# 2 nodes, a no-op apply of the same, and destroy. Targets: < 10 s, < 1 s,
# < 5 s. Also prints the edge's ruleset size for 10, 50 and 100 zones.
# Usage: sudo bench/apply.sh [holdfast-binary]
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "bench/apply.sh needs root (the local engine makes namespaces)"; exit 1; }
bin=${1:-}
if [ -z "$bin" ]; then
	bin=$(mktemp -d)/holdfast
	go build -o "$bin" ./cmd/holdfast
fi
work=$(mktemp -d)
state="$work/state"
trap '"$bin" destroy "$work/spec.yaml" --yes --state-dir "$state" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
"$bin" dev gen-spec --instances 200 --zones 10 --sites 1 --nodes 2 | sed 's/name: gen,/name: benchapply,/' >"$work/spec.yaml"

timed() { # label, command...: runs it, prints the wall time, fails if it fails
	local label=$1; shift
	local start end
	start=$(date +%s.%N)
	"$@" >"$work/out" 2>&1 || { cat "$work/out"; exit 1; }
	end=$(date +%s.%N)
	printf '%-28s %6.2f s   %s\n' "$label" "$(awk -v a="$start" -v b="$end" 'BEGIN{print b-a}')" "$(tail -n 1 "$work/out")"
}
echo "200 instances, 10 zones, 1 site of 2 nodes ($(nproc) cores):"
timed "apply (create all)" "$bin" apply "$work/spec.yaml" --yes --state-dir "$state"
timed "apply (no changes)" "$bin" apply "$work/spec.yaml" --yes --state-dir "$state"
timed "destroy" "$bin" destroy "$work/spec.yaml" --yes --state-dir "$state"

echo
echo "edge ruleset size (one pinhole per zone, 3 instances per zone):"
go test -run 'TestRulesetGrowsLinearly' -v ./internal/engine/local/firewall/ | grep -E 'zones,' | sed 's/^.*bench_test.go:[0-9]*: /  /'
