// Package engines links every engine into a program: importing it
// registers them all. It is the one place outside an engine's own folder
// that a new engine is added to (one blank import line); spec, compile,
// deploy and the CLI find engines only through the registry.
package engines

import (
	_ "github.com/holdfast/holdfast/internal/engine/local"   // registers the local engine
	_ "github.com/holdfast/holdfast/internal/engine/proxmox" // registers the proxmox engine
)
