package server

import (
	"encoding/hex"
	"strconv"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/audit"
)

// listAudit answers the audit log: every entry to operators at /v1/audit,
// the tenant's own at /v1/tenants/{tenant}/audit.
func (s *Server) listAudit(q *request) error {
	after, limit, err := q.page()
	if err != nil {
		return err
	}
	f := audit.Filter{Limit: limit + 1}
	if after != "" {
		if f.After, err = strconv.ParseInt(after, 10, 64); err != nil || f.After < 0 {
			return pageProblem("cursor", "not a cursor this server gave out")
		}
	}
	if q.tenant != nil {
		f.Tenant = q.tenant.Name
	}
	es, err := s.audit.List(q.r.Context(), f)
	if err != nil {
		return err
	}
	items := make([]api.AuditEntry, len(es))
	for i, e := range es {
		items[i] = api.AuditEntry{Seq: e.Seq, Time: e.Time, Actor: e.Actor, Tenant: e.Tenant, Action: e.Action, Object: e.Object,
			Source: e.Source, Result: e.Result, Detail: e.Detail, Hash: hex.EncodeToString(e.Hash[:])}
	}
	return q.ok(pageOf(items, limit, func(e api.AuditEntry) string { return strconv.FormatInt(e.Seq, 10) }))
}
