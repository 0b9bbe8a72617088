// Package dns is the cloud's name service, with github.com/miekg/dns for
// the wire: authoritative for the names Holdfast compiles — every NIC's
// <instance>.<zone>.<domain>, every overlay member's <name>.<overlay
// domain>, the reverse zones of every zone CIDR and of the overlay — and
// forwarding every other name to the spec's upstreams, with a cache, for
// the cloud's own clients only (never an open resolver).
//
// Records come from a compiled state (Build) and are swapped into a
// running Server whole (Server.Set): a query sees the old set or the new
// one, and every zone's SOA serial moves on with each change.
package dns
