package enginetest

import (
	"flag"
	"math/rand/v2"
	"os"
	"strconv"
	"time"
)

var seedFlag = flag.Uint64("enginetest.seed", 0, "replay the random choices of engine tests (kill points, fault timing) with this seed; also $HOLDFAST_TEST_SEED")

// Seed is the seed of t's random choices: the one asked for with
// -enginetest.seed or $HOLDFAST_TEST_SEED, else a fresh one. It is logged,
// so that a failure found at random can be replayed.
func Seed(t T) uint64 {
	t.Helper()
	seed := *seedFlag
	if v := os.Getenv("HOLDFAST_TEST_SEED"); seed == 0 && v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("HOLDFAST_TEST_SEED=%q: %v", v, err)
		}
	}
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d: replay with -enginetest.seed=%d or HOLDFAST_TEST_SEED=%d", seed, seed, seed)
	return seed
}

// Rand is a source of t's random choices, seeded by Seed.
func Rand(t T) *rand.Rand {
	t.Helper()
	s := Seed(t)
	return rand.New(rand.NewPCG(s, s>>32|1))
}
