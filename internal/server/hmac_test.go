package server

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/auth"
)

// TestHMACRepeatedQueryParameter: a signed query that names a parameter
// twice is refused in either order, so that reordering the duplicates of
// a signed request cannot change what the server reads.
func TestHMACRepeatedQueryParameter(t *testing.T) {
	e := newEnv(t, Config{})
	key := e.apiKey(e.admin)
	for i, query := range []string{"limit=1&limit=2", "limit=2&limit=1"} {
		// Signed by hand, as a client of another language would: the
		// library refuses to sign it at all.
		now := e.clock.now()
		nonce := fmt.Sprintf("nonce-%d-%s", i, rand.Text())
		sum := sha256.Sum256(nil)
		sts := strings.Join([]string{auth.SignatureScheme, "GET", "/v1/tenants", "limit=1&limit=2", hex.EncodeToString(sum[:]),
			strconv.FormatInt(now.Unix(), 10), nonce}, "\n")
		mac := hmac.New(sha256.New, key.keySecret)
		mac.Write([]byte(sts))
		req, _ := http.NewRequest(http.MethodGet, e.ts.URL+"/v1/tenants?"+query, nil)
		req.Header.Set("Authorization", auth.AuthorizationHeader(key.keyID, now, nonce, hex.EncodeToString(mac.Sum(nil))))
		resp, err := e.ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("signed %q sent as %q: %d, want 401", "limit=1&limit=2", query, resp.StatusCode)
		}
		r := httptest.NewRequest(http.MethodGet, "/v1/tenants?"+query, nil)
		if err := auth.SignRequest(r, nil, key.keyID, key.keySecret, now); err == nil {
			t.Errorf("SignRequest signed %q", query)
		}
	}
}
