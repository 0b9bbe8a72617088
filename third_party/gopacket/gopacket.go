// Package gopacket is empty: Holdfast builds nothing that uses it. It
// exists because Nebula's own tests import it, and go mod tidy resolves
// the imports of its dependencies' tests (see README.md).
package gopacket
