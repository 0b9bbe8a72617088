package spec

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/holdfast/holdfast/internal/atomicfile"
)

// The encoder is the loader's inverse: it walks the same yaml tags, so a
// field added to a spec type is written without touching this file. It
// builds yaml.Node trees rather than marshalling structs so that the output
// is deterministic (names sorted, fields in struct order) and free of unset
// fields, and so that Size, Range and Ports print in the short forms people
// write by hand.

// sectionFiles says which file each top-level section goes to; a section
// not listed here lands in defaultFile, so a new section is never dropped.
var sectionFiles = map[string]string{
	"zones":     "zones.yaml",
	"instances": "instances.yaml",
	"routes":    "routes.yaml",
}

// defaultFile holds the cloud, sites, roles, flavors, templates, groups and
// the tenancy block.
const defaultFile = "cloud.yaml"

// EncodedFiles lists every file name Encode can produce.
var EncodedFiles = []string{defaultFile, "zones.yaml", "instances.yaml", "routes.yaml"}

// valueEncoder is implemented by types with their own YAML syntax, the
// counterpart of valueDecoder.
type valueEncoder interface {
	encodeNode() *yaml.Node
}

// Encode renders s as YAML, one document per file, keyed by file name.
// Files whose sections are all empty are left out. Loading the files back
// with Load gives a spec equal to s (positions aside).
func Encode(s *Spec) (map[string][]byte, error) {
	docs := encodeSections(s, func(section string) string {
		if file := sectionFiles[section]; file != "" {
			return file
		}
		return defaultFile
	})
	out := make(map[string][]byte, len(docs))
	for file, doc := range docs {
		b, err := render(doc)
		if err != nil {
			return nil, fmt.Errorf("encode %s: %w", file, err)
		}
		out[file] = b
	}
	return out, nil
}

// EncodeFile renders s as one YAML document holding every section, as a
// single spec file (a tenants file, for one). Parsing it back gives a spec
// equal to s (positions aside). An empty spec is an empty file.
func EncodeFile(s *Spec) ([]byte, error) {
	doc := encodeSections(s, func(string) string { return "" })[""]
	if doc == nil {
		return []byte{}, nil
	}
	b, err := render(doc)
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	return b, nil
}

// encodeSections builds one mapping per file that fileOf assigns sections
// to, with the sections in struct order; empty sections are left out.
func encodeSections(s *Spec, fileOf func(section string) string) map[string]*yaml.Node {
	docs := map[string]*yaml.Node{}
	v := reflect.ValueOf(s).Elem()
	si := infoFor(v.Type())
	for _, fi := range si.fields {
		fv := v.Field(fi.index)
		if isEmptyValue(fv) {
			continue
		}
		file := fileOf(fi.key)
		doc := docs[file]
		if doc == nil {
			doc = &yaml.Node{Kind: yaml.MappingNode}
			docs[file] = doc
		}
		doc.Content = append(doc.Content, strNode(fi.key), encodeValue(fv))
	}
	return docs
}

func render(doc *yaml.Node) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return spaceSections(buf.Bytes()), nil
}

// Write encodes s into dir, creating it if needed. Each file is replaced
// atomically; a file of EncodedFiles that would now be empty is removed so
// that a stale section cannot be merged back in by Load. Other files in dir
// are left alone (and Load would merge them).
func Write(s *Spec, dir string) error {
	files, err := Encode(s)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write spec: %w", err)
	}
	for _, name := range SortedNames(files) {
		if err := atomicfile.Write(filepath.Join(dir, name), files[name], 0o644); err != nil {
			return fmt.Errorf("write spec: %w", err)
		}
	}
	for _, name := range EncodedFiles {
		if _, ok := files[name]; ok {
			continue
		}
		path := filepath.Join(dir, name)
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("write spec: remove stale %s: %w", path, err)
		}
	}
	return nil
}

// WriteFile encodes s with EncodeFile into the file at path, replacing it
// atomically: a reader sees the old spec or the new one, never a part.
func WriteFile(s *Spec, path string) error {
	data, err := EncodeFile(s)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, data, 0o644); err != nil {
		return fmt.Errorf("write spec: %w", err)
	}
	return nil
}

