package proxmox_test

// The tests load specs that mix proxmox and local sites: link every
// engine in, as the holdfast binary does.
import _ "github.com/holdfast/holdfast/internal/engine/engines"
