package portal_test

import (
	"fmt"
	"net/http"
)

// The steps users take in the portal, as the tests take them: through
// the pages' forms, by the DOM contract the portal keeps (forms by id,
// inputs named as the API's JSON fields, rows as tr[data-name]).

// signIn signs in with the login form and waits for the page the portal
// goes to next.
func signIn(p *page, user, password, totp string) {
	p.t.Helper()
	if p.eval(`!!document.querySelector('#login')`) != "true" {
		mustOpen(p, "/login")
	}
	p.fill("#login [name=user]", user)
	p.fill("#login [name=password]", password)
	if totp != "" {
		p.fill("#login [name=totp]", totp)
	}
	p.submit("login", "")
}

// signInByKeyboard signs in as signIn does with key presses only: Tab to
// the user field, type, Tab, type, Enter.
func signInByKeyboard(p *page, user, password string) {
	p.t.Helper()
	mustOpen(p, "/login")
	const focused = `(document.activeElement && document.activeElement.matches(%s))`
	for tabs := 0; p.eval(fmt.Sprintf(focused, js("#login [name=user]"))) != "true"; tabs++ {
		if tabs == 40 {
			p.fatal("40 presses of Tab never reached #login's user field")
		}
		p.keys("\t")
	}
	p.keys(user)
	p.keys("\t")
	if p.eval(fmt.Sprintf(focused, js("#login [name=password]"))) != "true" {
		p.fatal("Tab from the user field went to %s, not the password field", p.eval(`document.activeElement.outerHTML.slice(0, 120)`))
	}
	p.keys(password)
	p.eval(`window.__holdfastBefore = true`)
	p.keys("\r")
	p.answered("login", "")
}

// signOut signs out with the header's form and waits for the page after.
func signOut(p *page) {
	p.t.Helper()
	p.submit("logout", "")
}

// createTenant makes a tenant on the operator's tenants page.
func createTenant(op *page, name string) {
	op.t.Helper()
	mustOpen(op, "/operator/tenants")
	op.fill("#tenant-create [name=name]", name)
	op.submit("tenant-create", "")
	op.open("/operator/tenants")
	op.waitVisible(row(name))
}

// createUser makes a user of a tenant on the operator's users page.
func createUser(op *page, name, password, tenant, role string) {
	op.t.Helper()
	mustOpen(op, "/operator/users")
	op.fill("#user-create [name=name]", name)
	op.fill("#user-create [name=password]", password)
	op.choose("#user-create [name=tenant]", tenant)
	op.choose("#user-create [name=role]", role)
	op.submit("user-create", "")
	op.open("/operator/users")
	op.waitVisible(row(name))
}

// createNetwork makes a network on the tenant's networks page.
func createNetwork(p *page, tenant, name string) {
	p.t.Helper()
	mustOpen(p, "/t/"+tenant+"/networks")
	p.fill("#network-create [name=name]", name)
	p.submit("network-create", "")
	p.open("/t/" + tenant + "/networks")
	p.waitVisible(row(name))
}

// addSSHKey adds a public key on the tenant's SSH keys page.
func addSSHKey(p *page, tenant, name, key string) {
	p.t.Helper()
	mustOpen(p, "/t/"+tenant+"/sshkeys")
	p.fill("#sshkey-create [name=name]", name)
	p.fill("#sshkey-create [name=public_key]", key)
	p.submit("sshkey-create", "")
	p.open("/t/" + tenant + "/sshkeys")
	p.waitVisible(row(name))
}

// createInstance makes an instance on the new-instance page, with the
// SSH keys given ticked.
func createInstance(p *page, tenant, name, flavor, template, network string, keys ...string) {
	p.t.Helper()
	mustOpen(p, "/t/"+tenant+"/instances/new")
	p.fill("#instance-create [name=name]", name)
	p.choose("#instance-create [name=flavor]", flavor)
	p.choose("#instance-create [name=template]", template)
	p.choose("#instance-create [name=network]", network)
	for _, k := range keys {
		p.click(fmt.Sprintf(`#instance-create input[name=ssh_keys][value=%s]`, js(k)))
	}
	p.submit("instance-create", "")
}

// mustOpen opens a page that must be there.
func mustOpen(p *page, path string) {
	p.t.Helper()
	if status := p.open(path); status != http.StatusOK {
		p.fatal("%s answered %d", path, status)
	}
}

// row selects the row of a list's table for the named object.
func row(name string) string { return fmt.Sprintf(`tr[data-name=%s]`, js(name)) }

// instanceCell selects a field of an instance's row in the instances
// list.
func instanceCell(name, field string) string {
	return fmt.Sprintf(`tr[data-instance=%s] [data-field=%s]`, js(name), field)
}
