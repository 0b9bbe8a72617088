// Package guest is Holdfast's side of the guest layer: what each instance's
// Holdfast agent may read, and what it reports.
//
// Every instance has its own agent credential, a bearer token derived from
// the cloud's master key, the instance's ID and a generation (Credentials):
// nothing of it is stored, so there is no token file to steal from the
// control plane, and rotating it (a new generation) ends the old one at
// once everywhere. A token reads that instance's configuration only.
//
// The Server answers the agent API:
//
//	GET  /v1/agent/config   the instance's guest configuration (Config), with an
//	                        ETag; If-None-Match answers 304 while it is unchanged
//	POST /v1/agent/health   the agent's health (Health), kept for holdfast status
//
// both with "Authorization: Bearer <token>". Over TCP a request must also come
// from one of the instance's own addresses (on Proxmox the guest firewall's
// ipfilter pins them), so a token copied elsewhere is of no use; over the
// local engine's unix socket, which only instances and root can reach, the
// token alone identifies the instance. A token that names no instance, or a
// right one from the wrong address, is refused the same way (401), so the
// answer tells a prober nothing.
//
// What the server hands out comes from the state the last apply wrote
// (deploy's applied state file): an instance sees a change once an apply has
// made it, never a spec edit not yet applied.
package guest
