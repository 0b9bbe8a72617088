package server

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/audit"
	"github.com/holdfast/holdfast/internal/deploy"
)

// The operator's views of the cloud in the API, so that the portal
// shows what `holdfast status` and `holdfast audit verify` show, from
// the same code.

// statusLockWait is how long a status request waits for the cloud's
// lock, held while the reconciler (or an operator's apply) changes it.
const statusLockWait = 20 * time.Second

// cloudStatus observes every resource of the cloud and compares it with
// the spec, as `holdfast status` does, and says how the reconciler last
// did.
func (s *Server) cloudStatus(q *request) error {
	c, _, err := deploy.Open(s.cfg.SpecPath, deploy.Options{StateDir: s.cfg.StateDir, Database: s.cfg.Database, Rename: s.cfg.Rename, LockWait: statusLockWait})
	if errors.Is(err, syscall.EWOULDBLOCK) {
		q.w.Header().Set("Retry-After", "10")
		return problem(http.StatusServiceUnavailable, "busy", "the cloud is being changed; try again shortly")
	}
	if err != nil {
		return err
	}
	defer c.Close()
	st, err := c.Status(q.r.Context())
	if err != nil {
		return err
	}
	out := api.CloudStatus{Cloud: s.cloud, Resources: make([]api.ResourceStatus, len(st))}
	for i, r := range st {
		rs := api.ResourceStatus{ID: r.ID.String(), Kind: r.Kind, Site: r.Site, State: r.State, Drift: r.Drift}
		if r.Agent != nil {
			rs.Agent = r.Agent.State
			if r.Agent.Detail != "" {
				rs.Agent += ": " + r.Agent.Detail
			}
		}
		out.Resources[i] = rs
	}
	h := &s.real.health
	h.mu.Lock()
	if !h.lastSuccess.IsZero() {
		t := h.lastSuccess.UTC()
		out.LastReconcile = &t
	}
	out.ReconcileError, out.FailedReconciles = h.lastErr, h.failures
	h.mu.Unlock()
	return q.ok(out)
}

// verifyAudit checks the audit log as `holdfast audit verify` does,
// against the checkpoints this server published.
func (s *Server) verifyAudit(q *request) error {
	var opts []audit.VerifyOption
	f, err := os.Open(filepath.Join(s.dir, AuditCheckpointsFile))
	switch {
	case err == nil:
		published, err := audit.ReadPublished(f)
		f.Close()
		if err != nil {
			return err
		}
		opts = append(opts, audit.AgainstPublished(published))
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	rep, err := s.audit.Verify(q.r.Context(), s.auditK, opts...)
	if err != nil {
		return err
	}
	out := api.AuditVerification{OK: rep.OK(), Entries: rep.Entries, LastSeq: rep.LastSeq, Checkpoints: rep.Checkpoints,
		Published: rep.Published, Covered: rep.Covered, Limits: rep.Limits}
	for _, p := range rep.Problems {
		out.Problems = append(out.Problems, p.Msg)
	}
	return q.ok(out)
}
