package deploy_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/acmetest"
	"github.com/holdfast/holdfast/internal/compile"
	"github.com/holdfast/holdfast/internal/deploy"
	"github.com/holdfast/holdfast/internal/engine/local"
	"github.com/holdfast/holdfast/internal/engine/local/container"
	"github.com/holdfast/holdfast/internal/frontdoor"
	"github.com/holdfast/holdfast/internal/guest"
	"github.com/holdfast/holdfast/internal/nsthread"
	"github.com/holdfast/holdfast/internal/spec"
)

// internetDialer dials from the cloud's internet namespace, as a client
// on the internet would.
func internetDialer(cloud string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return nsDialer("/run/netns/" + local.InternetNS(cloud))
}

// nsDialer dials from the network namespace at ns: the socket is made
// there, and stays there whichever thread uses it.
func nsDialer(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := nsthread.In(ns, func() (err error) {
			d := net.Dialer{Timeout: time.Second}
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// webClient asks https://host/ at addr from the internet, trusting roots
// only; no connection is kept, so every request meets the front door anew.
func webClient(cloud, host string, addr netip.Addr, roots *x509.CertPool) *http.Client {
	dial := internetDialer(cloud)
	return &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: host},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return dial(ctx, network, netip.AddrPortFrom(addr, 443).String())
			},
		},
	}
}

// answer is one request through a front door: who answered (the
// responder's instance name), or what failed.
type answer struct {
	at      time.Time
	backend string
	status  int
	err     error
}

func get(c *http.Client, host string) answer {
	a := answer{}
	resp, err := c.Get("https://" + host + "/")
	a.at = time.Now()
	if err != nil {
		a.err = err
		return a
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	a.status = resp.StatusCode
	if f := strings.Fields(string(b)); resp.StatusCode == http.StatusOK && len(f) == 3 && f[0] == "holdfast" {
		a.backend = f[1]
	}
	return a
}

// recorder asks a front door continuously and keeps every answer.
type recorder struct {
	mu      sync.Mutex
	answers []answer
	stop    chan struct{}
	done    chan struct{}
}

func record(c *http.Client, host string) *recorder {
	r := &recorder{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			a := get(c, host)
			r.mu.Lock()
			r.answers = append(r.answers, a)
			r.mu.Unlock()
			select {
			case <-r.stop:
				return
			case <-time.After(20 * time.Millisecond): // the pace of a client, not synchronisation
			}
		}
	}()
	return r
}

func (r *recorder) finish() []answer {
	close(r.stop)
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.answers
}

// firstFrom is when backend first answered at or after since.
func (r *recorder) firstFrom(backend string, since time.Time) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.answers {
		if !a.at.Before(since) && a.backend == backend {
			return a.at, true
		}
	}
	return time.Time{}, false
}

// worstOutage is the longest run of failed requests in answers, from the
// last success before it to the first after it.
func worstOutage(answers []answer) time.Duration {
	var worst time.Duration
	var lastOK time.Time
	failing := false
	for _, a := range answers {
		ok := a.err == nil && a.status == http.StatusOK
		switch {
		case ok && failing:
			worst = max(worst, a.at.Sub(lastOK))
			failing = false
			lastOK = a.at
		case ok:
			lastOK = a.at
		case !lastOK.IsZero():
			failing = true
		}
	}
	return worst
}

