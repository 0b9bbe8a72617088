#!/usr/bin/env bash
# Measures `holdfast plan` end to end — read, validate, compile, diff — on
# generated specs of 1k, 10k and 50k instances (100 zones, 3 sites): wall
# time and peak resident memory of the whole process.
# Usage: bench/plan.sh [holdfast-binary]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-}
if [ -z "$bin" ]; then
	bin=$(mktemp -d)/holdfast
	go build -o "$bin" ./cmd/holdfast
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '%-10s %-10s %-12s %-12s\n' instances spec_MB wall_s peak_rss_MB
for n in 1000 10000 50000; do
	"$bin" dev gen-spec --instances "$n" --zones 100 --sites 3 >"$work/spec.yaml"
	size=$(du -m "$work/spec.yaml" | cut -f1)
	best=""
	for _ in 1 2 3; do
		/usr/bin/time -f '%e %M' -o "$work/time" "$bin" plan "$work/spec.yaml" -o json >/dev/null
		read -r wall rss <"$work/time"
		if [ -z "$best" ] || awk -v a="$wall" -v b="${best%% *}" 'BEGIN{exit !(a<b)}'; then
			best="$wall $rss"
		fi
	done
	read -r wall rss <<<"$best"
	printf '%-10s %-10s %-12s %-12s\n' "$n" "$size" "$wall" "$((rss / 1024))"
done
