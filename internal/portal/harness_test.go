package portal_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	cdpage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/server"
	"github.com/holdfast/holdfast/internal/testenv"
)

// The harness drives the portal as a user would: a real control plane
// (converging on the local engine when a test needs instances), served
// over TLS, and Debian's Chromium driven through the DevTools protocol.
// Every page it opens is held to what every page must be (checks_test.go):
// a strict CSP and no violation of it, no uncaught exception, and axe-core
// finding nothing serious when a test asks.

const (
	chromium  = "/usr/bin/chromium"
	specPath  = "../../examples/tasmanian"
	pageWait  = 30 * time.Second // a page, a form's answer, an element
	converges = 3 * time.Minute  // the local engine makes or changes an instance
)

// cloud is a control plane the browser talks to.
type cloud struct {
	URL      string // https://localhost:<port>
	Name     string
	Operator string // the first operator, and its one-time password
	Password string
}

var clouds atomic.Int64

// startCloud serves a new control plane for examples/tasmanian from a
// fresh state directory. With realize it converges tenants' changes on
// this host (the local engine), and destroys what it made at the end.
//
// It listens on 127.0.0.1 and is browsed as localhost: a passkey's
// relying party is a domain name, never an IP address.
func startCloud(t *testing.T, realize bool) *cloud {
	t.Helper()
	testenv.NeedRoot(t, "the browser tests run Chromium as CI does, as root without its sandbox, and the local engine makes namespaces and containers")
	ts := httptest.NewUnstartedServer(nil)
	url := fmt.Sprintf("https://localhost:%d", ts.Listener.Addr().(*net.TCPAddr).Port)
	state := t.TempDir()
	// Named for this process: the local engine's namespaces carry the
	// cloud's name, and another run of the suite must not meet them.
	name := fmt.Sprintf("pt%05d%d", os.Getpid()%100000, clouds.Add(1))
	s, err := server.New(server.Config{SpecPath: specPath, StateDir: state, Rename: name, Realize: realize, Resync: -1,
		PublicURL: url}) // the origin passkeys are bound to
	if err != nil {
		ts.Close()
		t.Fatal(err)
	}
	ts.Config.Handler = s.Handler()
	ts.StartTLS()
	s.Start()
	t.Cleanup(func() {
		ts.Close()
		if err := s.Shutdown(context.Background()); err != nil { // t.Context is done by now
			t.Errorf("shutdown: %v", err)
		}
		if realize {
			destroy(t, state, name)
		}
	})
	return &cloud{URL: url, Name: name, Operator: s.Bootstrap.User, Password: string(s.Bootstrap.Password.Expose())}
}

// destroy removes what the local engine made for the cloud.
func destroy(t *testing.T, state, name string) {
	c, _, err := deploy.Open(specPath, deploy.Options{StateDir: state, Rename: name})
	if err != nil {
		t.Errorf("destroy: %v", err)
		return
	}
	defer c.Close()
	p, err := c.DestroyPlan(context.Background())
	if err == nil {
		_, err = c.Apply(context.Background(), p)
	}
	if err != nil {
		t.Errorf("destroy: %v", err)
	}
}

// browser is one Chromium; each user gets a page of their own in it.
type browser struct {
	t    *testing.T
	base string // the origin pages are opened at
	ctx  context.Context
}

// startBrowser starts Chromium headless for pages of the given origin.
func startBrowser(t *testing.T, base string) *browser {
	t.Helper()
	testenv.NeedRoot(t, "Chromium runs as root, without its sandbox, as in CI")
	if _, err := os.Stat(chromium); err != nil {
		testenv.Unavailable(t, "no "+chromium+": apt-get install chromium")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", "new"),
		chromedp.IgnoreCertErrors, // the control plane's certificate is made for the test
		chromedp.NoSandbox,        // Chromium's sandbox refuses to run as root
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first action starts the browser, whose life is ctx's: not a
	// context with a deadline.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", chromium, err)
	}
	return &browser{t: t, base: base, ctx: ctx}
}

// page is one user's tab, in a browser context of its own (cookies are
// not shared between pages).
type page struct {
	t   *testing.T
	who string
	b   *browser
	ctx context.Context

	mu         sync.Mutex
	docs       []document // every document of base's origin loaded
	violations []string   // CSP violations the browser reported
	exceptions []string   // uncaught exceptions
}

// document is what the checks need of a loaded page.
type document struct {
	url    string
	status int64
	csp    string
}

// newPage opens a tab for a user. When the test ends, the page is held to
// the checks every page must pass (see checkEnd).
func (b *browser) newPage(who string) *page {
	b.t.Helper()
	return b.open(who, b.ctx, chromedp.WithNewBrowserContext())
}

