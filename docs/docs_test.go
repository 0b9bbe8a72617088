// Package docs holds Holdfast's documentation. Its test keeps the
// repository self-contained: a fresh clone, with nothing beside it, is all
// a reader or a test ever needs.
package docs

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// root is the repository, seen from this package's directory.
const root = ".."

// mdLink matches the target of an inline Markdown link or image.
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// code matches fenced blocks and inline code spans, which show text
// rather than link to anything.
var code = regexp.MustCompile("(?s)```.*?```|`[^`\n]*`")

// withoutCode blanks code out of Markdown, keeping line numbers.
func withoutCode(b []byte) []byte {
	return code.ReplaceAllFunc(b, func(m []byte) []byte {
		return bytes.Map(func(r rune) rune {
			if r == '\n' {
				return r
			}
			return ' '
		}, m)
	})
}

// outside are ways a file could point at things beside the repository on
// the machine it was written on (the checkout's siblings, its absolute
// path) rather than at the repository or at a public document.
// They are spelled in pieces so that this file, which states the rule, does
// not match it.
var outside = []string{".." + "/shared/", "/work" + "/shared", "shared" + "/fixtures/", "shared" + "/reference/"}

// TestNothingPointsOutsideTheRepository reads every text file of the
// repository: no Markdown link may lead out of it or to a file that does
// not exist, and no file may name a path beside the checkout.
func TestNothingPointsOutsideTheRepository(t *testing.T) {
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" || d.Name() == "node_modules" {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".md", ".go", ".yaml", ".yml", ".sh", ".json", ".sql", "":
		default:
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil || bytes.IndexByte(b, 0) >= 0 {
			return err // binary files name no paths
		}
		files++
		rel, _ := filepath.Rel(root, path)
		for _, o := range outside {
			if i := bytes.Index(b, []byte(o)); i >= 0 {
				t.Errorf("%s:%d names %q, a path beside the repository: carry the file in the repository or name its public source",
					rel, 1+bytes.Count(b[:i], []byte("\n")), o)
			}
		}
		if filepath.Ext(path) != ".md" {
			return nil
		}
		b = withoutCode(b)
		for _, m := range mdLink.FindAllSubmatchIndex(b, -1) {
			target := string(b[m[2]:m[3]])
			if strings.Contains(target, "://") || strings.HasPrefix(target, "#") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			target, _, _ = strings.Cut(target, "#")
			line := 1 + bytes.Count(b[:m[0]], []byte("\n"))
			dest := filepath.Join(filepath.Dir(path), target)
			if d, _ := filepath.Abs(dest); d != abs && !strings.HasPrefix(d, abs+string(filepath.Separator)) {
				t.Errorf("%s:%d links to %s, outside the repository", rel, line, target)
				continue
			}
			if _, err := os.Stat(dest); err != nil {
				t.Errorf("%s:%d links to %s, which does not exist", rel, line, target)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Fatalf("read only %d files from %s: is this the repository?", files, abs)
	}
}
