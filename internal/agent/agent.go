package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/holdfast/holdfast/internal/atomicfile"
	"github.com/holdfast/holdfast/internal/dhcp"
	"github.com/holdfast/holdfast/internal/frontdoor"
	"github.com/holdfast/holdfast/internal/guest"
	"github.com/holdfast/holdfast/internal/overlay/mesh"
)

// EnvConfig, set in its environment, makes a holdfast process the agent
// with the settings file it names, whatever its arguments: the local
// engine's container init starts the agent so (container.Config.Agent),
// from its own program, which may be a test binary importing this package.
const EnvConfig = "HOLDFAST_AGENT_CONFIG"

func init() {
	path := os.Getenv(EnvConfig)
	if path == "" {
		return
	}
	os.Unsetenv(EnvConfig) // nothing the agent starts is an agent
	os.Exit(Main(path, "", os.Stderr))
}

// Main runs the agent with the settings at path until SIGTERM, logging to
// w, and returns the process's exit code.
func Main(path, version string, w io.Writer) int {
	log := slog.New(slog.NewTextHandler(w, nil))
	s, err := guest.ReadAgentSettings(path)
	if err != nil {
		log.Error("agent settings", "err", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := Run(ctx, s, version, log); err != nil {
		log.Error("agent", "err", err)
		return 1
	}
	return 0
}

// cacheFile is where the last configuration applied is kept (it holds
// the overlay member's key: 0600, in a 0700 directory).
const cacheFile = "config.json"

// Agent is one running agent.
type Agent struct {
	s       guest.AgentSettings
	version string
	log     *slog.Logger
	client  *http.Client
	base    string // the server's base URL

	tokenMu sync.Mutex
	token   string // read from TokenFile when empty

	// Owned by the poller goroutine.
	etag, polled string // the version last received

	// Owned by Run's loop.
	applied guest.Config
	node    *mesh.Node
	// dnsMu guards dns and leaseHosts: the DHCP server reports leases
	// from its own goroutine.
	dnsMu      sync.Mutex
	dns        *dnsService
	leaseHosts []leaseName
	dhcp       *dhcp.Server
	dhcpFile   string
	door       *frontdoor.Server
	// fetchProblem is why the last request for the configuration failed;
	// applyProblems what went wrong applying the last one.
	fetchProblem  string
	applyProblems []string
}

// polled is one answer of the guest service, or why there was none.
type polled struct {
	config  guest.Config
	changed bool
	err     error
}

// Run is the agent's loop: apply the kept configuration, then apply each
// new one the guest service hands out (as soon as an apply makes it), and
// report health every interval; until ctx ends, when the overlay is
// stopped.
func Run(ctx context.Context, s guest.AgentSettings, version string, log *slog.Logger) error {
	a, err := newAgent(s, version, log)
	if err != nil {
		return err
	}
	defer a.stop()
	if err := os.MkdirAll(s.StateDir, 0o700); err != nil {
		return err
	}
	if c, ok := a.readCache(); ok {
		a.log.Info("applying the last configuration until the server answers", "version", c.Version())
		a.apply(ctx, c)
		a.polled = c.Version() // the server's first answer changes nothing
	}
	every := time.Duration(s.Interval)
	if every <= 0 {
		every = guest.DefaultInterval
	}
	// The poller waits at the guest service for each new configuration
	// (a long poll); the loop applies what it brings and reports health
	// on its own beat meanwhile.
	results := make(chan polled)
	if s.ConfigFile != "" {
		go a.watch(ctx, results)
	} else {
		go a.poll(ctx, every, results)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	report := func() {
		if err := a.report(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("reporting health", "err", err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case res := <-results:
			a.fetchProblem = ""
			switch {
			case res.err != nil:
				a.fetchProblem = res.err.Error()
			case res.changed:
				a.log.Info("configuration changed", "version", res.config.Version())
				a.apply(ctx, res.config)
				if err := a.writeCache(res.config); err != nil {
					a.applyProblems = append(a.applyProblems, "keeping the configuration: "+err.Error())
				}
			}
			report()
		case <-t.C:
			if a.applied.Overlay != nil && a.node == nil || a.applied.DNS != nil && !a.dnsUp() || a.applied.DHCP != nil && a.dhcp == nil {
				a.apply(ctx, a.applied) // a service failed to start: try again
			}
			report()
		case <-a.nodeDone():
			a.log.Warn("the overlay stopped; starting it again", "err", a.node.Err())
			a.node = nil
			a.apply(ctx, a.applied)
		}
	}
}

// poll asks for the configuration again and again, each request waiting
// at the server for a change, and hands every answer to out; after a
// failure it waits every before asking again.
func (a *Agent) poll(ctx context.Context, every time.Duration, out chan<- polled) {
	for {
		c, changed, err := a.fetch(ctx)
		if ctx.Err() != nil {
			return
		}
		select {
		case out <- polled{config: c, changed: changed, err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			select {
			case <-time.After(every):
			case <-ctx.Done():
				return
			}
		}
	}
}

// watch reads the configuration file whenever it changes (its size or
// modification time, looked at every filePoll) and hands each new one to
// out.
func (a *Agent) watch(ctx context.Context, out chan<- polled) {
	t := time.NewTicker(filePoll)
	defer t.Stop()
	seen := ""
	for {
		if fi, err := os.Stat(a.s.ConfigFile); err == nil {
			if now := fmt.Sprintf("%d.%d", fi.ModTime().UnixNano(), fi.Size()); now != seen {
				seen = now
				var res polled
				b, err := os.ReadFile(a.s.ConfigFile)
				if err == nil {
					err = json.Unmarshal(b, &res.config)
				}
				if err != nil {
					res.err = fmt.Errorf("configuration file: %w", err)
				} else {
					res.changed = res.config.Version() != a.polled
					a.polled = res.config.Version()
				}
				select {
				case out <- res:
				case <-ctx.Done():
					return
				}
			}
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// filePoll is how often a configuration file is looked at: a change
// takes effect well within the two seconds an apply allows.
const filePoll = 200 * time.Millisecond

func newAgent(s guest.AgentSettings, version string, log *slog.Logger) (*Agent, error) {
	if s.ConfigFile != "" {
		return &Agent{s: s, version: version, log: log}, nil
	}
	u, err := url.Parse(s.Server)
	if err != nil {
		return nil, err
	}
	a := &Agent{s: s, version: version, log: log}
	tr := &http.Transport{ResponseHeaderTimeout: 30 * time.Second, MaxIdleConns: 1}
	if u.Scheme == "unix" {
		sock := u.Path
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}
		a.base = "http://guest"
	} else {
		a.base = strings.TrimSuffix(s.Server, "/")
	}
	a.client = &http.Client{Transport: tr, Timeout: 60 * time.Second}
	return a, nil
}

func (a *Agent) nodeDone() <-chan struct{} {
	if a.node == nil {
		return nil
	}
	return a.node.Done()
}

// errRefused is the server refusing the agent's token.
var errRefused = errors.New("the guest service refuses this instance's token (rotated? the engine delivers the new one on apply)")

// fetch asks for the configuration; changed is false when it is the one
// applied.
func (a *Agent) fetch(ctx context.Context) (guest.Config, bool, error) {
	token, err := a.currentToken()
	if err != nil {
		return guest.Config{}, false, err
	}
	url := a.base + "/v1/agent/config"
	if a.etag != "" {
		// Holding a configuration, wait at the server for the next one:
		// an apply reaches the instance at once.
		url += "?wait=" + guest.MaxWait.String()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return guest.Config{}, false, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if a.etag != "" {
		req.Header.Set("If-None-Match", a.etag)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return guest.Config{}, false, fmt.Errorf("the guest service is out of reach: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		return guest.Config{}, false, nil
	case http.StatusOK:
	case http.StatusUnauthorized:
		// Read the file again: a rotated token arrives there. Ask without
		// waiting next time, so that the new token is proven (and the
		// health reported) at once.
		a.dropToken()
		a.etag = ""
		return guest.Config{}, false, errRefused
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return guest.Config{}, false, fmt.Errorf("the guest service answered %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	var c guest.Config
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&c); err != nil {
		return guest.Config{}, false, fmt.Errorf("configuration: %w", err)
	}
	a.etag = resp.Header.Get("ETag")
	changed := c.Version() != a.polled
	a.polled = c.Version()
	return c, changed, nil
}

// currentToken is the token in hand, read from the token file when there
// is none.
func (a *Agent) currentToken() (string, error) {
	a.tokenMu.Lock()
	defer a.tokenMu.Unlock()
	if a.token != "" {
		return a.token, nil
	}
	b, err := os.ReadFile(a.s.TokenFile)
	if err != nil {
		return "", fmt.Errorf("token: %w", err)
	}
	a.token = strings.TrimSpace(string(b))
	if a.token == "" {
		return "", fmt.Errorf("token: %s is empty", a.s.TokenFile)
	}
	return a.token, nil
}

// dropToken forgets the token in hand (the service refused it).
func (a *Agent) dropToken() {
	a.tokenMu.Lock()
	a.token = ""
	a.tokenMu.Unlock()
}

// apply brings the instance's services to c.
func (a *Agent) apply(ctx context.Context, c guest.Config) {
	a.applied, a.applyProblems = c, nil
	if err := a.applyOverlay(ctx, c.Overlay); err != nil {
		a.applyProblems = append(a.applyProblems, "overlay: "+err.Error())
		a.log.Error("overlay", "err", err)
	}
	if err := a.applyDNS(ctx, c.DNS); err != nil {
		a.applyProblems = append(a.applyProblems, "dns: "+err.Error())
		a.log.Error("dns", "err", err)
	}
	if err := a.applyDHCP(c.DHCP); err != nil {
		a.applyProblems = append(a.applyProblems, "dhcp: "+err.Error())
		a.log.Error("dhcp", "err", err)
	}
	if err := a.applyFrontDoor(ctx, c.FrontDoor); err != nil {
		a.applyProblems = append(a.applyProblems, "front door: "+err.Error())
		a.log.Error("front door", "err", err)
	}
}

func (a *Agent) applyOverlay(ctx context.Context, o *guest.OverlayConfig) error {
	if o == nil {
		if a.node != nil {
			a.log.Info("no longer an overlay member: stopping Nebula")
			a.node.Stop()
			a.node = nil
		}
		return nil
	}
	yaml := []byte(o.Nebula)
	if a.node != nil {
		err := a.node.Reload(yaml)
		if err == nil {
			return nil
		}
		if !errors.Is(err, mesh.ErrRestartNeeded) {
			return err
		}
		a.log.Info("restarting Nebula for a change it cannot reload")
		a.node.Stop()
		a.node = nil
	}
	n, err := mesh.Start(ctx, yaml, a.log.With("service", "overlay"))
	if err != nil {
		return err
	}
	a.node = n
	return nil
}

func (a *Agent) stop() {
	if a.node != nil {
		a.node.Stop()
		a.node = nil
	}
	a.stopDHCP()
	a.stopDNS()
	a.stopFrontDoor()
}

// health is what the agent reports now.
func (a *Agent) health() guest.Health {
	h := guest.Health{Version: a.version, Config: a.applied.Version(), Problems: slices.Clone(a.applyProblems)}
	if a.fetchProblem != "" {
		h.Problems = append(h.Problems, a.fetchProblem)
	}
	h.Services = map[string]guest.Service{}
	if a.applied.Overlay != nil {
		h.Services["overlay"] = overlayHealth(a.node)
	}
	if a.applied.DNS != nil {
		h.Services["dns"] = a.dnsHealth()
	}
	if a.applied.DHCP != nil {
		h.Services["dhcp"] = a.dhcpHealth()
	}
	if a.applied.FrontDoor != nil {
		h.Services["frontdoor"], h.Routes = a.frontDoorHealth()
	}
	if len(h.Services) == 0 {
		h.Services = nil
	}
	return h
}

func overlayHealth(n *mesh.Node) guest.Service {
	if n == nil {
		return guest.Service{Detail: "Nebula is not running"}
	}
	h := n.Health()
	if !h.Running {
		return guest.Service{Detail: "Nebula is not running"}
	}
	d := fmt.Sprintf("%d tunnels", len(h.Peers))
	if h.Handshaking > 0 {
		d += fmt.Sprintf(", %d being set up", h.Handshaking)
	}
	if !h.CertExpires.IsZero() {
		d += ", certificate until " + h.CertExpires.UTC().Format(time.DateOnly)
	}
	return guest.Service{OK: true, Detail: d}
}

func (a *Agent) report(ctx context.Context) error {
	if a.s.ConfigFile != "" {
		return nil // no one to report to
	}
	a.tokenMu.Lock()
	token := a.token
	a.tokenMu.Unlock()
	if token == "" {
		return nil // not yet, or refused: the poller reads the file again
	}
	b, err := json.Marshal(a.health())
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.base+"/v1/agent/health", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("the guest service answered %s", resp.Status)
	}
	return nil
}

func (a *Agent) readCache() (guest.Config, bool) {
	var c guest.Config
	b, err := os.ReadFile(filepath.Join(a.s.StateDir, cacheFile))
	if errors.Is(err, fs.ErrNotExist) {
		return c, false
	}
	if err != nil || json.Unmarshal(b, &c) != nil {
		a.log.Warn("the kept configuration is unreadable; waiting for the server", "err", err)
		return c, false
	}
	return c, true
}

func (a *Agent) writeCache(c guest.Config) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(a.s.StateDir, cacheFile), b, 0o600)
}
