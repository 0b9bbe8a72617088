package portal_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/auth"
)

const (
	operatorPassword = "the-operators-new-password"
	alicePassword    = "alice-password-123"
	bobPassword      = "bob-password-123"
	sshKey           = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHcAaqV7mN9lq0a3uV4YwO2b6S1yQ3kQzH3n8pV0cB9d alice@laptop"
)

// TestPortalWalkthrough is the README's "Serve a tenant" done in a
// browser against a control plane converging on this host: the operator
// signs in (with the keyboard only) with the printed password, changes
// it, makes tenant acme and its admin alice; alice signs in, enrols TOTP,
// registers a passkey with Chromium's virtual authenticator and signs in
// with it alone; makes a network and two instances and sees them run
// without reloading; runs hostname in web's console; stops, starts and
// deletes db, another tab following each change live; and finds each
// action in her tenant's audit trail. Every page passes axe-core, and
// none violates the CSP (checked when the test ends).
func TestPortalWalkthrough(t *testing.T) {
	c := startCloud(t, true)
	b := startBrowser(t, c.URL)

	// The operator, with the printed one-time password, then a new one.
	op := b.newPage("operator")
	signInByKeyboard(op, c.Operator, c.Password)
	op.must(`location.pathname === '/operator/tenants'`, pageWait)
	op.axe()
	mustOpen(op, "/account")
	op.axe()
	op.fill("#password [name=current]", c.Password)
	op.fill("#password [name=new]", operatorPassword)
	op.submit("password", "")
	// A new password ends the sessions of the old one, this one too: the
	// next page sends her to sign in, and back.
	op.open("/operator/tenants")
	op.must(`location.pathname === '/login'`, pageWait)
	if msg := refusedSignIn(op, c.Operator, c.Password); msg == "" {
		t.Error("the login form refused the replaced password without a message")
	}
	signIn(op, c.Operator, operatorPassword, "")
	op.must(`location.pathname === '/operator/tenants'`, pageWait)

	createTenant(op, "acme")
	op.axe()
	op.shot("operator-tenants")
	createUser(op, "alice", alicePassword, "acme", api.RoleTenantAdmin)
	op.axe()
	op.shot("operator-users")
	for _, path := range []string{"/operator/catalogue", "/operator/status", "/operator/audit"} {
		mustOpen(op, path)
		op.axe()
		op.shot(strings.ReplaceAll(strings.TrimPrefix(path, "/"), "/", "-"))
	}

	// Alice: sent to sign in, and back to where she was going.
	al := b.newPage("alice")
	al.open("/t/acme/instances")
	al.must(`location.pathname === '/login'`, pageWait)
	al.axe()
	al.shot("login")
	signIn(al, "alice", alicePassword, "")
	al.must(`location.pathname === '/t/acme/instances'`, pageWait)

	// TOTP, with codes computed as her authenticator app would.
	mustOpen(al, "/account")
	al.submit("totp-enroll", `(document.querySelector('#totp-secret')?.textContent ?? '').trim()`)
	al.must(`(document.querySelector('#totp-secret')?.textContent ?? '').trim()`, pageWait)
	if uri := al.text("#totp-uri"); !strings.HasPrefix(uri, "otpauth://totp/") {
		t.Errorf("#totp-uri holds %q, not an otpauth://totp/ URI", uri)
	}
	secret, err := auth.DecodeTOTPSecret(al.text("#totp-secret"))
	if err != nil {
		t.Fatalf("#totp-secret: %v", err)
	}
	al.axe()
	al.fill("#totp-confirm [name=code]", auth.TOTPCode(secret, time.Now()))
	al.submit("totp-confirm", "")

	// A passkey, made by the browser's (virtual) platform authenticator.
	authenticator := al.authenticator()
	mustOpen(al, "/account")
	al.fill("#passkey-register [name=name]", "laptop")
	al.submit("passkey-register", "")
	mustOpen(al, "/account")
	al.waitVisible(row("laptop"))
	creds := al.credentials(authenticator)
	if len(creds) != 1 || !creds[0].IsResidentCredential {
		t.Fatalf("the authenticator holds %d credentials (%+v); want one discoverable", len(creds), creds)
	}
	al.axe()
	al.shot("account")

	// Signed out, she signs in with the passkey alone.
	signOut(al)
	al.must(`!!document.querySelector('button#passkey-login')`, pageWait)
	al.act("button#passkey-login", "login", "")
	al.must(`location.pathname === '/t/acme/instances'`, pageWait)
	if after := al.credentials(authenticator); len(after) != 1 || after[0].SignCount <= creds[0].SignCount {
		t.Errorf("signing in did not use the passkey: sign count %v before, %+v after", creds[0].SignCount, after)
	}

	// Elsewhere, her password alone is no longer enough; with a code it is.
	elsewhere := b.newPage("alice, elsewhere")
	elsewhere.authenticator() // which holds no passkey of hers
	if msg := refusedSignIn(elsewhere, "alice", alicePassword); msg == "" {
		t.Error("a password-only sign-in of a user with TOTP was refused without a message")
	}
	// The code confirming TOTP is spent; the next step's is good.
	signIn(elsewhere, "alice", alicePassword, auth.TOTPCode(secret, time.Now().Add(30*time.Second)))
	elsewhere.must(`location.pathname === '/t/acme/instances'`, pageWait)

	// A network, a key and two instances.
	createNetwork(al, "acme", "net")
	al.axe()
	al.shot("networks")
	addSSHKey(al, "acme", "laptop", sshKey)
	al.axe()
	mustOpen(al, "/t/acme/instances/new")
	al.axe()
	al.shot("instance-new")
	createInstance(al, "acme", "web", "standard", "debian-12", "net", "laptop")
	createInstance(al, "acme", "db", "burstable", "debian-12", "net")

	// Another tab on the list sees them run, and every change after,
	// from the event stream: it never reloads.
	list := al.newTab("alice's instances list")
	mustOpen(list, "/t/acme/instances")
	list.mark()
	for _, name := range []string{"web", "db"} {
		waitStatus(list, "acme", name, api.StatusRunning)
	}
	if ip := list.text(instanceCell("web", "ip")); ip == "" {
		t.Error("web's row shows no IP address")
	}
	list.axe()
	list.shot("instances")

	// web's console: a shell in the instance, whose host name is the
	// instance's name in the cloud.
	mustOpen(al, "/t/acme/instances/web")
	al.waitTextFor("[data-field=status]", api.StatusRunning, pageWait)
	al.axe()
	al.shot("instance")
	mustOpen(al, "/t/acme/instances/web/console")
	al.must(`document.querySelector('#terminal')?.dataset.state === 'open'`, pageWait)
	al.must(terminalRows+`.some((r) => r.trim())`, pageWait) // the shell's prompt
	al.click("#terminal")
	al.insertText("hostname")
	al.pressEnter()
	if _, err := al.waitFor(terminalLine("acme--web"), pageWait); err != nil {
		t.Errorf("the console did not answer hostname with acme--web: %v; the terminal shows:\n%s", err, al.eval(terminalRows+`.join('\n')`))
	}
	al.axe()
	al.shot("console")

	// db stopped, started and deleted from its page, the list following.
	mustOpen(al, "/t/acme/instances/db")
	for _, step := range []struct{ action, status string }{{"stop", api.StatusStopped}, {"start", api.StatusRunning}} {
		al.click(fmt.Sprintf(`button[data-action=%s]`, step.action))
		al.waitTextFor("[data-field=status]", step.status, converges)
		waitStatus(list, "acme", "db", step.status)
	}
	al.click(`button[data-action=delete]`)
	al.waitVisible("dialog#confirm")
	al.axe()
	al.fill("dialog#confirm input[name=confirm]", "db")
	al.click("dialog#confirm button[type=submit]")
	// Gone, or shown as deleted until the list is next loaded.
	list.must(`((r) => !r || r.querySelector('[data-field=status]').textContent.trim() === 'deleted')(document.querySelector('tr[data-instance="db"]'))`, converges)
	if !list.marked() {
		t.Error("the instances list reloaded instead of following the event stream")
	}

	// Her tenant's audit trail has each action, by her.
	for _, path := range []string{"/t/acme/sshkeys", "/t/acme/members", "/t/acme/usage", "/t/acme/audit"} {
		mustOpen(al, path)
		al.axe()
		al.shot(strings.ReplaceAll(strings.TrimPrefix(path, "/t/acme/"), "/", "-"))
	}
	for _, want := range []struct {
		action, object string
		n              int
	}{
		{"createNetwork", "/v1/tenants/acme/networks", 1},
		{"createInstance", "/v1/tenants/acme/instances", 2},
		{"stopInstance", "/v1/tenants/acme/instances/db/stop", 1},
		{"startInstance", "/v1/tenants/acme/instances/db/start", 1},
		{"deleteInstance", "/v1/tenants/acme/instances/db", 1},
		{"console.open", "/instances/web", 1},
	} {
		cond := fmt.Sprintf(`[...document.querySelectorAll('tr')].filter((r) => r.textContent.includes(%s) && r.textContent.includes(%s) && r.textContent.includes('alice')).length >= %d`,
			js(want.action), js(want.object), want.n)
		if _, err := al.waitFor(cond, pageWait); err != nil {
			t.Errorf("the audit page has no %d row(s) of alice's %s of %s", want.n, want.action, want.object)
		}
	}
}

