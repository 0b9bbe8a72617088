package auth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

const plain = "hunter2-very-secret"

func TestSecretNeverPrints(t *testing.T) {
	s := SecretString(plain)
	type Exported struct {
		User  string
		Token Secret
		Ptr   *Secret
	}
	type unexported struct {
		user  string
		token Secret
	}
	e := Exported{User: "alice", Token: s, Ptr: &s}
	u := unexported{user: "alice", token: s}
	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v"} {
		outs = append(outs,
			fmt.Sprintf(verb, s), fmt.Sprintf(verb, &s),
			fmt.Sprintf(verb, e), fmt.Sprintf(verb, u), fmt.Sprintf(verb, []Secret{s}),
			fmt.Sprintf(verb, map[string]Secret{"k": s}))
	}
	outs = append(outs, fmt.Sprint(s), fmt.Sprintln(e), s.String(), s.GoString())
	for _, v := range []any{s, e, u, &e, map[string]Secret{"k": s}} {
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, string(j))
	}
	var buf bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&buf, nil), slog.NewJSONHandler(&buf, nil)} {
		l := slog.New(h)
		l.Info("login", "password", s, "req", e, "u", u)
		l.Info("group", slog.Group("g", "p", s))
	}
	outs = append(outs, buf.String())
	for _, o := range outs {
		if strings.Contains(o, plain) || strings.Contains(o, fmt.Sprintf("%x", plain)) {
			t.Errorf("secret leaked: %s", o)
		}
	}
	if !strings.Contains(fmt.Sprintf("%+v", e), "Token:[redacted]") {
		t.Errorf("%%+v = %s", fmt.Sprintf("%+v", e))
	}
	if j, _ := json.Marshal(e); !strings.Contains(string(j), `"Token":"[redacted]"`) {
		t.Errorf("json = %s", j)
	}
	if !strings.Contains(buf.String(), "password=[redacted]") {
		t.Errorf("slog = %s", buf.String())
	}
}

func TestSecretExpose(t *testing.T) {
	b := []byte(plain)
	s := NewSecret(b)
	b[0] = 'X' // NewSecret copies
	if string(s.Expose()) != plain || s.IsZero() {
		t.Fatalf("Expose = %q", s.Expose())
	}
	var zero Secret
	if !zero.IsZero() || zero.Expose() != nil || zero.String() != "[redacted]" {
		t.Fatal("zero Secret")
	}
}
