package client

import (
	"context"
	"fmt"

	"github.com/holdfast/holdfast/api"
)

// Passkeys are registered in a browser, which holds the authenticator
// (the portal: POST /v1/me/passkeys/registration, then
// navigator.credentials.create, then POST /v1/me/passkeys); a client
// lists and removes them.

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
