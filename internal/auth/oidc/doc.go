// Package oidc logs users in to the control plane through an external
// OpenID Connect provider (Authentik, Keycloak, ...), as an optional login
// method beside local passwords. The control plane is a confidential
// client using the authorization-code flow with PKCE (S256), state and
// nonce.
//
// # Flow
//
// [New] validates a [Config] and fetches the provider's discovery document.
// One [Provider] then serves every login; it is safe for concurrent use.
//
//  1. [Provider.Begin] returns the provider's authorization URL and a
//     flow value. The flow holds the state, nonce and PKCE verifier, sealed
//     with AES-256-GCM under the flow key, and expires after [FlowLifetime].
//     The server stores the flow in the cookie made by [Provider.FlowCookie]
//     and redirects the browser to the URL.
//  2. The provider authenticates the user and redirects the browser back to
//     Config.RedirectURL with code and state (or error).
//  3. [Provider.Finish] opens the flow, checks state in constant time,
//     exchanges the code with the verifier, verifies the ID token
//     (signature against the provider's JWKS, issuer, audience, authorized
//     party, expiry, nonce) and returns an [Identity]. Access and refresh
//     tokens are discarded: the server issues its own session.
//
// The flow is kept by the browser, not the server, so any replica holding
// the same flow key can finish a login. A flow can be presented twice, but
// the provider redeems a code only once; the server should still delete
// the cookie in the callback, whatever the outcome.
//
// The flow key is 32 bytes used only for this. Derive it from the master
// key (e.g. crypto/hkdf with info "holdfast oidc flow v1") or make a random
// one at start-up: losing it only cancels logins in progress.
//
// # HTTP wiring
//
//	GET /v1/auth/oidc/login     Begin; Set-Cookie: FlowCookie(flow); 302 to the URL.
//	GET /v1/auth/oidc/callback  Finish(ctx, cookie, r.URL.Query());
//	                            Set-Cookie: FlowCookie(""); map the Identity to a
//	                            local user; issue a session; 302 to the UI.
//
// Errors from Finish map to answers as follows. Never show an error's text
// unescaped: [ProviderError] carries text chosen by the provider.
//
//	*ProviderError                       403, the provider refused (e.g. access_denied)
//	ErrFlowInvalid, ErrFlowExpired,
//	ErrStateMismatch                     400, start the login again
//	ErrNonceMismatch, ErrToken           401
//	ErrDomainNotAllowed                  403
//	ErrExchange                          502, the provider did not redeem the code
//
// # Mapping identities to local users
//
// An Identity is who the provider says the user is; which local user that
// is, and what they may do, is the server's decision:
//
//   - Link accounts by (Issuer, Subject). That pair is stable and unique;
//     an email address is neither (it changes, is reassigned, and two
//     providers can both claim it).
//   - On the first login of an unlinked (Issuer, Subject), link it to an
//     existing local user only if EmailVerified is true and Email matches
//     that user's email case-insensitively, and exactly one user matches.
//     Otherwise create a new user with no roles (if self-provisioning is
//     enabled) or refuse and ask an operator to link the account.
//   - Never grant the operator role from OIDC: not on first login, not
//     from Groups. Groups may map to lesser roles through an explicit,
//     operator-written mapping, re-evaluated at each login so removal at the
//     provider takes effect. Keep a local password and TOTP for operators
//     as the break-glass path when the provider is down.
//   - Name, Username and Email are display hints, refreshed at each login;
//     never use them as keys.
//
// Nothing in this package logs. Errors never carry tokens, codes, the PKCE
// verifier, or the client secret.
package oidc
