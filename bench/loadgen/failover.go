package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/holdfast/holdfast/api"
)

// failoverReport is what -failover measured.
type failoverReport struct {
	Machine struct {
		CPUs int    `json:"cpus"`
		CPU  string `json:"cpu"`
	} `json:"machine"`
	Runs []failoverRun `json:"runs"`
	// Discarded counts runs whose operation the old leader finished
	// before it was killed: they time nothing and are run again.
	Discarded int     `json:"discarded"`
	MedianS   float64 `json:"median_s"`
	TargetS   float64 `json:"target_s"`
	Pass      bool    `json:"pass"`
}

// failoverRun is one kill -9 of the leader.
type failoverRun struct {
	Killed    string  `json:"killed"`     // the replica that led, by its URL
	Operation string  `json:"operation"`  // created through the other just before the kill
	StatusAt  string  `json:"status_at"`  // the operation's status just after the kill
	Seconds   float64 `json:"seconds"`    // from the kill to the operation's success
	RestartS  float64 `json:"restart_s"`  // the killed replica back, ready as a follower
	NewLeader string  `json:"new_leader"` // who leads after
}

// failoverMain measures failover (-failover N): two replicas that
// reconcile share -database and one state directory (the local engine's
// instances are this host's); N times, a tenant network is asked of the
// follower, the leader is killed with SIGKILL at once, and the time until
// that operation has succeeded, carried out by the replica left, is
// taken. The killed replica is started again as a follower each time.
func failoverMain(ctx context.Context, c config) int {
	rep, err := failover(ctx, c, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		return 1
	}
	return verdict(rep, rep.Pass, c.jsonOut)
}

func failover(ctx context.Context, c config, log io.Writer) (*failoverReport, error) {
	if c.database == "" {
		return nil, errors.New("-failover needs -database")
	}
	rep := &failoverReport{TargetS: c.maxFailover.Seconds()}
	var m report
	machine(&m)
	rep.Machine.CPUs, rep.Machine.CPU = m.Machine.CPUs, m.Machine.CPU
	bin, err := filepath.Abs(c.bin)
	if err != nil {
		return nil, err
	}
	state, err := os.MkdirTemp("", "holdfast-failover-")
	if err != nil {
		return nil, err
	}
	if c.keepState {
		fmt.Fprintln(log, "state directory:", state)
	} else {
		defer os.RemoveAll(state)
	}
	args := serveArgs{bin: bin, spec: c.spec, stateDir: state, database: c.database, reconcile: true, first: true}
	var reps [2]*server
	defer func() {
		for _, s := range reps {
			if s != nil {
				_, _, _ = s.stop(30 * time.Second)
			}
		}
		// The cloud's namespaces, bridges and rules are this host's:
		// take them down whatever happened.
		out, err := exec.Command(bin, "destroy", c.spec, "--yes", "--state-dir", state, "--database", c.database).CombinedOutput()
		if err != nil {
			fmt.Fprintf(log, "destroy: %v: %s\n", err, out)
		}
	}()
	// The second starts once the first has made the master key: sharing
	// the state directory, it reads the same.
	for i := range reps {
		if reps[i], err = startServer(ctx, args); err != nil {
			return nil, fmt.Errorf("replica %d: %w", i, err)
		}
		args.first = false
	}
	hc := pinnedClient([]string{reps[0].fingerprint, reps[1].fingerprint}, 4)
	defer hc.CloseIdleConnections()
	fmt.Fprintf(log, "two reconciling replicas at %s and %s; waiting for their first pass\n", reps[0].url, reps[1].url)
	for _, s := range reps {
		if err := s.waitReady(ctx, hc, 3*time.Minute); err != nil {
			return nil, err
		}
	}

	// A tenant's automation asks for the networks, with an API key.
	const tn = "ha"
	cl := &client{bases: []string{reps[0].url}, hc: hc}
	admin, err := cl.login(ctx, reps[0].user, reps[0].password)
	if err != nil {
		return nil, err
	}
	q := api.Quota{Instances: 1, VCPUs: 1, MemoryMiB: 1 << 10, DiskGiB: 16, Networks: 2*c.failoverRuns + 4}
	if err := cl.call(ctx, admin, http.MethodPost, "/v1/tenants", api.TenantCreate{Name: tn, Quota: &q}, nil, http.StatusCreated); err != nil {
		return nil, err
	}
	pw := rand.Text()
	if err := cl.call(ctx, admin, http.MethodPost, "/v1/tenants/"+tn+"/users?role="+api.RoleTenantAdmin,
		api.UserCreate{Name: "ha-admin", Password: pw}, nil, http.StatusCreated); err != nil {
		return nil, err
	}
	user, err := cl.login(ctx, "ha-admin", pw)
	if err != nil {
		return nil, err
	}
	key, err := cl.apiKey(ctx, user, "failover")
	if err != nil {
		return nil, err
	}

	for n := 0; len(rep.Runs) < c.failoverRuns; n++ {
		if n >= c.failoverRuns+3 {
			return nil, fmt.Errorf("%d runs discarded: the leader keeps finishing the operation before the kill", rep.Discarded)
		}
		leader, follower, err := roles(ctx, hc, reps, 30*time.Second)
		if err != nil {
			return nil, err
		}
		at := &client{bases: []string{reps[follower].url}, hc: hc}
		var op api.Operation
		if err := at.call(ctx, key, http.MethodPost, "/v1/tenants/"+tn+"/networks", api.NetworkCreate{Name: fmt.Sprintf("net%d", n)}, &op, http.StatusAccepted); err != nil {
			return nil, err
		}
		killed := reps[leader]
		start := time.Now()
		if err := killed.cmd.Process.Kill(); err != nil {
			return nil, fmt.Errorf("kill -9 the leader: %w", err)
		}
		<-killed.exited
		if err := at.call(ctx, key, http.MethodGet, "/v1/operations/"+op.ID, nil, &op, http.StatusOK); err != nil {
			return nil, err
		}
		run := failoverRun{Killed: killed.url, Operation: op.ID, StatusAt: op.Status}
		discard := op.Done()
		for !op.Done() {
			if time.Since(start) > 2*time.Minute {
				return nil, fmt.Errorf("operation %s still %s 2 min after the leader was killed", op.ID, op.Status)
			}
			if err := at.call(ctx, key, http.MethodGet, "/v1/operations/"+op.ID+"/wait?timeout=30s", nil, &op, http.StatusOK); err != nil {
				return nil, err
			}
		}
		run.Seconds = time.Since(start).Seconds()
		if op.Status != api.OpSucceeded {
			why := "no problem given"
			if op.Error != nil {
				why = op.Error.Error()
			}
			return nil, fmt.Errorf("operation %s (%s) failed after the failover: %s", op.ID, op.Kind, why)
		}
		if err := wantRole(ctx, hc, reps[follower], "leader"); err != nil {
			return nil, fmt.Errorf("after the failover: %w", err)
		}
		run.NewLeader = reps[follower].url

		restart := time.Now()
		if reps[leader], err = startServer(ctx, args); err != nil {
			return nil, fmt.Errorf("restart the killed replica: %w", err)
		}
		if err := reps[leader].waitReady(ctx, hc, 3*time.Minute); err != nil {
			return nil, err
		}
		run.RestartS = time.Since(restart).Seconds()
		if err := wantRole(ctx, hc, reps[leader], "follower"); err != nil {
			return nil, fmt.Errorf("the restarted replica: %w", err)
		}
		if discard {
			rep.Discarded++
			fmt.Fprintf(log, "  run discarded: operation %s was %s at the kill\n", op.ID, run.StatusAt)
			continue
		}
		rep.Runs = append(rep.Runs, run)
		fmt.Fprintf(log, "  run %d: killed the leader %s, operation %s (%s at the kill) succeeded through %s after %.2f s; restarted as a follower in %.2f s\n",
			len(rep.Runs), run.Killed, op.ID, run.StatusAt, run.NewLeader, run.Seconds, run.RestartS)
	}
	secs := make([]float64, len(rep.Runs))
	for i, r := range rep.Runs {
		secs[i] = r.Seconds
	}
	slices.Sort(secs)
	rep.MedianS = secs[len(secs)/2]
	if len(secs)%2 == 0 {
		rep.MedianS = (secs[len(secs)/2-1] + secs[len(secs)/2]) / 2
	}
	rep.Pass = rep.MedianS < rep.TargetS
	return rep, nil
}

