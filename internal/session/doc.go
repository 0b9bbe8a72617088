// Package session keeps the control plane's login sessions: short-lived
// signed access tokens, rotating refresh tokens with reuse detection, and
// throttling of login attempts. All state lives in the control plane's
// SQLite database, in tables prefixed session_ (see schema.sql).
//
// # Tokens
//
// A login starts a session, called a family: one access token and one
// refresh token.
//
//   - The access token is a JWT (compact form, header typ "at+jwt", alg
//     EdDSA, kid naming the key) good for Config.AccessTTL, 15 minutes by
//     default. Claims: iss, sub (user id), sid (family id), amr (methods:
//     "pwd", "otp", "oidc"), auth_time, iat, exp, jti. Manager.Verify
//     checks it without touching the database.
//   - The refresh token is 32 random bytes, base64url; the database holds
//     only their SHA-256. Manager.Refresh spends it and returns a new pair.
//     Presenting a spent token again means one of two parties holds a copy,
//     so the whole family is revoked and Refresh returns ErrReuse.
//   - A family ends RefreshIdle (7 days) after its last refresh, or
//     RefreshAbsolute (30 days) after the login, or when revoked by Logout,
//     Revoke, RevokeUser or reuse. Revoked families' access tokens are
//     refused by Verify through an in-memory set (see Verify for the
//     trade-off).
//
// Signing keys are Ed25519, made on first start, and stored sealed with
// auth.Box under associated data naming the key id. RotateKey (and
// Maintain, once a key is KeyRotateAfter old) makes a new key sign while
// the old one verifies until its tokens have expired; ReplaceKey retires
// the old one at once, for a key that may have leaked.
//
// # Throttling
//
// A Limiter admits or refuses login attempts by source address (a token
// bucket in memory), by account and source (consecutive failures lock
// that source out of that account for a doubling period) and by account
// (sources that have failed share a slowly refilled budget; a source
// without failures is never refused by it, so the owner is not locked
// out by an attack from elsewhere). The account limits are kept in the
// database, which knows accounts only by an HMAC of the name.
//
// # Second factors
//
// TOTP checks TOTP codes (auth.MatchTOTP) and refuses a code once
// accepted: the last step accepted per user is kept in session_totp, so
// that a restart does not reopen a code's window.
//
// # Wiring
//
// At start: db from store.OpenDB; box from auth.NewBox(master key);
// m, err := session.New(ctx, db, box, session.Config{Issuer: url}) and
// lim, err := session.NewLimiter(ctx, db, session.LimiterConfig{NameKey:
// a key derived from the master key}) and
// otp, err := session.NewTOTP(ctx, db, nil). Run m.Maintain, lim.Maintain
// and otp.Maintain every few minutes.
//
// Login (password, TOTP, or an OIDC callback):
//
//	if err := lim.Admit(ctx, name, clientIP); err != nil { 429, Retry-After from *LimitError }
//	check the password; on failure answer 401 (the attempt is already counted)
//	if the second factor is missing: lim.Forgive(ctx, name, clientIP); ask for it
//	check the code with otp.Verify; on failure answer 401
//	lim.Succeeded(ctx, name, clientIP)
//	tok, err := m.Login(ctx, userID, []string{"pwd", "otp"})
//
// A password change checks the current password between the same Admit
// and Succeeded, so that a stolen token is no way to guess it.
//
// Every request: claims, err := m.Verify(bearer token); ErrExpired asks
// the client to refresh, the other errors to log in again. Authorize by
// claims.Subject; claims.Methods tells how strongly the user
// authenticated.
//
// Refresh: tok, err := m.Refresh(ctx, refreshToken). Record ErrReuse in
// the audit log: it means a token was stolen or a client is broken.
//
// Logout: m.Logout(ctx, refreshToken), or m.Revoke(ctx, claims.Subject,
// claims.Family) with an access token. Password change or disabled
// account: m.RevokeUser(ctx, userID).
//
// Nothing in this package logs, and no error carries token or key
// material. Tokens holds its tokens as auth.Secret, so printing it shows
// none.
package session
