package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds one spec file; a cloud of 50,000 instances is a few MB.
const MaxFileSize = 64 << 20

// Load reads a spec from a file or from every *.yaml / *.yml file of a
// directory (not recursive, hidden files skipped), merged. It reports every
// problem it finds; the spec is unusable when the diagnostics hold errors.
// Load does not validate references; call Validate for that.
func Load(path string) (*Spec, Diagnostics) {
	s, diags, _ := load(path)
	return s, diags
}

// load is Load that also says whether every file was read and parsed, so
// that Check knows the spec is whole enough to validate.
func load(path string) (*Spec, Diagnostics, bool) {
	var diags Diagnostics
	files, err := specFiles(path)
	if err != nil {
		diags.Errorf(Pos{File: path}, "%v", err)
		return nil, diags, false
	}
	s := &Spec{}
	whole := true
	for _, f := range files {
		data, err := readLimited(f)
		if err != nil {
			diags.Errorf(Pos{File: f}, "%v", err)
			whole = false
			continue
		}
		part, ds := Parse(f, data)
		diags = append(diags, ds...)
		if part == nil {
			whole = false
			continue
		}
		s.merge(part, &diags)
	}
	return s, diags, whole
}

func readLimited(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("file is larger than %d MiB", MaxFileSize>>20)
	}
	return data, nil
}

func specFiles(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read spec: %w", err)
	}
	if !fi.IsDir() {
		return []string{path}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read spec directory: %w", err)
	}
	var files []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || strings.HasPrefix(n, ".") {
			continue
		}
		if ext := filepath.Ext(n); ext == ".yaml" || ext == ".yml" {
			files = append(files, filepath.Join(path, n))
		}
	}
	if len(files) == 0 {
		return nil, errors.New("no *.yaml files in the spec directory")
	}
	slices.Sort(files)
	return files, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yaml.v3 numbers lines from 1 for its scanner's errors but from 0 for its
// parser's (the line then is the one before the construct it was parsing);
// these are the parser's messages.
var yamlParserErrors = []string{
	"did not find expected <stream-start>",
	"did not find expected <document start>",
	"did not find expected node content",
	"did not find expected '-' indicator",
	"did not find expected key",
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found undefined tag handle",
	"found duplicate %TAG directive",
}

// Parse decodes one file's YAML (one or more documents) into a partial spec.
func Parse(file string, data []byte) (*Spec, Diagnostics) {
	var diags Diagnostics
	d := &decoder{file: file, diags: &diags}
	s := &Spec{Files: []string{file}}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			diags = append(diags, syntaxError(file, err))
			return nil, diags
		}
		if len(doc.Content) == 0 || isNull(doc.Content[0]) {
			continue
		}
		part := &Spec{}
		d.decode(doc.Content[0], reflect.ValueOf(part).Elem(), "spec")
		if d.aliasBomb {
			// Decoding stopped part-way: what was read is truncated (lists
			// with holes) and must not be validated or compiled.
			return nil, diags
		}
		s.merge(part, &diags)
	}
	return s, diags
}

func syntaxError(file string, err error) Diagnostic {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		if slices.Contains(yamlParserErrors, m[2]) {
			line++
		}
		return Diagnostic{Pos: Pos{File: file, Line: line, Col: 1}, Message: "YAML syntax: " + m[2]}
	}
	return Diagnostic{Pos: Pos{File: file, Line: 1, Col: 1}, Message: "YAML syntax: " + strings.TrimPrefix(msg, "yaml: ")}
}

// merge adds other's definitions to s; a name defined in both is an error
// at the second definition.
func (s *Spec) merge(other *Spec, diags *Diagnostics) {
	for _, f := range other.Files {
		if !slices.Contains(s.Files, f) {
			s.Files = append(s.Files, f)
		}
	}
	if other.Cloud != nil {
		if s.Cloud != nil {
			diags.Errorf(other.Cloud.Pos, "cloud: defined again (first at %s)", s.Cloud.Pos)
		} else {
			s.Cloud = other.Cloud
		}
	}
	if other.Tenancy != nil {
		if s.Tenancy != nil {
			diags.Errorf(other.Tenancy.Pos, "tenancy: defined again (first at %s); a cloud has one tenancy block", s.Tenancy.Pos)
		} else {
			s.Tenancy = other.Tenancy
		}
	}
	if other.Overlay != nil {
		if s.Overlay != nil {
			diags.Errorf(other.Overlay.Pos, "overlay: defined again (first at %s); a cloud has one overlay", s.Overlay.Pos)
		} else {
			s.Overlay = other.Overlay
		}
	}
	if other.DNS != nil {
		if s.DNS != nil {
			diags.Errorf(other.DNS.Pos, "dns: defined again (first at %s); a cloud has one dns section", s.DNS.Pos)
		} else {
			s.DNS = other.DNS
		}
	}
	if other.ACME != nil {
		if s.ACME != nil {
			diags.Errorf(other.ACME.Pos, "acme: defined again (first at %s); a cloud has one acme section", s.ACME.Pos)
		} else {
			s.ACME = other.ACME
		}
	}
	mergeMap(&s.Sites, other.Sites, "site", diags)
	mergeMap(&s.Zones, other.Zones, "zone", diags)
	mergeMap(&s.Roles, other.Roles, "role", diags)
	mergeMap(&s.Flavors, other.Flavors, "flavor", diags)
	mergeMap(&s.Templates, other.Templates, "template", diags)
	mergeMap(&s.Groups, other.Groups, "group", diags)
	mergeMap(&s.Instances, other.Instances, "instance", diags)
	mergeMap(&s.Routes, other.Routes, "route", diags)
}

type positioned interface{ meta() *Meta }

func (m *Meta) meta() *Meta { return m }

func mergeMap[T positioned](dst *map[string]T, src map[string]T, kind string, diags *Diagnostics) {
	if len(src) == 0 {
		return
	}
	if *dst == nil {
		*dst = make(map[string]T, len(src))
	}
	for _, name := range SortedNames(src) {
		v := src[name]
		if prev, dup := (*dst)[name]; dup {
			diags.Errorf(v.meta().Pos, "%s %q: defined twice (first at %s)", kind, name, prev.meta().Pos)
			continue
		}
		(*dst)[name] = v
	}
}

// SortedNames returns a map's keys in order.
func SortedNames[T any](m map[string]T) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}
