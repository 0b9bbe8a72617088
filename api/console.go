package api

// ConsoleControl is a text message a console's client sends over the
// console's WebSocket; binary messages are the terminal's bytes, both
// ways. Example: {"resize":{"cols":120,"rows":40}}.
type ConsoleControl struct {
	Resize *TermSize `json:"resize,omitempty" doc:"The terminal's new size."`
}

// TermSize is a terminal's size in character cells.
type TermSize struct {
	Cols int `json:"cols" min:"1" max:"1000"`
	Rows int `json:"rows" min:"1" max:"1000"`
}

// ConsoleAction is the audit action of a console opened, and of one
// closed (with how long it was open and the bytes each way).
const (
	ConsoleOpen  = "console.open"
	ConsoleClose = "console.close"
)
