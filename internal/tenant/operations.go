package tenant

import (
	"encoding/json"

	"github.com/holdfast/holdfast/api"
)

const opCols = `seq, id, kind, tenant, target, object, status, progress, message, error, created_at, updated_at`

func scanOp(sc scanner) (Op, error) {
	var o Op
	var seq int64
	var problem, created, updated string
	err := sc.Scan(&seq, &o.ID, &o.Kind, &o.Tenant, &o.Target, &o.Object, &o.Status, &o.Progress, &o.Message, &problem, &created, &updated)
	if err != nil {
		return o, err
	}
	o.Seq = seq
	o.CreatedAt, o.UpdatedAt = parseTime(created), parseTime(updated)
	if problem != "" {
		o.Error = &api.Problem{}
		if err := json.Unmarshal([]byte(problem), o.Error); err != nil {
			return o, err
		}
	}
	return o, nil
}

// Op is an operation with the spec object it changes.
type Op struct {
	api.Operation
	Object string // spec name of the instance or zone
	Seq    int64  // order of creation
}

// CreateOperation records pending work on target (an API path), which is
// object (a spec name) in the cloud.
func (t *Tx) CreateOperation(kind, tenant, target, object string) (api.Operation, error) {
	id := NewID("op-")
	now := fmtTime(t.now)
	_, err := t.exec(`INSERT INTO operations(id, kind, tenant, target, object, status, created_at, updated_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?)`,
		id, kind, tenant, target, object, api.OpPending, now, now)
	if err != nil {
		return api.Operation{}, err
	}
	o, err := t.Operation(id)
	return o.Operation, err
}

// Operation reads an operation.
func (t *Tx) Operation(id string) (Op, error) {
	o, err := scanOp(t.row(`SELECT `+opCols+` FROM operations WHERE id = ?`, id))
	return o, notFound(err)
}

// OpenOperations lists operations not finished, oldest first.
func (t *Tx) OpenOperations() ([]Op, error) {
	rows, err := t.query(`SELECT ` + opCols + ` FROM operations WHERE status IN ('pending', 'running') ORDER BY seq`)
	return collect(rows, err, scanOp)
}

// Operations lists operations newest first, before the given sequence
// number (0: from the newest); tenant limits them to one tenant's.
func (t *Tx) Operations(tenant string, before int64, limit int) ([]Op, error) {
	if before <= 0 {
		before = 1 << 62
	}
	q := `SELECT ` + opCols + ` FROM operations WHERE seq < ? ORDER BY seq DESC LIMIT ?`
	args := []any{before, limit}
	if tenant != "" {
		q = `SELECT ` + opCols + ` FROM operations WHERE seq < ? AND tenant = ? ORDER BY seq DESC LIMIT ?`
		args = []any{before, tenant, limit}
	}
	rows, err := t.query(q, args...)
	return collect(rows, err, scanOp)
}

// UpdateOperation records progress or the outcome of an operation.
func (t *Tx) UpdateOperation(id, status string, progress int, message string, problem *api.Problem) error {
	var p string
	if problem != nil {
		b, err := json.Marshal(problem)
		if err != nil {
			return err
		}
		p = string(b)
	}
	return affected(t.exec(`UPDATE operations SET status = ?, progress = ?, message = ?, error = ?, updated_at = ? WHERE id = ?`,
		status, progress, message, p, fmtTime(t.now), id))
}
