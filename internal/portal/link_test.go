package portal_test

// The tests serve examples/tasmanian, whose sites name engines: link them
// all in, as the holdfast binary does.
import _ "github.com/holdfast/holdfast/internal/engine/engines"
