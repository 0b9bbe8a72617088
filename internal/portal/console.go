package portal

import (
	"crypto/rand"
	"net/http"
	"net/url"
	"strings"

	"github.com/holdfast/holdfast/api"
)

// The console page runs xterm.js, which styles the terminal by adding
// <style> elements as it draws; a policy without 'unsafe-inline' drops
// them. Instead of allowing every inline style, the page's policy allows
// those carrying a nonce made for this response alone, and console.js
// stamps it on each <style> element as xterm.js creates one. Markup an
// attacker managed to inject cannot know the nonce, and scripts stay
// limited to this origin's files.

func cspWithStyleNonce(nonce string) string {
	return strings.Replace(csp, "style-src 'self'", "style-src 'self' 'nonce-"+nonce+"'", 1)
}

func (p *Portal) console(s *session, v *view) (string, error) {
	var in api.Instance
	if err := s.get(tp(v)+"/instances/"+url.PathEscape(s.r.PathValue("instance")), &in); err != nil {
		return "", err
	}
	if !v.Writer() {
		return "", &api.Problem{Status: http.StatusForbidden, Title: "Forbidden", Detail: "the console needs the tenant:write permission"}
	}
	v.Title, v.Data, v.StyleNonce = "Console of "+in.Name, in, rand.Text()
	return "console", nil
}
