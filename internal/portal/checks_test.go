package portal_test

import (
	_ "embed"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/chromedp/chromedp"
)

// What every page the tests open must be: served with a strict
// Content-Security-Policy that it never violates, free of uncaught
// exceptions, and — where a test runs axe — free of serious or critical
// accessibility violations.

// screenshots makes the tests write PNGs of the main pages for
// docs/portal.md:
//
//	go test ./internal/portal -run TestPortalWalkthrough -args -screenshots
var screenshots = flag.Bool("screenshots", false, "write PNGs of the portal's main pages to docs/portal/")

// cspListener is put into every document before its own scripts run. It
// keeps the violations the page's code would see, with what was blocked
// (the browser's log, which checkEnd also reads, may phrase them
// differently across versions).
const cspListener = `window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
	window.__cspViolations.push(e.effectiveDirective + ' blocked ' + (e.blockedURI || 'inline') +
		' at ' + e.sourceFile + ':' + e.lineNumber + (e.sample ? ' (' + e.sample + ')' : ''));
});`

// takeViolations answers the CSP violations seen since the last call:
// the browser's log for every document, the listener's for the current.
func (p *page) takeViolations() []string {
	p.t.Helper()
	var inPage []string
	if raw := p.eval(`JSON.stringify(window.__cspViolations || [])`); raw != "" {
		if err := json.Unmarshal([]byte(raw), &inPage); err != nil {
			p.t.Errorf("%s: window.__cspViolations: %v", p.who, err)
		}
	}
	p.eval(`window.__cspViolations = []`)
	p.mu.Lock()
	defer p.mu.Unlock()
	seen := p.violations
	p.violations = nil
	return append(seen, inPage...)
}

// checkEnd holds the page, at the end of its test, to what every page
// must be.
func (p *page) checkEnd() {
	p.t.Helper()
	for _, v := range p.takeViolations() {
		p.t.Errorf("%s: Content-Security-Policy violation: %s", p.who, v)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.exceptions {
		p.t.Errorf("%s: uncaught exception: %s", p.who, e)
	}
	for _, d := range p.docs {
		if err := strictCSP(d.csp); err != nil {
			p.t.Errorf("%s: %s (%d): %v", p.who, d.url, d.status, err)
		}
	}
}

// strictCSP refuses a policy that is missing or lets inline code or eval
// run.
func strictCSP(csp string) error {
	switch {
	case csp == "":
		return fmt.Errorf("no Content-Security-Policy header")
	case strings.Contains(csp, "'unsafe-inline'"), strings.Contains(csp, "'unsafe-eval'"):
		return fmt.Errorf("Content-Security-Policy %q allows inline code or eval", csp)
	}
	directives := map[string]bool{}
	for _, d := range strings.Split(csp, ";") {
		if f := strings.Fields(d); len(f) > 0 {
			directives[f[0]] = true
		}
	}
	if !directives["default-src"] && !directives["script-src"] {
		return fmt.Errorf("Content-Security-Policy %q restricts no script (no default-src or script-src)", csp)
	}
	return nil
}

//go:embed testdata/axe/axe.min.js
var axeSource string

// axeViolation is one rule axe-core found broken, and where.
type axeViolation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

func (v axeViolation) String() string {
	return fmt.Sprintf("%s (%s): %s: %s", v.ID, v.Impact, v.Help, strings.Join(v.Nodes, ", "))
}

// axeRun runs axe-core on the current document and answers its serious
// and critical violations. axe is put in through DevTools: the portal
// does not serve it, and its CSP does not apply to DevTools.
func (p *page) axeRun() []axeViolation {
	p.t.Helper()
	if p.eval(`typeof axe`) != "object" {
		p.inject(axeSource)
	}
	raw := p.eval(`axe.run(document, {resultTypes: ['violations']}).then((r) => JSON.stringify(r.violations
		.filter((v) => v.impact === 'serious' || v.impact === 'critical')
		.map((v) => ({id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' '))}))))`)
	var vs []axeViolation
	if err := json.Unmarshal([]byte(raw), &vs); err != nil {
		p.fatal("axe: %v", err)
	}
	return vs
}

// axe fails the test on every serious or critical violation axe-core
// finds on the current page.
func (p *page) axe() {
	p.t.Helper()
	path := p.path()
	for _, v := range p.axeRun() {
		p.t.Errorf("%s: axe-core on %s: %s", p.who, path, v)
	}
}

// noOverflow fails the test if the page is wider than the viewport: at a
// phone's width nothing may need scrolling sideways.
func (p *page) noOverflow(width int) {
	p.t.Helper()
	got, err := strconv.Atoi(p.eval(`document.documentElement.scrollWidth`))
	if err != nil {
		p.fatal("scrollWidth: %v", err)
	}
	if got > width {
		wide := p.eval(fmt.Sprintf(`[...document.querySelectorAll('body *')].filter((e) => e.getBoundingClientRect().right > %d)
			.slice(0, 5).map((e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className ? '.' + String(e.className).split(' ').join('.') : '')).join(', ')`, width))
		p.t.Errorf("%s: %s is %d px wide at a %d px viewport (wider: %s)", p.who, p.path(), got, width, wide)
	}
}

// shot writes a screenshot of the current page to docs/portal/<name>.png
// when the test runs with -screenshots.
func (p *page) shot(name string) {
	p.t.Helper()
	if !*screenshots {
		return
	}
	ctx, cancel := p.within(pageWait)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		p.fatal("screenshot: %v", err)
	}
	dir := filepath.Join("..", "..", "docs", "portal")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}
