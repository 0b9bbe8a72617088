package mesh_test

import (
	"fmt"
	"os"
	"testing"
)

// TestMain runs the tests, or, in a child started by a test mesh, a member.
func TestMain(m *testing.M) {
	if os.Getenv(envChildConfig) == "" {
		os.Exit(m.Run())
	}
	if err := runChild(); err != nil {
		fmt.Fprintln(os.Stderr, "mesh child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}
