// Package overlay makes Holdfast the certificate authority of a cloud's
// Nebula overlay and renders each member's Nebula configuration.
//
// It takes plain inputs — a Member (name, overlay address, groups), a
// NodeConfig (lighthouses, port, firewall rules) — so that it knows
// nothing of the spec or the compiler; whoever holds the desired state
// maps it onto these types. Certificates, keys and signatures are
// Nebula's own (github.com/slackhq/nebula/cert); nothing here implements
// cryptography beyond sealing the CA key with auth.Box.
//
// The CA lives in a directory of its own (see Dir):
//
//	ca.crt          the CA certificate, PEM                          0600
//	ca.key.sealed   the CA signing key, sealed under the master key  0600
//	blocklist.json  revoked host certificates' fingerprints          0600
//
// The directory is 0700 and is created with the CA in one rename, so a
// crash never leaves a CA certificate without its key.
package overlay
