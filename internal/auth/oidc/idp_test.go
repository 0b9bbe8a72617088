package oidc

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

// Test keys are made once: RSA generation is slow under -race.
var (
	idpKey   = sync.OnceValue(newRSAKey)
	rogueKey = sync.OnceValue(newRSAKey)
)

func newRSAKey() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

const (
	testClientID     = "holdfast"
	testClientSecret = "s3cret-client-secret"
	testRedirectURL  = "https://holdfast.test/v1/auth/oidc/callback"
	testKeyID        = "key-1"
)

// idpKnobs change how the test provider behaves; set them with
// testIDP.configure before the request they affect.
type idpKnobs struct {
	deny        string                   // /authorize answers error=access_denied with this description
	tokenCrash  bool                     // /token answers 500 with a text body that echoes the request
	signKey     *rsa.PrivateKey          // signs ID tokens; nil means the published key
	claims      func(c map[string]any)   // edits each ID token's claims
	authMethods []string                 // token_endpoint_auth_methods_supported
	pkceMethods []string                 // code_challenge_methods_supported
	discovery   func(doc map[string]any) // edits the discovery document
}

// grant is what /authorize remembers about a code for /token.
type grant struct {
	challenge, nonce, redirectURI string
}

// testIDP is a real OpenID Connect provider over TLS: discovery, JWKS,
// an /authorize that approves at once (no login page), and a /token that
// checks client credentials, the one-time code, redirect_uri and the PKCE
// verifier, then issues an RS256 ID token.
type testIDP struct {
	srv *httptest.Server

	mu            sync.Mutex
	knobs         idpKnobs
	codes         map[string]grant
	tokenRequests int
	pkceFailures  int
	lastVerifier  string // code_verifier last presented to /token
	lastIDToken   string
}

func newTestIDP(t *testing.T) *testIDP {
	t.Helper()
	idp := &testIDP{
		codes: map[string]grant{},
		knobs: idpKnobs{
			authMethods: []string{"client_secret_basic"},
			pkceMethods: []string{"plain", "S256"},
		},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", idp.discovery)
	mux.HandleFunc("GET /jwks", idp.jwks)
	mux.HandleFunc("GET /authorize", idp.authorize)
	mux.HandleFunc("POST /token", idp.token)
	idp.srv = httptest.NewTLSServer(mux)
	t.Cleanup(idp.srv.Close)
	return idp
}

func (idp *testIDP) configure(f func(k *idpKnobs)) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	f(&idp.knobs)
}

func (idp *testIDP) issuer() string { return idp.srv.URL }

func (idp *testIDP) discovery(w http.ResponseWriter, _ *http.Request) {
	idp.mu.Lock()
	k := idp.knobs
	idp.mu.Unlock()
	doc := map[string]any{
		"issuer":                                idp.issuer(),
		"authorization_endpoint":                idp.issuer() + "/authorize",
		"token_endpoint":                        idp.issuer() + "/token",
		"jwks_uri":                              idp.issuer() + "/jwks",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"code_challenge_methods_supported":      k.pkceMethods,
		"token_endpoint_auth_methods_supported": k.authMethods,
	}
	if k.discovery != nil {
		k.discovery(doc)
	}
	writeJSON(w, http.StatusOK, doc)
}

func (idp *testIDP) jwks(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &idpKey().PublicKey, KeyID: testKeyID, Algorithm: string(jose.RS256), Use: "sig",
	}}})
}

func (idp *testIDP) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch {
	case q.Get("response_type") != "code",
		q.Get("client_id") != testClientID,
		q.Get("redirect_uri") != testRedirectURL,
		!slices.Contains(strings.Fields(q.Get("scope")), "openid"),
		q.Get("code_challenge_method") != "S256",
		q.Get("code_challenge") == "",
		q.Get("nonce") == "",
		q.Get("state") == "":
		http.Error(w, "bad authorization request: "+r.URL.RawQuery, http.StatusBadRequest)
		return
	}
	back := url.Values{"state": {q.Get("state")}}
	idp.mu.Lock()
	if idp.knobs.deny != "" {
		back.Set("error", "access_denied")
		back.Set("error_description", idp.knobs.deny)
	} else {
		code := rand.Text()
		idp.codes[code] = grant{challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), redirectURI: q.Get("redirect_uri")}
		back.Set("code", code)
	}
	idp.mu.Unlock()
	http.Redirect(w, r, q.Get("redirect_uri")+"?"+back.Encode(), http.StatusFound)
}

func (idp *testIDP) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	idp.mu.Lock()
	defer idp.mu.Unlock()
	idp.tokenRequests++
	idp.lastVerifier = r.PostForm.Get("code_verifier")

	id, secret, basic := r.BasicAuth()
	if idp.knobs.tokenCrash {
		// No RFC 6749 error JSON, and a body echoing request secrets.
		http.Error(w, "panic: "+r.PostForm.Encode()+" secret="+secret, http.StatusInternalServerError)
		return
	}
	if !slices.Contains(idp.knobs.authMethods, "client_secret_basic") {
		if basic {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client", "error_description": "use client_secret_post"})
			return
		}
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != testClientID || secret != testClientSecret {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client"})
		return
	}
	if r.PostForm.Get("grant_type") != "authorization_code" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	code := r.PostForm.Get("code")
	g, ok := idp.codes[code]
	delete(idp.codes, code) // one use, whatever happens next
	if !ok || r.PostForm.Get("redirect_uri") != g.redirectURI {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_grant", "error_description": "unknown code"})
		return
	}
	if oauth2.S256ChallengeFromVerifier(r.PostForm.Get("code_verifier")) != g.challenge {
		idp.pkceFailures++
		// The body echoes request secrets, as careless providers do, so a
		// test can show they never reach an error string.
		writeJSON(w, http.StatusBadRequest, map[string]string{
			"error": "invalid_grant", "error_description": "PKCE verification failed",
			"debug": "code=" + code + " verifier=" + r.PostForm.Get("code_verifier") + " secret=" + secret,
		})
		return
	}

	now := time.Now()
	claims := map[string]any{
		"iss":                idp.issuer(),
		"sub":                "user-7f3a",
		"aud":                testClientID,
		"iat":                now.Unix(),
		"exp":                now.Add(time.Hour).Unix(),
		"nonce":              g.nonce,
		"email":              "ada@example.com",
		"email_verified":     true,
		"name":               "Ada Lovelace",
		"preferred_username": "ada",
		"groups":             []string{"holdfast-admins", "devs"},
	}
	if idp.knobs.claims != nil {
		idp.knobs.claims(claims)
	}
	key := idpKey()
	if idp.knobs.signKey != nil {
		key = idp.knobs.signKey
	}
	raw, err := signJWT(key, claims)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	idp.lastIDToken = raw
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": "at-" + rand.Text(),
		"token_type":   "Bearer",
		"expires_in":   3600,
		"id_token":     raw,
	})
}

// signJWT signs claims with RS256 under testKeyID, whichever key it is.
func signJWT(key *rsa.PrivateKey, claims map[string]any) (string, error) {
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader(jose.HeaderKey("kid"), testKeyID),
	)
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (idp *testIDP) counts() (tokenRequests, pkceFailures int) {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	return idp.tokenRequests, idp.pkceFailures
}

// secrets returns what must never appear in an error string.
func (idp *testIDP) secrets() []string {
	idp.mu.Lock()
	defer idp.mu.Unlock()
	s := []string{testClientSecret}
	if idp.lastVerifier != "" {
		s = append(s, idp.lastVerifier)
	}
	if idp.lastIDToken != "" {
		s = append(s, idp.lastIDToken)
	}
	return s
}
