// Package auth holds the security primitives of the control plane: argon2id
// password hashes, TOTP second factors with a replay guard, HMAC-SHA256 signed
// API-key requests, AES-256-GCM encryption of secrets at rest, and a Secret
// type that never prints its value.
//
// Nothing in this package logs. Errors never carry secret material.
package auth