// TestPortalIsolation: bob, admin of another tenant, signed in, cannot see
// or reach acme's objects; acme's URLs give him the not-found page. His
// pages are used on a phone, 360 px wide, and need no sideways scrolling.
func TestPortalIsolation(t *testing.T) {
	c := startCloud(t, false) // what is recorded is enough: nothing needs to run
	b := startBrowser(t, c.URL)
	op := b.newPage("operator")
	signIn(op, c.Operator, c.Password, "")
	createTenant(op, "acme")
	createTenant(op, "other")
	createUser(op, "alice", alicePassword, "acme", api.RoleTenantAdmin)
	createUser(op, "bob", bobPassword, "other", api.RoleTenantAdmin)

	al := b.newPage("alice")
	signIn(al, "alice", alicePassword, "")
	createNetwork(al, "acme", "net")
	addSSHKey(al, "acme", "laptop", sshKey)
	createInstance(al, "acme", "web", "standard", "debian-12", "net", "laptop")
	mustOpen(al, "/t/acme/instances/web") // it is there, for acme
	if status := al.open("/t/acme/instances/nosuch"); status != http.StatusNotFound {
		t.Errorf("an instance that does not exist answered %d, not 404", status)
	}

	bob := b.newPage("bob")
	bob.viewport(360, 740)
	signIn(bob, "bob", bobPassword, "")
	bob.must(`location.pathname === '/t/other/instances'`, pageWait)
	for _, path := range []string{"/t/other/instances", "/t/other/instances/new", "/t/other/networks", "/t/other/sshkeys",
		"/t/other/members", "/t/other/usage", "/t/other/audit", "/account"} {
		mustOpen(bob, path)
		bob.noOverflow(360)
		bob.axe()
		if strings.Contains(bob.eval(`document.body.textContent`), "acme") {
			t.Errorf("bob's %s mentions acme", path)
		}
	}
	mustOpen(bob, "/t/other/instances")
	bob.shot("phone-instances")

	for _, path := range []string{"/t/acme/instances", "/t/acme/instances/web", "/t/acme/instances/web/console", "/t/acme/instances/new",
		"/t/acme/networks", "/t/acme/sshkeys", "/t/acme/members", "/t/acme/usage", "/t/acme/audit"} {
		if status := bob.open(path); status != http.StatusNotFound {
			t.Errorf("bob's %s answered %d, not 404", path, status)
		}
		if h1 := bob.text("h1"); h1 != "Not found" {
			t.Errorf("bob's %s shows h1 %q, not the not-found page", path, h1)
		}
		bob.noOverflow(360)
		bob.axe()
	}
	// The not-found page of acme's instance is that of one that does not
	// exist: it tells bob nothing.
	bob.open("/t/acme/instances/web")
	exists := bob.eval(`document.querySelector('main').textContent.replaceAll('web', 'NAME')`)
	bob.open("/t/acme/instances/nosuch")
	if missing := bob.eval(`document.querySelector('main').textContent.replaceAll('nosuch', 'NAME')`); exists != missing {
		t.Errorf("bob's not-found page of acme's web differs from that of an instance that does not exist:\n%s\n---\n%s", exists, missing)
	}
	// Nor through the API the pages use.
	for _, path := range []string{"/v1/tenants/acme/instances", "/v1/tenants/acme/instances/web", "/v1/tenants/acme/networks"} {
		if status := bob.eval(fmt.Sprintf(`fetch(%s, {credentials: 'same-origin'}).then((r) => r.status)`, js(path))); status != "404" {
			t.Errorf("bob's GET %s answered %s, not 404", path, status)
		}
	}
}

