package spec_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/spec"
)

// header is a minimal valid cloud; cases that test something else start
// with it, so their own lines begin at line 3.
const header = `cloud: {name: demo, domain: demo.example.net}
sites: {s1: {engine: local, nodes: [n1]}}
`

// writeFiles writes name -> content into a fresh directory and returns it.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// check runs what `holdfast validate` runs — Load, then Validate when
// loading found no errors — and returns the findings, each rendered as
// "base:line:col: [warning: ]message" with the directory stripped.
func check(t *testing.T, path string) (*spec.Spec, []string) {
	t.Helper()
	s, diags := spec.Load(path)
	if !diags.HasErrors() {
		if s == nil {
			t.Fatalf("Load returned a nil spec without errors")
		}
		diags = append(diags, spec.Validate(s)...)
	}
	return s, render(diags)
}

func render(diags spec.Diagnostics) []string {
	out := make([]string, len(diags))
	for i, d := range diags {
		if d.Message == "" {
			panic("diagnostic without a message at " + d.Pos.String())
		}
		// Messages that cite another place name it by its full path.
		d.Message = strings.ReplaceAll(d.Message, filepath.Dir(d.Pos.File)+string(filepath.Separator), "")
		d.Pos.File = filepath.Base(d.Pos.File)
		out[i] = d.String()
	}
	return out
}

// expectDiags asserts that got holds exactly the wanted findings: each
// wanted string is a prefix of a distinct finding ("file:line:col: message",
// warnings as "file:line:col: warning: message", so the prefix fixes the
// severity too), and no finding is left over.
func expectDiags(t *testing.T, got []string, want ...string) {
	t.Helper()
	expectDiagsIn(t, nil, got, want...)
}

// expectDiagsIn is expectDiags that, on failure, shows each finding under
// the source line it points at (files maps base names to contents).
func expectDiagsIn(t *testing.T, files map[string]string, got []string, want ...string) {
	t.Helper()
	left := slices.Clone(got)
	var missing []string
	for _, w := range want {
		i := slices.IndexFunc(left, func(g string) bool { return strings.HasPrefix(g, w) })
		if i < 0 {
			missing = append(missing, w)
			continue
		}
		left = slices.Delete(left, i, i+1)
	}
	if len(missing) > 0 || len(left) > 0 {
		var all []string
		for _, g := range got {
			all = append(all, g+caret(files, g))
		}
		t.Errorf("diagnostics differ\nmissing:\n  %s\nunexpected:\n  %s\nall:\n  %s",
			strings.Join(missing, "\n  "), strings.Join(left, "\n  "), strings.Join(all, "\n  "))
	}
}

// caret renders the source line a finding points at, with a caret under
// its column, or nothing when the source is unknown.
func caret(files map[string]string, diag string) string {
	parts := strings.SplitN(diag, ":", 4)
	if len(parts) < 4 {
		return ""
	}
	src, ok := files[parts[0]]
	line, err1 := strconv.Atoi(parts[1])
	col, err2 := strconv.Atoi(parts[2])
	lines := strings.Split(src, "\n")
	if !ok || err1 != nil || err2 != nil || line < 1 || line > len(lines) || col < 1 {
		return ""
	}
	return "\n    | " + lines[line-1] + "\n    | " + strings.Repeat(" ", col-1) + "^"
}

// diagCase is one table entry: a spec file (or files) and the findings.
type diagCase struct {
	name  string
	yaml  string            // written as spec.yaml unless files is set
	files map[string]string // a spec directory
	want  []string          // see expectDiags; file names are base names
}

func runDiagCases(t *testing.T, cases []diagCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path(t)
			_, got := check(t, path)
			files := tc.files
			if files == nil {
				files = map[string]string{"spec.yaml": tc.yaml}
			}
			expectDiagsIn(t, files, got, tc.want...)
		})
	}
}

func (tc diagCase) path(t *testing.T) string {
	t.Helper()
	if tc.files != nil {
		return writeFiles(t, tc.files)
	}
	return filepath.Join(writeFiles(t, map[string]string{"spec.yaml": tc.yaml}), "spec.yaml")
}

// mustLoad loads and validates a spec that must have no errors.
func mustLoad(t *testing.T, yaml string) (*spec.Spec, []string) {
	t.Helper()
	path := filepath.Join(writeFiles(t, map[string]string{"spec.yaml": yaml}), "spec.yaml")
	s, got := check(t, path)
	for _, g := range got {
		if !strings.Contains(g, ": warning: ") {
			t.Fatalf("unexpected error: %s\nall:\n  %s", g, strings.Join(got, "\n  "))
		}
	}
	return s, got
}
