package compile_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/holdfast/holdfast/internal/compile"
)

func TestParseID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want compile.ID
		bad  bool
	}{
		{in: "site/a", want: compile.SiteID("a")},
		{in: "firewall/a", want: compile.FirewallID("a")},
		{in: "network/a/lan", want: compile.NetworkID("a", "lan")},
		{in: "instance/a/web-1", want: compile.InstanceID("a", "web-1")},
		{in: "route/b/app", want: compile.RouteID("b", "app")},
		{in: "acme-kind/s", want: compile.ID{Kind: "acme-kind", Site: "s"}},              // an engine's own kind, unnamed
		{in: "acme-kind/s/x", want: compile.ID{Kind: "acme-kind", Site: "s", Name: "x"}}, // or named
		{in: "", bad: true},
		{in: "site", bad: true},
		{in: "site/", bad: true},
		{in: "/a", bad: true},
		{in: "site/a/x", bad: true},      // a site has no name
		{in: "firewall/a/x", bad: true},  // nor does a firewall
		{in: "instance/web", bad: true},  // the form before IDs carried the site
		{in: "route/app", bad: true},     // likewise
		{in: "network/a/", bad: true},    // an empty name
		{in: "network/a/b/c", bad: true}, // names hold no slash
		{in: "instance//web", bad: true}, // an empty site
	} {
		got, err := compile.ParseID(tc.in)
		switch {
		case tc.bad && err == nil:
			t.Errorf("ParseID(%q) = %+v, want an error", tc.in, got)
		case tc.bad && !errors.Is(err, compile.ErrBadID):
			t.Errorf("ParseID(%q): error %v is not ErrBadID", tc.in, err)
		case !tc.bad && err != nil:
			t.Errorf("ParseID(%q): %v", tc.in, err)
		case !tc.bad && got != tc.want:
			t.Errorf("ParseID(%q) = %+v, want %+v", tc.in, got, tc.want)
		case !tc.bad && got.String() != tc.in:
			t.Errorf("ParseID(%q).String() = %q", tc.in, got.String())
		}
	}
}

// A resource's JSON keeps its ID and dependencies as strings, as before
// IDs were typed: the JSON form is a documented contract.
func TestIDJSONIsAString(t *testing.T) {
	r := compile.NewResource(compile.InstanceID("a", "web"), []compile.ID{compile.FirewallID("a")}, map[string]string{})
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"instance/a/web","kind":"instance","site":"a","deps":["firewall/a"],"attrs":{}}`
	if string(b) != want {
		t.Errorf("JSON %s, want %s", b, want)
	}
	var back compile.Resource
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.ID != r.ID || len(back.Deps) != 1 || back.Deps[0] != r.Deps[0] {
		t.Errorf("round trip gave %+v, want %+v", back, r)
	}
	if err := json.Unmarshal([]byte(`{"id":"instance/web"}`), &back); !errors.Is(err, compile.ErrBadID) {
		t.Errorf("decoding an ID without a site: %v, want ErrBadID", err)
	}
}

// FuzzParseID checks that the printer and the parser agree: whatever
// parses prints back as the same text, and parses again to the same ID.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{"site/a", "network/a/lan", "instance/a/web", "route/b/app", "x/y/z", "instance/web", "a//b", "/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := compile.ParseID(s)
		if err != nil {
			return
		}
		if id.String() != s {
			t.Fatalf("ParseID(%q).String() = %q", s, id.String())
		}
		again, err := compile.ParseID(id.String())
		if err != nil || again != id {
			t.Fatalf("ParseID(%q) = %+v, %v; want %+v", id.String(), again, err, id)
		}
		text, err := id.MarshalText()
		if err != nil || string(text) != s {
			t.Fatalf("MarshalText of %+v = %q, %v", id, text, err)
		}
	})
}