// newTab opens another tab for the page's user, sharing its cookies: a
// second window on the same session.
func (p *page) newTab(who string) *page {
	p.t.Helper()
	return p.b.open(who, p.ctx)
}

func (b *browser) open(who string, parent context.Context, opts ...chromedp.ContextOption) *page {
	t := b.t
	t.Helper()
	ctx, cancel := chromedp.NewContext(parent, opts...)
	p := &page{t: t, who: who, b: b, ctx: ctx}
	if err := chromedp.Do(ctx); err != nil { // opens the tab
		t.Fatalf("%s: new tab: %v", who, err)
	}
	if err := chromedp.Listen(ctx, p.record); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, cdpage.AddScriptToEvaluateOnNewDocument,
		cdpage.AddScriptToEvaluateOnNewDocumentParams{Source: cspListener}); err != nil {
		t.Fatalf("%s: %v", who, err)
	}
	t.Cleanup(func() {
		p.checkEnd()
		cancel()
	})
	return p
}

// record runs in the tab's event loop: it only takes notes.
func (p *page) record(ev any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventResponseReceived:
		if ev.Type == network.ResourceTypeDocument && strings.HasPrefix(ev.Response.URL, p.b.base+"/") {
			p.docs = append(p.docs, document{url: ev.Response.URL, status: ev.Response.Status, csp: header(ev.Response.Headers, "Content-Security-Policy")})
		}
	case *log.EventEntryAdded:
		if strings.Contains(ev.Entry.Text, "Content Security Policy") {
			p.violations = append(p.violations, fmt.Sprintf("%s (%s:%d)", ev.Entry.Text, ev.Entry.URL, ev.Entry.LineNumber))
		}
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		text := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			text += " " + d.Exception.Description
		}
		p.exceptions = append(p.exceptions, fmt.Sprintf("%s (%s:%d)", text, d.URL, d.LineNumber+1))
	}
}

func header(h network.Headers, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			s, _ := v.(string)
			return s
		}
	}
	return ""
}

// within is a context for one step, bounded so that a page that never
// answers fails the test instead of hanging it.
func (p *page) within(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(p.ctx, d)
}

// fatal fails the test, saying where the page was.
func (p *page) fatal(format string, args ...any) {
	p.t.Helper()
	loc, _ := chromedp.Run(p.ctx, chromedp.Location())
	p.t.Fatalf("%s at %s: %s", p.who, loc, fmt.Sprintf(format, args...))
}

// open navigates to a path of the portal and answers the HTTP status.
func (p *page) open(path string) int64 {
	p.t.Helper()
	ctx, cancel := p.within(pageWait)
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(p.b.base+path))
	if err != nil {
		p.fatal("open %s: %v", path, err)
	}
	return resp.Status
}

// path is the page's current path and query.
func (p *page) path() string {
	p.t.Helper()
	return p.eval(`location.pathname + location.search`)
}

// eval evaluates a JavaScript expression (in DevTools, to which the
// page's CSP does not apply) and answers its value, awaited if a
// promise, as text.
func (p *page) eval(expr string) string {
	p.t.Helper()
	ctx, cancel := p.within(pageWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`Promise.resolve((`+expr+`)).then(String)`, chromedp.EvalAwaitPromise))
	if err != nil {
		p.fatal("evaluating %s: %v", expr, err)
	}
	return v
}

// inject runs a script in the page through DevTools.
func (p *page) inject(script string) {
	p.t.Helper()
	ctx, cancel := p.within(pageWait)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](script)); err != nil {
		p.fatal("injecting a script: %v", err)
	}
}

// waitFor waits until the JavaScript expression cond is truthy in the
// page, and answers its value as text. It is woken by the page's DOM
// changing and its documents loading, never by a timer; a navigation
// while it waits moves it to the new document.
func (p *page) waitFor(cond string, d time.Duration) (string, error) {
	ctx, cancel := p.within(d)
	defer cancel()
	expr := fmt.Sprintf(waitScript, cond)
	for {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
		var exc *chromedp.ExceptionError
		switch {
		case err == nil:
			return v, nil
		case ctx.Err() != nil:
			return "", fmt.Errorf("waited %v for %s", d, cond)
		case errors.As(err, &exc):
			return "", err // the condition is wrong, not the page
		}
		// The document went away while the condition was being
		// watched: watch in the next one.
	}
}

