// Package client is the Go client of the Holdfast control plane API: one
// method per endpoint of /v1, taking and returning the wire types of
// package api, so client and server cannot drift.
//
// # Connecting
//
// A Client talks to one server. The server's default certificate is
// self-signed, so say how to trust it: pin its SHA-256 fingerprint (what
// `holdfast serve` prints) or give its certificate as a CA:
//
//	c, err := client.New("https://cloud.example:8443",
//		client.WithFingerprint("sha256:9f86d0..."))
//
// # Credentials
//
// Either a session or an API key.
//
// A session is what Login answers: a short-lived access token and a
// one-time refresh token. The client refreshes it by itself — shortly
// before the access token expires, and once more when a request is refused
// with 401 — and tells WithSessionHook's function about every new session,
// so that a program that keeps the tokens (the CLI does, in its config
// file) stores the rotated refresh token: the old one is spent, and
// presenting it again ends the session. Concurrent requests share one
// refresh.
//
// An API key (WithAPIKey) signs every request with HMAC-SHA256 over its
// method, path, query, body and a timestamp; it never expires by itself
// and needs no refreshing.
//
// # Errors
//
// Every answer other than 2xx is returned as *api.Problem: its Status,
// Detail and, for bad requests, Errors naming each bad field. Network
// failures are returned wrapped, naming the request.
//
//	_, err := c.CreateTenant(ctx, api.TenantCreate{Name: "Bad Name"})
//	var p *api.Problem
//	if errors.As(err, &p) && p.Status == http.StatusUnprocessableEntity {
//		for _, f := range p.Errors {
//			fmt.Println(f.Field, f.Message)
//		}
//	}
//
// # Lists and long work
//
// Lists answer a page at a time; ListAll and All walk the cursors.
// Creating, changing and deleting networks and instances answers an
// operation at once; WaitOperation follows it until it is done.
package client
