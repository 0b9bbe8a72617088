package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/holdfast/holdfast/api"
)

// Passkeys are registered in a browser, which holds the authenticator
// (the portal: POST /v1/me/passkeys/registration, then
// navigator.credentials.create, then POST /v1/me/passkeys); the CLI
// lists and removes them. The ceremonies are here too, for programs that
// hold an authenticator themselves: the options are WebAuthn's JSON, and
// a credential is the PublicKeyCredential JSON (toJSON) a browser sends.

// BeginPasskeyRegistration starts registering a passkey for the caller:
// options for the authenticator, and the ceremony to finish with.
func (c *Client) BeginPasskeyRegistration(ctx context.Context) (*api.PasskeyRegistration, error) {
	return one[api.PasskeyRegistration](ctx, c, call{method: post, path: "/v1/me/passkeys/registration"})
}

// CreatePasskey finishes a registration with the authenticator's
// credential.
func (c *Client) CreatePasskey(ctx context.Context, in api.PasskeyCreate) (*api.Passkey, error) {
	return one[api.Passkey](ctx, c, call{method: post, path: "/v1/me/passkeys", in: in})
}

// PasskeyChallenge asks for a login challenge; user, when not empty,
// is the only user whose passkey will do.
func (c *Client) PasskeyChallenge(ctx context.Context, user string) (*api.PasskeyChallenge, error) {
	return one[api.PasskeyChallenge](ctx, c, call{method: post, path: "/v1/auth/passkey/challenge", in: api.PasskeyChallengeRequest{User: user}, public: true})
}

// LoginWithPasskey logs in with a passkey alone (its answer to a
// challenge) and uses the session for the requests that follow. For a
// passkey as the second factor after a password, give it to Login as
// api.LoginRequest.Passkey instead.
func (c *Client) LoginWithPasskey(ctx context.Context, in api.PasskeyAssertion) (Session, error) {
	if c.keyID != "" {
		return Session{}, errors.New("this client signs its requests with an API key: make another client to log in")
	}
	var t api.Tokens
	if err := c.do(ctx, call{method: http.MethodPost, path: "/v1/auth/passkey/login", in: api.PasskeyLogin{PasskeyAssertion: in}, out: &t, public: true}); err != nil {
		return Session{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.setSessionLocked(t); err != nil {
		return Session{}, err
	}
	return c.sess, nil
}

// ListPasskeys lists the caller's passkeys.
func (c *Client) ListPasskeys(ctx context.Context) ([]api.Passkey, error) {
	return listEvery[api.Passkey](ctx, c, call{method: get, path: "/v1/me/passkeys"})
}

// RemovePasskey removes one of the caller's passkeys by id.
func (c *Client) RemovePasskey(ctx context.Context, id string) error {
	return c.do(ctx, call{method: del, path: "/v1/me/passkeys/{}", elems: []string{id}})
}

// RemovePasskeyNamed removes the caller's passkey of that name (names
// are unique per user) and returns it.
func (c *Client) RemovePasskeyNamed(ctx context.Context, name string) (api.Passkey, error) {
	keys, err := c.ListPasskeys(ctx)
	if err != nil {
		return api.Passkey{}, err
	}
	for _, k := range keys {
		if k.Name == name {
			return k, c.RemovePasskey(ctx, k.ID)
		}
	}
	return api.Passkey{}, fmt.Errorf("you have no passkey named %q (holdfast passkey list)", name)
}
