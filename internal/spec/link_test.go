package spec_test

// The tests load specs whose sites name engines: link them all in, as the
// holdfast binary does.
import _ "github.com/holdfast/holdfast/internal/engine/engines"
