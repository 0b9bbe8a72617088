package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/holdfast/holdfast/api"
)

// instanceName is the i-th instance populate makes; names sort in the
// order they are made, so page k of a walk holds instances k*limit on.
func instanceName(i int) string { return fmt.Sprintf("vm%05d", i) }

// populate creates n instances in tenant, workers at a time, reporting
// progress to w. With --no-reconcile they stay recorded and pending.
func populate(ctx context.Context, c *client, cr cred, tenant, network string, n, workers int, w io.Writer) (time.Duration, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	start := time.Now()
	next := atomic.Int64{}
	done := atomic.Int64{}
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				in := api.InstanceCreate{Name: instanceName(i), Flavor: "burstable", Template: "debian-12", Network: network}
				if err := c.call(ctx, cr, http.MethodPost, "/v1/tenants/"+tenant+"/instances", in, nil, http.StatusAccepted); err != nil {
					cancel(fmt.Errorf("instance %d of %d: %w", i+1, n, err))
					return
				}
				if d := done.Add(1); d%1000 == 0 || int(d) == n {
					el := time.Since(start)
					fmt.Fprintf(w, "  created %5d/%d instances in %5.1f s (%.0f/s)\n", d, n, el.Seconds(), float64(d)/el.Seconds())
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && int(done.Load()) != n {
		return 0, err
	}
	return time.Since(start), nil
}

// walk lists every instance of tenant, limit a page, walks times; it
// returns each page's latency and the cursors of the first walk. A walk
// that does not see want instances is an error.
func walk(ctx context.Context, c *client, cr cred, tenant string, limit, walks, want int) ([]time.Duration, []string, error) {
	var lats []time.Duration
	var cursors []string
	for w := range walks {
		cursor, seen := "", 0
		for {
			path := "/v1/tenants/" + tenant + "/instances?limit=" + strconv.Itoa(limit)
			if cursor != "" {
				path += "&cursor=" + url.QueryEscape(cursor)
			}
			b, took, err := c.get(ctx, cr, path)
			if err != nil {
				return nil, nil, fmt.Errorf("walk %d, page %d: %w", w+1, len(lats)+1, err)
			}
			lats = append(lats, took)
			var p api.Page[json.RawMessage]
			if err := json.Unmarshal(b, &p); err != nil {
				return nil, nil, fmt.Errorf("walk %d: %w", w+1, err)
			}
			seen += len(p.Items)
			if p.Next == "" {
				break
			}
			if w == 0 {
				cursors = append(cursors, p.Next)
			}
			cursor = p.Next
		}
		if seen != want {
			return nil, nil, fmt.Errorf("walk %d saw %d instances, want %d", w+1, seen, want)
		}
	}
	return lats, cursors, nil
}

// Request kinds of the constant-rate load.
const (
	kindGet  = iota // GET one instance
	kindList        // GET a page of instances at a cursor
	kindMe          // GET /v1/me
	kinds
)

var kindNames = [kinds]string{"get-instance", "list-page", "me"}

// parseMix reads "get=2,list=1,me=1" into a table to draw kinds from.
func parseMix(s string) ([]int, error) {
	var table []int
	for part := range strings.SplitSeq(s, ",") {
		name, weight, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(weight)
		if !ok || err != nil || n < 0 || n > 100 {
			return nil, fmt.Errorf("-mix %q: want name=weight (0-100), e.g. get=2,list=1,me=1", s)
		}
		k := slices.Index([]string{"get", "list", "me"}, name)
		if k < 0 {
			return nil, fmt.Errorf("-mix %q: %q is not get, list or me", s, name)
		}
		for range n {
			table = append(table, k)
		}
	}
	if len(table) == 0 {
		return nil, fmt.Errorf("-mix %q: all weights are 0", s)
	}
	return table, nil
}

// loadResult is what the constant-rate load measured. Latency runs from
// when a request was due to be sent, not when it was: a server that falls
// behind is charged for the queue it causes (no coordinated omission).
type loadResult struct {
	Rate         float64                `json:"rate_per_s"`
	Duration     float64                `json:"duration_s"`
	Connections  int                    `json:"connections"`
	Sent         int                    `json:"sent"`
	OK           int                    `json:"ok"`
	NonOK        map[string]int         `json:"non_2xx"`                // by status
	Transport    int                    `json:"transport_errors"`       // no answer
	Dropped      int                    `json:"dropped"`                // not sent: too many in flight
	FirstErrors  []string               `json:"first_errors,omitempty"` // the first of each kind
	Achieved     float64                `json:"achieved_per_s"`         // answered OK per second of the send window
	DrainMs      float64                `json:"drain_ms"`               // last answer after the end of the send window
	MaxLagMs     float64                `json:"max_send_lag_ms"`
	Latency      percentiles            `json:"latency"`
	ByKind       map[string]percentiles `json:"by_kind"`
	ServerCPU    float64                `json:"server_cpu_cores"`    // CPU time / wall time during the load
	GeneratorCPU float64                `json:"generator_cpu_cores"` // the load generator's own
	MachineCPU   machineCPU             `json:"machine_cpu"`         // every process's, and the hypervisor's steal
	Seconds      []second               `json:"seconds"`             // answered OK and slowest answer, by the second requests were due
}

// second is one second of the load.
type second struct {
	At    int     `json:"at_s"`
	OK    int     `json:"ok"`
	MaxMs float64 `json:"max_ms"`
}

// slowest returns up to n seconds with the slowest answers, slowest first.
func (r loadResult) slowest(n int) []second {
	s := slices.Clone(r.Seconds)
	sort.SliceStable(s, func(i, j int) bool { return s[i].MaxMs > s[j].MaxMs })
	return s[:min(n, len(s))]
}

func (r loadResult) errors() int { return r.Transport + r.Dropped + r.nonOK() }

func (r loadResult) nonOK() int {
	n := 0
	for _, v := range r.NonOK {
		n += v
	}
	return n
}

// openLoop sends rate requests a second for dur, each drawn from mix,
// whatever the answers: at most maxInFlight at once, beyond which a
// request is dropped and counted. n is how many instances there are,
// cursors the pages a list may start at.
func openLoop(ctx context.Context, c *client, cr cred, tenant string, n, limit int, cursors []string, mix []int, rate float64, dur time.Duration, maxInFlight int) loadResult {
	type sample struct {
		kind int
		sec  int // second of the load it was due in
		lat  time.Duration
	}
	var (
		mu       sync.Mutex
		samples  = make([]sample, 0, int(rate*dur.Seconds())+1)
		res      = loadResult{Rate: rate, Duration: dur.Seconds(), NonOK: map[string]int{}}
		lastDone time.Time
		wg       sync.WaitGroup
	)
	seen := map[string]bool{}
	fail := func(kind, msg string) { // the first error of each kind
		if !seen[kind] {
			seen[kind] = true
			res.FirstErrors = append(res.FirstErrors, msg)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2)) // the same sequence every run
	base := "/v1/tenants/" + tenant + "/instances"
	sem := make(chan struct{}, maxInFlight)
	interval := time.Duration(float64(time.Second) / rate)
	total := int(rate * dur.Seconds())
	start := time.Now()
	for i := range total {
		if ctx.Err() != nil {
			break
		}
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		} else if lag := float64(-d) / 1e6; lag > res.MaxLagMs {
			res.MaxLagMs = lag
		}
		kind := mix[rng.IntN(len(mix))]
		var path string
		switch kind {
		case kindGet:
			path = base + "/" + instanceName(rng.IntN(n))
		case kindList:
			path = base + "?limit=" + strconv.Itoa(limit)
			if k := rng.IntN(len(cursors) + 1); k > 0 {
				path += "&cursor=" + url.QueryEscape(cursors[k-1])
			}
		case kindMe:
			path = "/v1/me"
		}
		select {
		case sem <- struct{}{}:
		default:
			mu.Lock()
			res.Dropped++
			fail("dropped", fmt.Sprintf("dropped: %d requests already in flight", maxInFlight))
			mu.Unlock()
			continue
		}
		res.Sent++
		wg.Go(func() {
			defer func() { <-sem }()
			status, err := send(ctx, c, cr, path)
			now := time.Now()
			mu.Lock()
			defer mu.Unlock()
			lastDone = now
			switch {
			case err != nil:
				res.Transport++
				fail("transport", fmt.Sprintf("GET %s: %v", path, err))
			case status < 200 || status > 299:
				res.NonOK[strconv.Itoa(status)]++
				fail("status "+strconv.Itoa(status), fmt.Sprintf("GET %s: status %d", path, status))
			default:
				res.OK++
				samples = append(samples, sample{kind, int(due.Sub(start) / time.Second), now.Sub(due)})
			}
		})
	}
	wg.Wait()
	window := time.Duration(total) * interval
	res.Achieved = float64(res.OK) / window.Seconds()
	res.DrainMs = max(float64(lastDone.Sub(start.Add(window)))/1e6, 0)
	all := make([]time.Duration, len(samples))
	byKind := make([][]time.Duration, kinds)
	res.Seconds = make([]second, int(dur/time.Second)+1)
	for i, s := range samples {
		all[i] = s.lat
		byKind[s.kind] = append(byKind[s.kind], s.lat)
		sec := &res.Seconds[min(s.sec, len(res.Seconds)-1)]
		sec.OK++
		sec.MaxMs = max(sec.MaxMs, ms(s.lat))
	}
	for i := range res.Seconds {
		res.Seconds[i].At = i
	}
	res.Latency = percentilesOf(all)
	res.ByKind = map[string]percentiles{}
	for k, lats := range byKind {
		if len(lats) > 0 {
			res.ByKind[kindNames[k]] = percentilesOf(lats)
		}
	}
	return res
}

// send makes one signed GET and reads the answer to its end, so that the
// connection is reused.
func send(ctx context.Context, c *client, cr cred, path string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := c.newRequest(ctx, cr, http.MethodGet, path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, err
	}
	return resp.StatusCode, nil
}

// percentiles summarizes latencies, in milliseconds.
type percentiles struct {
	Count int     `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

func percentilesOf(ds []time.Duration) percentiles {
	if len(ds) == 0 {
		return percentiles{}
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	// The nearest-rank percentile: the smallest value that at least p of
	// the samples do not exceed.
	at := func(p float64) float64 {
		i := int(math.Ceil(float64(len(s))*p)) - 1
		return ms(s[min(max(i, 0), len(s)-1)])
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return percentiles{Count: len(s), Mean: ms(sum / time.Duration(len(s))), P50: at(0.50), P90: at(0.90), P99: at(0.99), P999: at(0.999), Max: ms(s[len(s)-1])}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