// TestPortalCSRFAndCSP: every page answers with a strict
// Content-Security-Policy (no 'unsafe-inline', no 'unsafe-eval') and
// the CSRF token in a meta tag, and passes axe-core; the session's
// cookies are HttpOnly, Secure and SameSite=Strict; a change sent with
// the cookies but without the token, or with a wrong one, is refused with
// 403. Bad input is answered beside its field, keeping what was typed. (That no page violates its CSP is checked on every page of every
// test, the walkthrough's too, when the test ends.)
func TestPortalCSRFAndCSP(t *testing.T) {
	c := startCloud(t, false)
	b := startBrowser(t, c.URL)
	op := b.newPage("operator")
	mustOpen(op, "/login")
	op.axe()
	signIn(op, c.Operator, c.Password, "")
	createTenant(op, "acme")
	createUser(op, "alice", alicePassword, "acme", api.RoleTenantAdmin)
	operatorPages := []string{"/operator/tenants", "/operator/users", "/operator/catalogue", "/operator/status", "/operator/audit", "/account"}
	visitAll(op, operatorPages)

	// A new API key's secret is shown once, in #secret.
	mustOpen(op, "/account")
	op.fill("#apikey-create [name=name]", "ci")
	op.submit("apikey-create", "")
	if secret, err := op.waitFor(`((e) => e && e.checkVisibility() && e.querySelector('[data-field=secret]').textContent.trim())(document.querySelector('#secret'))`, pageWait); err != nil || len(secret) < 16 {
		t.Errorf("#secret does not show the new key's secret (%q, %v)", secret, err)
	}
	op.axe()

	for _, k := range []string{api.CookieAccess, api.CookieRefresh, api.CookieCSRF} {
		ck := cookie(op, k)
		switch {
		case ck == nil:
			t.Errorf("no cookie %s after signing in", k)
		case !ck.HTTPOnly || !ck.Secure || ck.SameSite != network.CookieSameSiteStrict:
			t.Errorf("cookie %s: HttpOnly %v, Secure %v, SameSite %q; want HttpOnly, Secure, Strict", k, ck.HTTPOnly, ck.Secure, ck.SameSite)
		}
	}

	// A change from the page's own script: refused without the token or
	// with a wrong one, made with the page's.
	create := func(name, headers string) string {
		return op.eval(fmt.Sprintf(`fetch('/v1/tenants', {method: 'POST', credentials: 'same-origin',
			headers: Object.assign({'Content-Type': 'application/json'}, %s), body: JSON.stringify({name: %s})}).then((r) => r.status)`, headers, js(name)))
	}
	if status := create("forged", `{}`); status != "403" {
		t.Errorf("POST /v1/tenants without %s answered %s, not 403", api.HeaderCSRF, status)
	}
	if status := create("forged2", fmt.Sprintf(`{%s: 'not-the-token'}`, js(api.HeaderCSRF))); status != "403" {
		t.Errorf("POST /v1/tenants with a wrong %s answered %s, not 403", api.HeaderCSRF, status)
	}
	if status := create("made", fmt.Sprintf(`{%s: document.querySelector('meta[name=csrf-token]').content}`, js(api.HeaderCSRF))); status != "201" {
		t.Errorf("POST /v1/tenants with the page's CSRF token answered %s, not 201", status)
	}
	names := op.eval(`fetch('/v1/tenants', {credentials: 'same-origin'}).then((r) => r.json()).then((p) => p.items.map((t) => t.name).sort().join(','))`)
	if names != "acme,made" {
		t.Errorf("tenants after the forged requests: %s; want acme,made", names)
	}

	al := b.newPage("alice")
	signIn(al, "alice", alicePassword, "")
	// Bad input: the API's problem beside the field it names, and what
	// was typed kept.
	mustOpen(al, "/t/acme/networks")
	al.fill("#network-create [name=name]", "a--b")
	al.formError("network-create")
	if msg := al.text("#network-create-name-error"); !strings.Contains(msg, "--") {
		t.Errorf("the name's error says %q; want the API's reason (it must not hold --)", msg)
	}
	if v := al.eval(`document.querySelector('#network-create [name=name]').value`); v != "a--b" {
		t.Errorf("after the refusal the name field holds %q, not what was typed", v)
	}
	al.axe() // with the error shown
	createNetwork(al, "acme", "net")
	createInstance(al, "acme", "web", "standard", "debian-12", "net")
	tenantPages := []string{"/t/acme/instances", "/t/acme/instances/new", "/t/acme/instances/web", "/t/acme/instances/web/console",
		"/t/acme/networks", "/t/acme/sshkeys", "/t/acme/members", "/t/acme/usage", "/t/acme/audit", "/account"}
	visitAll(al, tenantPages)
	if status := al.open("/t/acme/instances/nosuch"); status != http.StatusNotFound {
		t.Errorf("a missing instance answered %d, not 404", status)
	}

	// Each page answered came with a strict policy, the not-found page too.
	for _, p := range []*page{op, al} {
		p.mu.Lock()
		docs := p.docs
		p.mu.Unlock()
		seen := map[string]bool{}
		for _, d := range docs {
			seen[strings.TrimPrefix(d.url, c.URL)] = true
			if err := strictCSP(d.csp); err != nil {
				t.Errorf("%s: %s (%d): %v", p.who, d.url, d.status, err)
			}
		}
		for _, path := range append(operatorPages, tenantPages...) {
			if strings.HasPrefix(path, "/t/") == (p == al) && !seen[path] {
				t.Errorf("%s: no document of %s was seen loading", p.who, path)
			}
		}
	}
}

