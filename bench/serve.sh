#!/usr/bin/env bash
# Measures the control plane, `holdfast serve`, end to end on loopback:
# 10,000 instances created through the API, then (a) the whole list walked 5
# times a page of 100 (target: p99 < 20 ms a page), (b) 1,000 HMAC-signed
# API-key requests/s for 60 s (target: all answered OK, none late to
# drain), (c) the idle resident memory after start and after the load
# (target: < 60 MB), and a clean exit on SIGTERM. Needs no root; about
# 3 minutes. Exits 1 when a target is missed. HOLDFAST_BENCH_JSON=FILE
# keeps every figure as JSON.
# Usage: bench/serve.sh [holdfast-binary] [loadgen flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-}
[ $# -gt 0 ] && shift
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ -z "$bin" ]; then
	bin="$work/holdfast"
	go build -o "$bin" ./cmd/holdfast
fi
go build -o "$work/loadgen" ./bench/loadgen
"$work/loadgen" -holdfast "$bin" -spec examples/tasmanian \
	-instances 10000 -walks 5 -limit 100 \
	-rate 1000 -duration 60s \
	-p99-page 20ms -min-rate 1000 -max-idle-rss 60MB \
	${HOLDFAST_BENCH_JSON:+-json "$HOLDFAST_BENCH_JSON"} "$@"