// TestZcloudFrontDoor is the VM map's front end on the local engine: from
// the internet, https://app.zcloud.example/ through provider A's public
// address is served by zpod-a with a certificate a real ACME server
// (pebble) issued; with zpod-a powered off, or its process killed,
// provider A's front door answers from zpod-b across the sites within 3 s,
// and from zpod-a again within 3 s of its return; with A's front end
// killed, B's serves on; the sites' SSH answers and other ports are
// dropped; and a route whose backends are all down answers 502 at once.
func TestZcloudFrontDoor(t *testing.T) {
	needRoot(t)
	specDir := copyExample(t, "../../examples/zcloud")
	cloud, stateDir := testCloud("zfd"), t.TempDir()
	c := applied(t, specDir, cloud, stateDir)
	st := c.Desired
	c.Close()
	host := "app.zcloud.example"
	addrA, err := local.SiteAddress(st, "provider-a")
	if err != nil {
		t.Fatal(err)
	}
	addrB, err := local.SiteAddress(st, "provider-b")
	if err != nil {
		t.Fatal(err)
	}

	// The ACME server on the internet, resolving the hostname to provider
	// A's address: B's order is validated there too, and A's front door
	// passes the challenge to B's.
	inet := local.InternetNS(cloud)
	var pc net.PacketConn
	if err := nsthread.In("/run/netns/"+inet, func() (err error) {
		pc, err = net.ListenPacket("udp", netip.AddrPortFrom(local.InternetHost, 8053).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	acmetest.ServeDNS(t, pc, map[string]netip.Addr{host: addrA})
	pebble := acmetest.Start(t, acmetest.Options{
		Addr: netip.AddrPortFrom(local.InternetHost, 14000).String(), MgmtAddr: netip.AddrPortFrom(local.InternetHost, 15000).String(),
		HTTPPort: 80, TLSPort: 443, DNSServer: pc.LocalAddr().String(), Netns: inet,
	})
	if err := os.WriteFile(filepath.Join(specDir, "acme-roots.pem"), []byte(pebble.TLSRoots), 0o600); err != nil {
		t.Fatal(err)
	}
	appendFile(t, filepath.Join(specDir, "cloud.yaml"), "\nacme:\n  directory: "+pebble.Directory+"\n  email: ops@zcloud.example\n  ca-roots: acme-roots.pem\n")
	reapply(t, specDir, cloud, stateDir)
	serveGuest(t, stateDir, cloud)
	roots := pebble.IssuerRoots(t)
	viaA, viaB := webClient(cloud, host, addrA, roots), webClient(cloud, host, addrB, roots)

	// Each site's certificate comes from pebble, for the name.
	for _, s := range []struct {
		client *http.Client
		want   string
	}{{viaA, "zpod-a"}, {viaB, "zpod-b"}} {
		waitFor(t, 90*time.Second, "https://"+host+"/ to be served by "+s.want, func() []string {
			if a := get(s.client, host); a.backend != s.want {
				return []string{fmt.Sprintf("backend %q, status %d, err %v", a.backend, a.status, a.err)}
			}
			return nil
		})
	}
	resp, err := viaA.Get("https://" + host + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	leaf := resp.TLS.PeerCertificates[0]
	if err := leaf.VerifyHostname(host); err != nil || !strings.Contains(leaf.Issuer.CommonName, "Pebble") {
		t.Fatalf("certificate for %v from %q: %v", leaf.DNSNames, leaf.Issuer.CommonName, err)
	}
	t.Logf("provider A's certificate: %v, issued by %q until %s", leaf.DNSNames, leaf.Issuer.CommonName, leaf.NotAfter.Format(time.DateOnly))

	t.Run("ingress", func(t *testing.T) {
		dial := internetDialer(cloud)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		conn, err := dial(ctx, "tcp", netip.AddrPortFrom(addrA, 22).String())
		if err != nil {
			t.Fatalf("the site's SSH: %v", err)
		}
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if !strings.HasPrefix(line, "holdfast edge 22") {
			t.Fatalf("the site's SSH answered %q (%v), want the node's", line, err)
		}
		// zpod's 8080 is served, but not forwarded: dropped, not refused.
		_, err = dial(ctx, "tcp", netip.AddrPortFrom(addrA, 8080).String())
		var ne net.Error
		if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("port 8080 of the site's address: %v, want a timeout (dropped)", err)
		}
	})

	t.Run("route health in the front end's report", func(t *testing.T) {
		reports := guest.NewReports(stateDir, cloud)
		waitFor(t, 30*time.Second, "zfront-a to report its route", func() []string {
			rep, ok, err := reports.Get(compile.InstanceID("provider-a", "zfront-a"))
			if err != nil || !ok || len(rep.Routes) != 1 || !rep.Services["frontdoor"].OK {
				b, _ := json.Marshal(rep)
				return []string{fmt.Sprintf("%s (%v)", b, err)}
			}
			return nil
		})
		// holdfast status shows it on the route.
		c, diags, err := deploy.Open(specDir, deploy.Options{StateDir: stateDir, Rename: cloud})
		if err != nil {
			t.Fatalf("%v\n%v", err, spec.ErrorList(diags.Errors()))
		}
		status, err := c.Status(context.Background())
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range status {
			// The edges' tables, their dnat chains too, are as applied.
			if s.State != "ok" {
				t.Errorf("%s: %s %v", s.ID, s.State, s.Drift)
			}
		}
		for _, s := range status {
			if s.ID == compile.RouteID("provider-a", "app-at-a") {
				if len(s.Frontends) != 1 || s.Frontends[0].State != "ok" || s.Frontends[0].Detail != "app.zcloud.example: 1/1 up" {
					t.Fatalf("status of the route: %+v", s.Frontends)
				}
				return
			}
		}
		t.Fatal("status has no route app-at-a")
	})

	t.Run("metrics", func(t *testing.T) {
		// From inside the front end: no flow opens the port to others.
		c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: nsDialer("/run/netns/" + local.InstanceNS(cloud, "zfront-a"))}}
		resp, err := c.Get("http://127.0.0.1:" + strconv.Itoa(guest.MetricsPort) + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		body := string(b)
		for _, want := range []string{`holdfast_frontdoor_requests_total{code="200",route="app-at-a"}`, `holdfast_frontdoor_request_duration_seconds_count{route="app-at-a"}`,
			`holdfast_frontdoor_backend_up{backend="` + instanceOf(t, st, "zpod-a").IP + `:8080",failover="false",route="app-at-a"} 1`} {
			if !strings.Contains(body, want) {
				t.Errorf("zfront-a's metrics lack %s", want)
			}
		}
	})

	engineDir := filepath.Join(stateDir, cloud, "local")
	failover := func(t *testing.T, stop func(), start func()) {
		t.Helper()
		rec := record(viaA, host)
		if _, ok := waitAnswer(t, rec, "zpod-a", time.Now()); !ok {
			t.Fatal("zpod-a never answered before the stop")
		}
		stopped := time.Now()
		stop()
		atB, ok := waitAnswer(t, rec, "zpod-b", stopped)
		if !ok {
			t.Fatal("zpod-b never answered after zpod-a stopped")
		}
		started := time.Now()
		start()
		atA, ok := waitAnswer(t, rec, "zpod-a", started)
		answers := rec.finish()
		if !ok {
			t.Fatal("zpod-a never answered after its start")
		}
		lastA := stopped
		for _, a := range answers {
			if a.backend == "zpod-a" && a.at.Before(atB) {
				lastA = a.at
			}
		}
		worst := worstOutage(answers)
		t.Logf("last answer from zpod-a to the first from zpod-b: %s; zpod-a's start to its first answer: %s; longest outage: %s (%d requests)",
			atB.Sub(lastA).Round(time.Millisecond), atA.Sub(started).Round(time.Millisecond), worst.Round(time.Millisecond), len(answers))
		if d := atB.Sub(lastA); d > 3*time.Second {
			t.Errorf("zpod-b answered %s after zpod-a's last answer, want within 3 s", d)
		}
		if d := atA.Sub(started); d > 3*time.Second {
			t.Errorf("zpod-a answered %s after its start, want within 3 s", d)
		}
		if worst > 3*time.Second {
			t.Errorf("requests failed for %s in a row, want at most 3 s", worst)
		}
	}
	instances := filepath.Join(specDir, "instances.yaml")
	zpodA := "    depends-on: [zstore-a, zfront-a]   # \"Depends on zStore and zFront at runtime\"\n"
	t.Run("zpod-a powered off through the spec", func(t *testing.T) {
		failover(t, func() {
			edit(t, instances, zpodA, zpodA+"    power: stopped\n")
			reapply(t, specDir, cloud, stateDir)
		}, func() {
			edit(t, instances, zpodA+"    power: stopped\n", zpodA)
			reapply(t, specDir, cloud, stateDir)
		})
	})
	t.Run("zpod-a's process killed", func(t *testing.T) {
		failover(t, func() { killInit(t, engineDir, "zpod-a") }, func() { reapply(t, specDir, cloud, stateDir) })
	})
	t.Run("provider A's front end killed", func(t *testing.T) {
		killInit(t, engineDir, "zfront-a")
		if a := get(viaA, host); a.err == nil {
			t.Fatalf("provider A's front door still answers (%s) with its front end killed", a.backend)
		}
		for range 5 {
			if a := get(viaB, host); a.backend != "zpod-b" {
				t.Fatalf("provider B's front door: backend %q, status %d, err %v", a.backend, a.status, a.err)
			}
		}
	})
	t.Run("every backend down: 502 at once", func(t *testing.T) {
		killInit(t, engineDir, "zpod-a")
		killInit(t, engineDir, "zpod-b")
		start := time.Now()
		resp, err := viaB.Get("https://" + host + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(resp.Header.Get("Content-Type"), "problem+json") || !strings.Contains(string(body), "app-at-b") {
			t.Fatalf("%d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
		if took > 1500*time.Millisecond {
			t.Fatalf("the 502 took %s", took)
		}
		t.Logf("every backend down: %d in %s: %s", resp.StatusCode, took.Round(time.Millisecond), body)
	})
}

// waitAnswer waits up to 15 s for backend to answer at or after since.
func waitAnswer(t *testing.T, rec *recorder, backend string, since time.Time) (time.Time, bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if at, ok := rec.firstFrom(backend, since); ok {
			return at, true
		}
		time.Sleep(50 * time.Millisecond) // polling the recorder, which has no event to wait on
	}
	return time.Time{}, false
}

// killInit kills an instance's container init (and with it all it runs),
// as a crash would.
func killInit(t *testing.T, engineDir, instance string) {
	t.Helper()
	s, err := container.Inspect(local.InstanceDir(engineDir, instance))
	if err != nil || !s.Running {
		t.Fatalf("%s is not running (%+v, %v)", instance, s, err)
	}
	if err := syscall.Kill(s.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Inspect calls the instance stopped once its init is exiting; its
	// other processes (the agent) go a moment later, as the kernel tears
	// the PID namespace down. Wait until none is left in its network.
	cloud := filepath.Base(filepath.Dir(engineDir)) // <state>/<cloud>/local
	waitFor(t, 10*time.Second, instance+"'s processes to die", func() []string {
		out, err := exec.Command("ip", "netns", "pids", local.InstanceNS(cloud, instance)).CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			return []string{fmt.Sprintf("still running: %q (%v)", out, err)}
		}
		return nil
	})
}

// waitFrontDoors waits until every front end's agent reports its front
// door (listening on its routes' ports, whether or not its certificates
// are there yet).
func waitFrontDoors(t *testing.T, stateDir string, st *compile.State) {
	t.Helper()
	reports := guest.NewReports(stateDir, st.Cloud)
	waitFor(t, 60*time.Second, "the front ends to serve their routes", func() []string {
		var missing []string
		for _, r := range st.Routes {
			for _, fe := range r.Frontends {
				rep, ok, err := reports.Get(compile.InstanceID(r.Site, fe))
				if err != nil || !ok || !slices.ContainsFunc(rep.Routes, func(h frontdoor.RouteHealth) bool { return h.Name == r.Name }) {
					missing = append(missing, fmt.Sprintf("%s of %s: %+v (%v)", fe, r.Name, rep.Health, err))
				}
			}
		}
		return missing
	})
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

// TestTasmanianFrontDoor is Tasmanian Cloud's HAProxy edge pair on the
// local engine, with the operator's certificate (Cloudflare's origin
// certificate, in production): each of edge-1 and edge-2 serves
// panel.tasmanian.cloud, s3.tasmanian.cloud and status.tasmanian.cloud
// from their backends on its own, and goes on with the other one killed.
func TestTasmanianFrontDoor(t *testing.T) {
	needRoot(t)
	specDir := copyExample(t, "../../examples/tasmanian")
	hosts := map[string]string{"panel.tasmanian.cloud": "panel", "s3.tasmanian.cloud": "rustfs", "status.tasmanian.cloud": "uptime-kuma"}
	roots := writeCertificate(t, specDir, "origin", slices.Collect(maps.Keys(hosts)))
	for _, h := range slices.Sorted(maps.Keys(hosts)) {
		edit(t, filepath.Join(specDir, "routes.yaml"), "    host: "+h, "    host: "+h+"\n    certificate: {cert-file: origin.pem, key-file: origin.key}")
	}
	cloud, stateDir := testCloud("tfd"), t.TempDir()
	c := applied(t, specDir, cloud, stateDir)
	st := c.Desired
	c.Close()
	serveGuest(t, stateDir, cloud)

	serves := func(edge string) []string {
		ip := netip.MustParseAddr(instanceOf(t, st, edge).IP)
		var wrong []string
		for _, h := range slices.Sorted(maps.Keys(hosts)) {
			if a := get(webClient(cloud, h, ip, roots), h); a.backend != hosts[h] {
				wrong = append(wrong, fmt.Sprintf("%s at %s: backend %q, status %d, err %v", h, edge, a.backend, a.status, a.err))
			}
		}
		return wrong
	}
	for _, edge := range []string{"edge-1", "edge-2"} {
		waitFor(t, 60*time.Second, edge+" to serve the three hostnames", func() []string { return serves(edge) })
	}
	killInit(t, filepath.Join(stateDir, cloud, "local"), "edge-1")
	if wrong := serves("edge-2"); len(wrong) > 0 {
		t.Fatalf("with edge-1 killed:\n%s", strings.Join(wrong, "\n"))
	}
}

// writeCertificate makes a CA and a certificate it signs for names,
// written as dir/name.pem and dir/name.key, and returns the CA as a pool.
func writeCertificate(t *testing.T, dir, name string, names []string) *x509.CertPool {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test origin CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return pool
}
