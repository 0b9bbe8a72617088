package tappaas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/holdfast/holdfast/internal/spec"
)

// TAPPaaS files are plain JSON, but encoding/json forgets where things were.
// This file reads them into a small tree that remembers the byte offset of
// every key and value, so that errors and the imported spec objects can
// point at file:line:col in the TAPPaaS file the user wrote.

type kind int

const (
	kNull kind = iota
	kBool
	kNumber
	kString
	kArray
	kObject
)

var kindNames = [...]string{kNull: "null", kBool: "a boolean", kNumber: "a number", kString: "a string", kArray: "a list", kObject: "an object"}

func (k kind) String() string { return kindNames[k] }

// value is one JSON value and where it starts.
type value struct {
	kind    kind
	off     int64
	str     string // text of a string, or the literal of a number
	boolean bool
	members []member // object members in file order
	elems   []*value
}

// member is one key of an object.
type member struct {
	key string
	off int64 // where the key starts
	val *value
}

// get returns the member named key, or nil.
func (v *value) get(key string) *member {
	if v == nil || v.kind != kObject {
		return nil
	}
	for i := range v.members {
		if v.members[i].key == key {
			return &v.members[i]
		}
	}
	return nil
}

// maxDepth bounds nesting; TAPPaaS files are four levels deep, and the
// limit keeps hostile input from exhausting the stack.
const maxDepth = 64

// source is one input file: its name, bytes and line starts.
type source struct {
	name  string
	data  []byte
	lines []int // offset of the start of each line
}

func newSource(name string, data []byte) *source {
	s := &source{name: name, data: data, lines: []int{0}}
	for i, b := range data {
		if b == '\n' {
			s.lines = append(s.lines, i+1)
		}
	}
	return s
}

// pos turns a byte offset into a 1-based line and a column counted in
// characters, as editors show them.
func (s *source) pos(off int64) spec.Pos {
	o := int(max(0, min(off, int64(len(s.data)))))
	line, found := slices.BinarySearch(s.lines, o)
	if !found {
		line-- // o lies inside the line that starts before it
	}
	return spec.Pos{File: s.name, Line: line + 1, Col: utf8.RuneCount(s.data[s.lines[line]:o]) + 1}
}

// parse reads the whole file as one JSON value.
func (s *source) parse() (*value, error) {
	p := &parser{src: s, dec: json.NewDecoder(bytes.NewReader(s.data))}
	p.dec.UseNumber()
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	off := p.next()
	if _, err := p.dec.Token(); !errors.Is(err, io.EOF) {
		return nil, p.errorAt(off, err, "unexpected data after the JSON value")
	}
	return v, nil
}

type parser struct {
	src *source
	dec *json.Decoder
}

// next returns the offset where the next token starts: the decoder's offset
// is just past the previous token, before any separator.
func (p *parser) next() int64 {
	off := p.dec.InputOffset()
	for off < int64(len(p.src.data)) && strings.IndexByte(" \t\r\n,:", p.src.data[off]) >= 0 {
		off++
	}
	return off
}

// errorAt builds a positioned error: a message at off, or, for an error
// from the decoder, a syntax error at the offending byte. The decoder's
// own offsets are relative to the value it was reading, so the position
// comes from json.Unmarshal's whole-input check, which counts from the
// start of the file.
func (p *parser) errorAt(off int64, err error, msg string) error {
	if err != nil {
		var raw json.RawMessage
		var syn *json.SyntaxError
		switch uerr := json.Unmarshal(p.src.data, &raw); {
		case errors.As(uerr, &syn):
			off, msg = max(0, syn.Offset-1), "JSON syntax: "+syn.Error()
			if syn.Offset >= int64(len(p.src.data)) && strings.HasPrefix(syn.Error(), "unexpected end") {
				off = int64(len(p.src.data))
			}
		case msg == "":
			msg = "JSON: " + err.Error()
		}
	}
	return &posError{pos: p.src.pos(off), msg: msg}
}

func (p *parser) value(depth int) (*value, error) {
	off := p.next()
	if depth > maxDepth {
		return nil, p.errorAt(off, nil, fmt.Sprintf("JSON nested more than %d levels deep", maxDepth))
	}
	tok, err := p.dec.Token()
	if err != nil {
		return nil, p.errorAt(off, err, "")
	}
	v := &value{off: off}
	switch t := tok.(type) {
	case nil:
		v.kind = kNull
	case bool:
		v.kind, v.boolean = kBool, t
	case json.Number:
		v.kind, v.str = kNumber, string(t)
	case string:
		v.kind, v.str = kString, t
	case json.Delim:
		switch t {
		case '{':
			v.kind = kObject
			for p.dec.More() {
				keyOff := p.next()
				k, err := p.dec.Token()
				if err != nil {
					return nil, p.errorAt(keyOff, err, "")
				}
				key, _ := k.(string) // the decoder only returns strings in key position
				val, err := p.value(depth + 1)
				if err != nil {
					return nil, err
				}
				v.members = append(v.members, member{key: key, off: keyOff, val: val})
			}
		case '[':
			v.kind = kArray
			for p.dec.More() {
				el, err := p.value(depth + 1)
				if err != nil {
					return nil, err
				}
				v.elems = append(v.elems, el)
			}
		}
		closeOff := p.next()
		if _, err := p.dec.Token(); err != nil { // the closing delimiter
			return nil, p.errorAt(closeOff, err, "")
		}
	}
	return v, nil
}

// posError is an error at a place in a file.
type posError struct {
	pos spec.Pos
	msg string
}

func (e *posError) Error() string { return e.pos.String() + ": " + e.msg }

// The accessors below accept what TAPPaaS itself accepts: its files write
// numbers as strings ("typeId": "2", "memory": "4096") and booleans as
// strings ("cloudInit": "false") as often as natively.

func (v *value) asString() (string, bool) {
	if v.kind == kString {
		return v.str, true
	}
	return "", false
}

func (v *value) asInt() (int, bool) {
	switch v.kind {
	case kNumber, kString:
		n, err := strconv.Atoi(strings.TrimSpace(v.str))
		return n, err == nil
	}
	return 0, false
}

func (v *value) asBool() (bool, bool) {
	switch {
	case v.kind == kBool:
		return v.boolean, true
	case v.kind == kString && strings.EqualFold(v.str, "true"):
		return true, true
	case v.kind == kString && strings.EqualFold(v.str, "false"):
		return false, true
	}
	return false, false
}

func (v *value) asStrings() ([]string, bool) {
	if v.kind != kArray {
		return nil, false
	}
	out := make([]string, 0, len(v.elems))
	for _, e := range v.elems {
		s, ok := e.asString()
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// describe names a value for messages: `"abc"`, `number 1.5`, `a list`.
func (v *value) describe() string {
	switch v.kind {
	case kString:
		return strconv.Quote(v.str)
	case kNumber:
		return "number " + v.str
	case kBool:
		return "boolean " + strconv.FormatBool(v.boolean)
	}
	return v.kind.String()
}
