// Package agent is the Holdfast agent: the holdfast binary running inside
// an instance. It fetches its instance's guest configuration from the
// guest service (package guest) with the instance's own token, applies it
// — the overlay member, run as embedded Nebula (package overlay/mesh) —
// keeps it converged as it changes, and reports its health, which holdfast
// status shows.
//
// It starts from its guest.Agentsettings (guest.AgentSettings, agent.json). The last configuration it
// applied is kept in its state directory, so that after a restart the
// instance's services come back before (or without) the control plane.
package agent
