// Package testenv holds what tests need to know about the machine they run
// on. Tests that need root skip without it on a developer's machine, but
// where HOLDFAST_REQUIRE_ROOT is set — CI sets it — such a skip is a
// failure: a green run must never mean that nothing was tested.
package testenv

import (
	"os"
	"testing"
)

// RequireRootEnv makes root-only tests fail instead of skipping.
const RequireRootEnv = "HOLDFAST_REQUIRE_ROOT"

// NeedRoot skips (or, under RequireRootEnv, fails) a test not run as root.
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	Unavailable(t, "needs root: "+why)
}

// Unavailable skips (or, under RequireRootEnv, fails) a test whose
// environment is missing something.
func Unavailable(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv(RequireRootEnv) != "" {
		t.Fatalf("%s (%s is set: in CI this is a failure, not a skip)", reason, RequireRootEnv)
	}
	t.Skipf("%s (set %s=1 to make this a failure)", reason, RequireRootEnv)
}