// roles waits until one replica leads and the other follows, and says
// which is which.
func roles(ctx context.Context, hc *http.Client, reps [2]*server, within time.Duration) (leader, follower int, err error) {
	deadline := time.Now().Add(within)
	for {
		var got [2]string
		for i, s := range reps {
			if got[i], err = s.role(ctx, hc); err != nil {
				return 0, 0, err
			}
		}
		switch got {
		case [2]string{"leader", "follower"}:
			return 0, 1, nil
		case [2]string{"follower", "leader"}:
			return 1, 0, nil
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("roles %q, want one leader and one follower within %s", got, within)
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		}
	}
}

// wantRole fails unless the server says it is role.
func wantRole(ctx context.Context, hc *http.Client, s *server, role string) error {
	got, err := s.role(ctx, hc)
	if err != nil {
		return err
	}
	if got != role {
		return fmt.Errorf("%s is %q, want %q", s.url, got, role)
	}
	return nil
}

// role is what the server's /readyz says it is.
func (s *server) role(ctx context.Context, hc *http.Client) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/readyz", nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var h api.Health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return "", fmt.Errorf("%s/readyz: %w", s.url, err)
	}
	return h.Role, nil
}

func (r *failoverReport) print(w io.Writer) {
	fmt.Fprintf(w, "\nfailover, two reconciling replicas on one PostgreSQL, %d × %s\n", r.Machine.CPUs, r.Machine.CPU)
	for i, run := range r.Runs {
		fmt.Fprintf(w, "  run %d: %.2f s from kill -9 of the leader to the operation carried out by the other (%s at the kill)\n", i+1, run.Seconds, run.StatusAt)
	}
	if r.Discarded > 0 {
		fmt.Fprintf(w, "  %d runs discarded: the leader had finished the operation before it was killed\n", r.Discarded)
	}
	verdict := "ok  "
	if !r.Pass {
		verdict = "MISS"
	}
	fmt.Fprintf(w, "\n%s %-22s target %-28s measured %s\n", verdict, "failover median", fmt.Sprintf("< %.0f s", r.TargetS),
		fmt.Sprintf("%.2f s (%d runs)", r.MedianS, len(r.Runs)))
}
