#!/usr/bin/env bash
# Measures the proxmox engine against the PVE emulator on loopback:
#   - 100 VMs provisioned from nothing on 3 nodes whose every task (clone,
#     migrate, config, resize, start, SDN apply) takes 200 ms. Target: < 30 s.
#     No storage is shared: the template is on the first node's local-lvm,
#     and the VMs for the other nodes are cloned there and migrated.
#   - a no-op apply over 1,000 VMs on 4 nodes (inventory, observing every
#     guest's config and firewall, planning nothing). Target: < 2 s.
# Exits 1 when a target is missed. Usage: bench/proxmox.sh [count]
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-3}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
go test -run '^$' -bench 'BenchmarkProvision100$|BenchmarkNoopApply1000$' -benchtime "${count}x" ./internal/engine/proxmox/ | tee "$out"
check() { # benchmark, target seconds
	local got
	got=$(awk -v b="$1" '$1 ~ "^"b"(-[0-9]+)?$" { for (i = 1; i < NF; i++) if ($(i+1) == "s/apply") print $i }' "$out")
	[ -n "$got" ] || { echo "$1: no result"; exit 1; }
	if awk -v g="$got" -v t="$2" 'BEGIN { exit !(g < t) }'; then
		printf '%-24s %8.2f s  (target < %s s) ok\n' "$1" "$got" "$2"
	else
		printf '%-24s %8.2f s  (target < %s s) MISSED\n' "$1" "$got" "$2"
		exit 1
	fi
}
echo
check BenchmarkProvision100 30
check BenchmarkNoopApply1000 2
