package portal_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestChecksCatchViolations proves the checks every portal page is held
// to would fail a page that breaks them: a page with an inline script
// under a strict CSP, and an image with no text alternative, served by a
// plain test server.
func TestChecksCatchViolations(t *testing.T) {
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><html lang="en"><head><title>bad</title></head><body><main>
<h1>A bad page</h1><img src="/pixel.png"><p id="done">done</p>
<script>document.getElementById('done').textContent = 'inline ran';</script>
</main></body></html>`))
	}))
	defer ts.Close()
	p := startBrowser(t, ts.URL).newPage("checker")
	if status := p.open("/"); status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	p.waitText("#done", "done")

	v, err := p.waitFor(`window.__cspViolations.length > 0 && window.__cspViolations.join('\n')`, pageWait)
	if err != nil || !strings.Contains(v, "script-src") {
		t.Errorf("the page's listener saw %q (%v); want the inline script's violation of script-src", v, err)
	}
	got := strings.Join(p.takeViolations(), "\n")
	if strings.Count(got, "script-src") < 2 {
		t.Errorf("violations collected:\n%s\nwant the inline script's, from the browser's log and from the page", got)
	}
	if rest := p.takeViolations(); len(rest) != 0 {
		t.Errorf("violations after they were taken: %q", rest)
	}

	found := false
	for _, a := range p.axeRun() {
		t.Logf("axe-core: %s", a)
		found = found || a.ID == "image-alt" && strings.Contains(strings.Join(a.Nodes, " "), "img")
	}
	if !found {
		t.Error("axe-core did not report the image without alt as serious or critical")
	}
	// axe itself ran without breaking the page's CSP: DevTools is exempt.
	if rest := p.takeViolations(); len(rest) != 0 {
		t.Errorf("running axe-core violated the CSP: %q", rest)
	}

	if err := strictCSP("default-src 'self'; script-src 'self' 'unsafe-inline'"); err == nil {
		t.Error("strictCSP accepted 'unsafe-inline'")
	}
	if err := strictCSP(""); err == nil {
		t.Error("strictCSP accepted no policy")
	}
	if err := strictCSP("default-src 'self'; frame-ancestors 'none'"); err != nil {
		t.Errorf("strictCSP refused a strict policy: %v", err)
	}
}