// waitScript watches a condition; its value, as text, once truthy.
// Errors while the page is being built count as false.
const waitScript = `new Promise((resolve) => {
	const test = () => { try { return (%s); } catch (e) { return false; } };
	const observer = new MutationObserver(() => check());
	const check = () => {
		const v = test();
		if (!v) return;
		observer.disconnect();
		document.removeEventListener('readystatechange', check);
		resolve(String(v));
	};
	observer.observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
	document.addEventListener('readystatechange', check);
	check();
})`

// must is waitFor that fails the test.
func (p *page) must(cond string, d time.Duration) string {
	p.t.Helper()
	v, err := p.waitFor(cond, d)
	if err != nil {
		p.fatal("%v", err)
	}
	return v
}

// js quotes a Go string as a JavaScript string literal.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// waitVisible waits for an element to be shown.
func (p *page) waitVisible(sel string) {
	p.t.Helper()
	if _, err := p.waitFor(`(e => e && e.checkVisibility())(document.querySelector(`+js(sel)+`))`, pageWait); err != nil {
		p.fatal("no %s shown within %v", sel, pageWait)
	}
}

// waitText waits for an element whose text holds want.
func (p *page) waitText(sel, want string) {
	p.t.Helper()
	p.waitTextFor(sel, want, pageWait)
}

func (p *page) waitTextFor(sel, want string, d time.Duration) {
	p.t.Helper()
	cond := fmt.Sprintf(`[...document.querySelectorAll(%s)].some(e => e.textContent.includes(%s))`, js(sel), js(want))
	if _, err := p.waitFor(cond, d); err != nil {
		p.fatal("no %s holds %q within %v (it holds %q)", sel, want, d, p.textOr(sel))
	}
}

// text is the trimmed text of the first element matching sel, which
// must be there.
func (p *page) text(sel string) string {
	p.t.Helper()
	p.must(`document.querySelector(`+js(sel)+`)`, pageWait)
	return p.textOr(sel)
}

func (p *page) textOr(sel string) string {
	return p.eval(`(document.querySelector(` + js(sel) + `)?.textContent ?? '').trim()`)
}

// fill types a value into an input, as a user would, after clearing it.
func (p *page) fill(sel, value string) {
	p.t.Helper()
	ctx, cancel := p.within(pageWait)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sel))); err != nil {
		p.fatal("fill %s: %v", sel, err)
	}
	p.eval(`document.querySelector(` + js(sel) + `).value = ''`)
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS(sel), value)); err != nil {
		p.fatal("fill %s: %v", sel, err)
	}
}

// choose picks the option of a select by its value.
func (p *page) choose(sel, value string) {
	p.t.Helper()
	got := p.eval(fmt.Sprintf(`(s => {
		if (![...s.options].some(o => o.value === %[2]s)) return 'no option ' + %[2]s + ' in ' + [...s.options].map(o => o.value).join(',');
		s.value = %[2]s;
		s.dispatchEvent(new Event('input', {bubbles: true}));
		s.dispatchEvent(new Event('change', {bubbles: true}));
		return 'ok';
	})(document.querySelector(%[1]s))`, js(sel), js(value)))
	if got != "ok" {
		p.fatal("choose %s: %s", sel, got)
	}
}

// click clicks an element with the mouse.
func (p *page) click(sel string) {
	p.t.Helper()
	ctx, cancel := p.within(pageWait)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible)); err != nil {
		p.fatal("click %s: %v", sel, err)
	}
}

// keys presses keys on whatever has the focus (chromedp's kb names
// them: "\t" is Tab, "\r" is Enter).
func (p *page) keys(keys string) {
	p.t.Helper()
	ctx, cancel := p.within(pageWait)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.KeyEvent(keys)); err != nil {
		p.fatal("keys %q: %v", keys, err)
	}
}

// insertText puts text where the focus is as an input method would, in
// one input event: a terminal (xterm.js) takes it as typed once, where
// KeyEvent's separate key-down and char events would reach it twice.
func (p *page) insertText(text string) {
	p.t.Helper()
	ctx, cancel := p.within(pageWait)
	defer cancel()
	if _, err := chromedp.Call(ctx, input.InsertText, input.InsertTextParams{Text: text}); err != nil {
		p.fatal("insert %q: %v", text, err)
	}
}

// pressEnter presses Enter with no char event (see insertText).
func (p *page) pressEnter() {
	p.t.Helper()
	ctx, cancel := p.within(pageWait)
	defer cancel()
	for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeRawKeyDown, input.DispatchKeyEventTypeKeyUp} {
		if _, err := chromedp.Call(ctx, input.DispatchKeyEvent, input.DispatchKeyEventParams{
			Type: typ, Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13,
		}); err != nil {
			p.fatal("Enter: %v", err)
		}
	}
}

