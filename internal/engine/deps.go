package engine

// Dependencies of the local engine and the state store, pinned here until
// the packages that use them land.
import (
	_ "github.com/google/nftables"
	_ "github.com/vishvananda/netlink"
	_ "github.com/vishvananda/netns"
	_ "golang.org/x/sys/unix"
	_ "modernc.org/sqlite"
)
