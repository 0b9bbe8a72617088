package api

import (
	"encoding/json"
	"time"
)

// Passkeys are WebAuthn credentials: registered in a browser (the
// portal) with navigator.credentials.create, used to log in with
// navigator.credentials.get, alone or as the second factor after a
// password. Options are go-webauthn's standard JSON forms
// (CredentialCreation, CredentialAssertion: {"publicKey": {...}}, binary
// fields base64url); a credential is the browser's PublicKeyCredential
// in its toJSON() form.

// Passkey is one of the caller's registered authenticators.
type Passkey struct {
	ID         string     `json:"id" doc:"Names the passkey in paths."`
	Name       string     `json:"name"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
}

// PasskeyRegistration starts registering a passkey: pass options.publicKey
// to navigator.credentials.create (after decoding its base64url fields, or
// with PublicKeyCredential.parseCreationOptionsFromJSON), then POST the
// credential with the ceremony to /v1/me/passkeys within five minutes.
type PasskeyRegistration struct {
	Ceremony string          `json:"ceremony" doc:"Names this registration; good once, for five minutes."`
	Options  json.RawMessage `json:"options" doc:"WebAuthn PublicKeyCredentialCreationOptions as {\"publicKey\": {...}} (base64url binary fields): a discoverable credential is required, user verification preferred, the caller's passkeys excluded."`
}

// PasskeyCreate finishes a registration.
type PasskeyCreate struct {
	Ceremony   string          `json:"ceremony" maxlen:"64"`
	Name       string          `json:"name" pattern:"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,62}$" doc:"What the user calls this authenticator, unique among theirs."`
	Credential json.RawMessage `json:"credential" doc:"The browser's PublicKeyCredential from navigator.credentials.create, as its toJSON() gives it."`
}

// PasskeyChallengeRequest asks for a login challenge.
type PasskeyChallengeRequest struct {
	User string `json:"user,omitempty" maxlen:"64" doc:"Only a passkey of this user will do; omitted, any registered passkey (discoverable login). Answered alike whether or not the user exists."`
}

// PasskeyChallenge is a login challenge: pass options.publicKey to
// navigator.credentials.get, then send the credential with the ceremony
// to /v1/auth/passkey/login, or as the passkey of /v1/auth/login after a
// password, within five minutes.
type PasskeyChallenge struct {
	Ceremony string          `json:"ceremony" doc:"Names this challenge; good once, for five minutes."`
	Options  json.RawMessage `json:"options" doc:"WebAuthn PublicKeyCredentialRequestOptions as {\"publicKey\": {...}} (base64url binary fields), with no allowCredentials: the authenticator offers its passkeys for this site."`
}

// PasskeyAssertion answers a login challenge.
type PasskeyAssertion struct {
	Ceremony   string          `json:"ceremony" maxlen:"64"`
	Credential json.RawMessage `json:"credential" doc:"The browser's PublicKeyCredential from navigator.credentials.get, as its toJSON() gives it."`
}

// PasskeyLogin logs in with a passkey alone: an authenticator that
// verified its user (PIN, biometrics) is two factors in one, something
// held and something known or been.
type PasskeyLogin struct {
	PasskeyAssertion
	Cookie bool `json:"cookie,omitempty" doc:"For browsers, as in /v1/auth/login: set the session as HttpOnly cookies and answer who logged in; needs the X-CSRF-Token header equal to the __Host-hf_csrf cookie."`
}
