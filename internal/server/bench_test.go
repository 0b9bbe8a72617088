package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/auth"
	"github.com/holdfast/holdfast/internal/tenant"
)

// The control plane's targets (docs/performance.md, "Control plane"): a
// page of 100 of a tenant's 10,000 instances in under 20 ms at p99, and
// 1,000 authenticated requests a second. These benchmarks send requests
// through the whole handler chain over loopback TLS, signed with the
// operator's API key, one at a time (GetInstance/.../parallel: 64 at
// once); bench/serve.sh measures the built binary under load.
//
//	go test -run '^$' -bench . -benchtime 2000x ./internal/server/
//	go test -run '^$' -bench ListInstancesPage -benchtime 2000x -cpuprofile cpu.out ./internal/server/
//	go test -run '^$' -bench GetInstance/instances=10000/parallel -benchtime 10000x -blockprofile block.out ./internal/server/

// benchEnv is a test env with the operator's API key and a tenant
// "bench" with a network "net".
type benchEnv struct {
	*env
	key cred
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	e := &benchEnv{env: newEnv(b, Config{})}
	e.key = e.apiKey(e.admin)
	q := api.Quota{Instances: 100000, VCPUs: 100000, MemoryMiB: 1 << 40, DiskGiB: 1 << 30, Networks: 1}
	e.must(e.key, http.StatusCreated, "POST", "/v1/tenants", api.TenantCreate{Name: "bench", Quota: &q}, nil)
	e.must(e.key, http.StatusAccepted, "POST", "/v1/tenants/bench/networks", api.NetworkCreate{Name: "net"}, nil)
	return e
}

// instances records n instances of tenant bench straight into the store,
// as the API would (pending: no reconciler runs), in one transaction.
func (e *benchEnv) instances(b *testing.B, n int) {
	b.Helper()
	err := e.s.db.Do(context.Background(), func(tx *tenant.Tx) error {
		tr, err := tx.Tenant("bench")
		if err != nil {
			return err
		}
		for i := range n {
			r := tenant.InstanceRecord{Image: "debian-12", Keys: []tenant.Key{}}
			r.Name, r.Project, r.Network, r.Power, r.Template = fmt.Sprintf("vm%05d", i), "default", "net", "running", "debian-12"
			r.Flavor, r.CPUs, r.MemoryMiB, r.DiskGiB = "burstable", 1, 256, 8
			if _, err := tx.CreateInstance(tr, r); err != nil {
				return fmt.Errorf("instance %d: %w", i, err)
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// get sends a GET signed with c's API key and returns the body. Unlike
// env.do it reports to tb, so that parallel benchmarks can use it.
func (e *benchEnv) get(tb testing.TB, c cred, path string) []byte {
	req, err := http.NewRequest(http.MethodGet, e.ts.URL+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if err := auth.SignRequest(req, nil, c.keyID, c.keySecret, e.clock.now()); err != nil {
		tb.Fatal(err)
	}
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s: status %d: %s", path, resp.StatusCode, b)
	}
	return b
}

// reportLatency adds percentiles of the per-request latencies to the
// benchmark's figures.
func reportLatency(b *testing.B, lats []time.Duration) {
	if len(lats) == 0 {
		return
	}
	slices.Sort(lats)
	at := func(p float64) float64 { // nearest rank
		i := int(math.Ceil(float64(len(lats))*p)) - 1
		return float64(lats[max(i, 0)]) / 1e6
	}
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}

// BenchmarkListInstancesPage lists a tenant's 10,000 instances a page of
// 100 at a time, signed with an API key, walking the whole list over and
// over; each op is one page.
func BenchmarkListInstancesPage(b *testing.B) {
	const n, limit = 10000, 100
	e := newBenchEnv(b)
	e.instances(b, n)
	var lats []time.Duration
	cursor, seen := "", 0
	for b.Loop() {
		path := fmt.Sprintf("/v1/tenants/bench/instances?limit=%d", limit)
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		start := time.Now()
		body := e.get(b, e.key, path)
		lats = append(lats, time.Since(start))
		var p api.Page[json.RawMessage]
		if err := json.Unmarshal(body, &p); err != nil {
			b.Fatal(err)
		}
		seen += len(p.Items)
		cursor = p.Next
		if cursor == "" {
			if seen != n {
				b.Fatalf("a walk saw %d instances, want %d", seen, n)
			}
			seen = 0
		}
	}
	reportLatency(b, lats)
}

// BenchmarkSignedGet is the cheapest authenticated request: GET /v1/me
// signed with an API key (a fresh nonce each time), the signature checked
// against the cached key.
func BenchmarkSignedGet(b *testing.B) {
	e := newBenchEnv(b)
	var lats []time.Duration
	for b.Loop() {
		start := time.Now()
		e.get(b, e.key, "/v1/me")
		lats = append(lats, time.Since(start))
	}
	reportLatency(b, lats)
}

// BenchmarkGetInstance reads one instance of a tenant that holds 1 or
// 10,000: the cost of a request under a tenant should not grow with what
// the tenant holds. serial sends one request at a time; parallel keeps
// 64 in flight over keep-alive connections, as a busy portal would (its
// block profile shows what requests wait for).
func BenchmarkGetInstance(b *testing.B) {
	for _, n := range []int{1, 10000} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			e := newBenchEnv(b)
			e.instances(b, n)
			b.Run("serial", func(b *testing.B) {
				var lats []time.Duration
				i := 0
				for b.Loop() {
					start := time.Now()
					e.get(b, e.key, fmt.Sprintf("/v1/tenants/bench/instances/vm%05d", i%n))
					lats = append(lats, time.Since(start))
					i++
				}
				reportLatency(b, lats)
			})
			b.Run("parallel", func(b *testing.B) {
				e.ts.Client().Transport.(*http.Transport).MaxIdleConnsPerHost = 64
				b.SetParallelism(64 / runtime.GOMAXPROCS(0))
				var i atomic.Int64
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						e.get(b, e.key, fmt.Sprintf("/v1/tenants/bench/instances/vm%05d", int(i.Add(1))%n))
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
			})
		})
	}
}