// visitAll opens each page, which must answer 200 with the CSRF token in
// its meta tag and pass axe-core.
func visitAll(p *page, paths []string) {
	p.t.Helper()
	for _, path := range paths {
		mustOpen(p, path)
		if tok := p.eval(`document.querySelector('meta[name=csrf-token]')?.content ?? ''`); tok == "" {
			p.t.Errorf("%s: %s has no CSRF token in <meta name=csrf-token>", p.who, path)
		}
		p.axe()
	}
}

// refusedSignIn signs in with the login form expecting a refusal, and
// answers its message.
func refusedSignIn(p *page, user, password string) string {
	p.t.Helper()
	if p.eval(`!!document.querySelector('#login')`) != "true" {
		mustOpen(p, "/login")
	}
	p.fill("#login [name=user]", user)
	p.fill("#login [name=password]", password)
	return p.formError("login")
}

// cookie is the browser's cookie of the page's origin with that name.
func cookie(p *page, name string) *network.Cookie {
	p.t.Helper()
	ctx, cancel := p.within(pageWait)
	defer cancel()
	r, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{p.b.base + "/"}})
	if err != nil {
		p.fatal("cookies: %v", err)
	}
	for _, c := range r.Cookies {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// terminalRows is the text of the console's rows, as xterm.js lays them
// out in the DOM.
const terminalRows = `[...document.querySelectorAll('#terminal .xterm-rows > div')].map((d) => d.textContent)`

// terminalLine is a condition: a row after the one where hostname was
// typed reads exactly want.
func terminalLine(want string) string {
	return fmt.Sprintf(`((rows) => { const i = rows.findIndex((r) => r.includes('hostname')); return i >= 0 && rows.slice(i + 1).some((r) => r.trim() === %s); })(%s)`, js(want), terminalRows)
}

// waitStatus waits for the instances list to show an instance's status;
// when it does not, the failure says what the API says, which tells a
// stream the page missed from an instance that never got there.
func waitStatus(list *page, tenant, name, status string) {
	list.t.Helper()
	if _, err := list.waitFor(fmt.Sprintf(`(document.querySelector(%s)?.textContent ?? '').trim() === %s`, js(instanceCell(name, "status")), js(status)), converges); err != nil {
		list.fatal("%s's row does not show %s within %v: it shows %q, and GET %s answers %s", name, status, converges,
			list.textOr(instanceCell(name, "status")), "/v1/tenants/"+tenant+"/instances/"+name,
			list.eval(fmt.Sprintf(`fetch(%s, {credentials: 'same-origin'}).then((r) => r.json()).then((i) => 'status ' + i.status + (i.error ? ' (' + i.error + ')' : ''))`, js("/v1/tenants/"+tenant+"/instances/"+name))))
	}
}