// submit submits a form with its submit button and waits for its answer:
// a new document (the page reloaded or went on), the form's own sign of
// success (data-then="done" appends a .form-done; "show" unhides the
// page's [data-show] box), or done (a JavaScript condition) when given.
// An error shown by the form fails the test with its text.
func (p *page) submit(form, done string) {
	p.t.Helper()
	p.act("#"+form+` button[type=submit]`, form, done)
}

// act clicks a control of a form (a button that is not its submit
// button) and waits for the form's answer, as submit does.
func (p *page) act(sel, form, done string) {
	p.t.Helper()
	p.eval(`window.__holdfastBefore = true`)
	p.click(sel)
	p.answered(form, done)
}

// answered waits for a form's answer; see submit.
func (p *page) answered(form, done string) {
	p.t.Helper()
	if done == "" {
		done = "false"
	}
	cond := fmt.Sprintf(`(!window.__holdfastBefore && document.readyState === 'complete') ? 'navigated' :
		(errs => errs ? 'error: ' + errs : false)([...document.querySelectorAll('[id^="%[1]s-"][id$="-error"], #%[1]s-error')].map(e => e.textContent.trim()).filter(Boolean).join('; ')) ||
		((f) => f.querySelector('.form-done') || (f.dataset.then === 'show' && !document.querySelector(f.dataset.showIn || '[data-show]').hidden))(document.getElementById(%[3]s)) && 'done' ||
		((%[2]s) ? 'done' : false)`, form, done, js(form))
	v := p.must(cond, pageWait)
	if strings.HasPrefix(v, "error: ") {
		p.fatal("form #%s answered %s", form, v)
	}
}

// formError submits a form expecting it to be refused, and answers the
// text of the refusal.
func (p *page) formError(form string) string {
	p.t.Helper()
	p.eval(`window.__holdfastBefore = true`)
	p.click("#" + form + ` button[type=submit]`)
	cond := fmt.Sprintf(`(!window.__holdfastBefore && document.readyState === 'complete') ? 'navigated' :
		[...document.querySelectorAll('[id^="%[1]s-"][id$="-error"], #%[1]s-error')].map(e => e.textContent.trim()).filter(Boolean).join('; ')`, form)
	v := p.must(cond, pageWait)
	if v == "navigated" {
		p.fatal("form #%s was accepted; it should have been refused", form)
	}
	return v
}

// mark marks the current document; marked says whether the page still
// shows it: a page that must not reload is marked, then checked.
func (p *page) mark() {
	p.t.Helper()
	p.eval(`window.__holdfastMark = true`)
}

func (p *page) marked() bool {
	p.t.Helper()
	return p.eval(`window.__holdfastMark === true`) == "true"
}

// authenticator gives the page a passkey authenticator: a platform one
// (internal transport, CTAP2) that holds discoverable credentials and
// verifies its user, as a phone or a laptop's would.
func (p *page) authenticator() webauthn.AuthenticatorID {
	p.t.Helper()
	ctx, cancel := p.within(pageWait)
	defer cancel()
	if _, err := chromedp.Call(ctx, webauthn.Enable, webauthn.EnableParams{}); err != nil {
		p.fatal("WebAuthn.enable: %v", err)
	}
	r, err := chromedp.Call(ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{Options: &webauthn.VirtualAuthenticatorOptions{
		Protocol:                    webauthn.AuthenticatorProtocolCtap2,
		Transport:                   webauthn.AuthenticatorTransportInternal,
		HasResidentKey:              true,
		HasUserVerification:         true,
		IsUserVerified:              true,
		AutomaticPresenceSimulation: true, // the user touches it whenever asked
	}})
	if err != nil {
		p.fatal("WebAuthn.addVirtualAuthenticator: %v", err)
	}
	return r.AuthenticatorID
}

// credentials are the passkeys an authenticator holds.
func (p *page) credentials(id webauthn.AuthenticatorID) []*webauthn.Credential {
	p.t.Helper()
	ctx, cancel := p.within(pageWait)
	defer cancel()
	r, err := chromedp.Call(ctx, webauthn.GetCredentials, webauthn.GetCredentialsParams{AuthenticatorID: id})
	if err != nil {
		p.fatal("WebAuthn.getCredentials: %v", err)
	}
	return r.Credentials
}

// viewport makes the page as wide and high as a small phone's screen
// (0, 0: back to the window's size).
func (p *page) viewport(width, height int64) {
	p.t.Helper()
	ctx, cancel := p.within(pageWait)
	defer cancel()
	act := chromedp.ResetViewport()
	if width > 0 {
		act = chromedp.EmulateViewport(width, height)
	}
	if err := chromedp.Do(ctx, act); err != nil {
		p.fatal("viewport: %v", err)
	}
}