// encodeValue renders one non-empty value.
func encodeValue(v reflect.Value) *yaml.Node {
	if v.Kind() == reflect.Pointer && v.IsNil() {
		// Only a nil entry of a map or list gets here; fields are skipped.
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
	}
	if ve, ok := v.Interface().(valueEncoder); ok {
		return ve.encodeNode()
	}
	switch v.Kind() {
	case reflect.Pointer:
		return encodeValue(v.Elem())
	case reflect.Struct:
		return encodeStruct(v)
	case reflect.Map:
		n := &yaml.Node{Kind: yaml.MappingNode}
		names := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			names = append(names, k.String())
		}
		slices.Sort(names)
		for _, name := range names {
			n.Content = append(n.Content, strNode(name), encodeValue(v.MapIndex(reflect.ValueOf(name))))
		}
		return n
	case reflect.Slice:
		n := &yaml.Node{Kind: yaml.SequenceNode}
		flow := true
		for i := range v.Len() {
			item := encodeValue(v.Index(i))
			flow = flow && item.Kind == yaml.ScalarNode
			n.Content = append(n.Content, item)
		}
		if flow {
			n.Style = yaml.FlowStyle // [a, b, c]: lists of names read best on one line
		}
		return n
	case reflect.String:
		return strNode(v.String())
	case reflect.Int:
		return intNode(int(v.Int()))
	case reflect.Bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(v.Bool())}
	}
	panic(fmt.Sprintf("spec: no YAML encoding for %s", v.Type()))
}

// encodeStruct writes the set fields in struct order; Meta and yaml:"-"
// fields are not part of the file format.
func encodeStruct(v reflect.Value) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode}
	for _, fi := range infoFor(v.Type()).fields {
		fv := v.Field(fi.index)
		if isEmptyValue(fv) {
			continue
		}
		if fi.key == "description" {
			n.Content = appendBlock(n.Content, v)
		}
		n.Content = append(n.Content, strNode(fi.key), encodeValue(fv))
	}
	if !slices.ContainsFunc(n.Content, func(k *yaml.Node) bool { return k.Value == "description" }) {
		n.Content = appendBlock(n.Content, v)
	}
	return n
}

// appendBlock writes a site's engine block, before its description as the
// site's other fields were written before it.
func appendBlock(content []*yaml.Node, v reflect.Value) []*yaml.Node {
	if !v.CanAddr() {
		return content
	}
	if s, ok := v.Addr().Interface().(*Site); ok {
		if key, blk := s.encodeBlock(); blk != nil {
			content = append(content, strNode(key), blk)
		}
	}
	return content
}

// isEmptyValue reports whether a field is unset. A non-nil pointer is set
// even when it points at zero: vlan: 0 (untagged) differs from no vlan.
func isEmptyValue(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		return v.IsNil()
	case reflect.Slice, reflect.Map:
		return v.Len() == 0
	default:
		return v.IsZero()
	}
}

func strNode(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

func intNode(i int) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(i)}
}

func (s Size) encodeNode() *yaml.Node { return strNode(s.String()) }

func (r Range) encodeNode() *yaml.Node {
	if r.Lo == r.Hi {
		return intNode(r.Lo)
	}
	return strNode(r.String())
}

func (ps Ports) encodeNode() *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
	for _, r := range ps {
		n.Content = append(n.Content, r.encodeNode())
	}
	return n
}

// spaceSections puts a blank line before each top-level section after the
// first and before each named entry of a section (an indent-2 key whose
// value is a nested block), which is how people lay these files out.
// Only lines that yaml.v3 emits as keys can match: the content of a
// literal block is always indented deeper than its key, and a plain
// scalar never ends in ':'.
func spaceSections(data []byte) []byte {
	lines := strings.SplitAfter(string(data), "\n")
	var b strings.Builder
	b.Grow(len(data) + len(lines))
	prevTop := false
	for i, line := range lines {
		top := line != "" && line[0] != ' ' && line[0] != '\n'
		entry := strings.HasPrefix(line, "  ") && len(line) > 2 && line[2] != ' ' && line[2] != '-' &&
			strings.HasSuffix(strings.TrimRight(line, "\n"), ":")
		if i > 0 && (top || entry && !prevTop) {
			b.WriteByte('\n')
		}
		b.WriteString(line)
		prevTop = top
	}
	return []byte(b.String())
}
