// Package server is the Holdfast control plane: the REST API under /v1
// that the CLI, the portal and automation use. Routes are declared as
// data in routes.go with the permission each requires; authentication,
// tenant scoping, authorization, audit, metrics and logging happen around
// every handler in one place (serve.go). Tenant networks and instances are
// realized by writing them into the cloud's tenants spec and running the
// same reconciler as `holdfast apply` (realize.go): there is no second
// code path that touches infrastructure.
package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/holdfast/holdfast/api"
	"github.com/holdfast/holdfast/internal/audit"
	"github.com/holdfast/holdfast/internal/auth"
	"github.com/holdfast/holdfast/internal/auth/oidc"
	"github.com/holdfast/holdfast/internal/leader"
	"github.com/holdfast/holdfast/internal/portal"
	"github.com/holdfast/holdfast/internal/session"
	"github.com/holdfast/holdfast/internal/spec"
	"github.com/holdfast/holdfast/internal/sqldb"
	"github.com/holdfast/holdfast/internal/tenant"
)

// Config is how a server runs.
type Config struct {
	// SpecPath is the operator's spec of the cloud the server serves.
	SpecPath string
	// StateDir is the root of Holdfast's state (deploy.DefaultStateDir).
	StateDir string
	// Database is the PostgreSQL database (a postgres:// URL) the
	// control plane and the cloud's state are kept in, which replicas
	// share (docs/ha.md). Empty keeps them in SQLite files under
	// StateDir.
	Database string
	// Rename serves the cloud under another name (tests).
	Rename string
	// Logger receives structured logs; nothing secret is ever logged.
	Logger *slog.Logger
	// DefaultQuota is given to tenants created without one.
	DefaultQuota *api.Quota
	// Realize runs the reconciler for tenant changes. Without it the API
	// records changes and their operations stay pending (API-only tests).
	Realize bool
	// Resync is how often the reconciler observes and repairs drift when
	// idle (0: 5 minutes; negative: never).
	Resync time.Duration
	// OperatorName is the account the first start creates (default admin).
	OperatorName string
	// AuditWitness, if set, is an http(s) URL every audit checkpoint is
	// POSTed to besides the published file (see audit.Witness).
	AuditWitness string
	// AuditCheckpointInterval is the longest an audit entry waits for a
	// signed checkpoint (0: audit.DefaultCheckpointInterval). `holdfast
	// audit verify` must be given the same.
	AuditCheckpointInterval time.Duration
	// GuestListen, if set, is a TCP address to serve the guest service
	// on besides its unix socket, for agents on other machines (Proxmox
	// VMs: the metadata URL the operator routes to it).
	GuestListen string
	// LeaseTTL is how long the reconciler's leader lease lasts
	// unrenewed, among replicas sharing a PostgreSQL database: a
	// follower takes over within it after the leader dies (0:
	// leader.DefaultTTL).
	LeaseTTL time.Duration
	// PublicURL is the origin browsers reach the server at, e.g.
	// https://holdfast.example:8443. Passkeys are bound to it: its host
	// name is the WebAuthn relying party ID (an IP address cannot be
	// one), and only pages of this origin may use them. Empty: no
	// passkeys.
	PublicURL string
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
}

// Server is a running control plane.
type Server struct {
	cfg       Config
	log       *slog.Logger
	now       func() time.Time
	dir       string // <state>/<cloud>/control
	cloud     string
	spec      *spec.Spec
	pool      pool
	db        *tenant.Store
	box       *auth.Box
	masterKey []byte
	oidc      *oidc.Provider
	// wa is the WebAuthn relying party (passkeys.go); nil without a
	// public URL. handleKey keys the user handles it gives out.
	wa        *webauthn.WebAuthn
	handleKey []byte
	audit     *audit.Log
	auditK    ed25519.PublicKey
	sess      sessions
	hashing   chan struct{} // bounds concurrent argon2id work
	hmac      *auth.Verifier
	// spendWithKey: a signed request's nonce is spent in the statement
	// that reads its key (load), not by hmac (PostgreSQL: a round trip).
	spendWithKey bool
	keys         *keyCache
	hub          *hub
	// browserRefresh spends browsers' refresh cookies (browser.go).
	browserRefresh refresher
	real           *realizer
	met            *metrics
	table          []*route
	// openapi is the document, generated once: the route table does not
	// change while the process runs.
	openapi func() ([]byte, error)
	mux     *http.ServeMux
	portal  *portal.Portal
	ready   chan struct{}

	// Bootstrap is the one-time password of the operator account the
	// first start created; empty on later starts.
	Bootstrap Bootstrap

	closeOnce sync.Once
	// lastRequest is when the last request came (UnixNano), for handing
	// memory back once a burst is over (releaseWhenIdle).
	lastRequest atomic.Int64
	shutOnce    sync.Once
	shutErr     error
	// stopBus ends listening to the other replicas (bus.go); busDone
	// is closed once it has.
	stopBus context.CancelFunc
	busDone chan struct{}
	// lead is the reconciler's leader lease (package leader); nil when
	// this replica does not reconcile. stopLead ends it, giving the
	// lease up; leadDone is closed once it has.
	lead     *leader.Elector
	stopLead context.CancelFunc
	leadDone chan struct{}
}

// Bootstrap is the operator account created on first start.
type Bootstrap struct {
	User     string
	Password auth.Secret
}

// Dir is where a cloud's control plane keeps its files.
func Dir(stateDir, cloud string) string { return filepath.Join(stateDir, cloud, "control") }

// New opens (creating on first start) the control plane of the cloud whose
// spec is at cfg.SpecPath.
func New(cfg Config) (*Server, error) {
	sp, diags := spec.Check(cfg.SpecPath)
	if diags.HasErrors() {
		return nil, fmt.Errorf("spec %s has errors:\n%s", cfg.SpecPath, diags.Err().Error())
	}
	if cfg.Rename != "" {
		sp.Cloud.Name = cfg.Rename
	}
	s := &Server{cfg: cfg, log: cfg.Logger, now: cfg.Now, spec: sp, cloud: sp.Cloud.Name, ready: make(chan struct{}),
		hashing: make(chan struct{}, runtime.NumCPU())}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	var err error
	if s.pool, err = poolOf(sp); err != nil {
		return nil, err
	}
	// Checked before anything is written: a wrong flag leaves no trace.
	if cfg.PublicURL != "" {
		if s.wa, err = newWebAuthn(cfg.PublicURL, s.cloud); err != nil {
			return nil, err
		}
	}
	s.dir = Dir(cfg.StateDir, s.cloud)
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	key, err := auth.LoadOrCreateMasterKey(filepath.Join(s.dir, "master.key"))
	if err != nil {
		return nil, err
	}
	s.masterKey = key
	if s.box, err = auth.NewBox(key); err != nil {
		return nil, err
	}
	if s.handleKey, err = webauthnHandleKey(key); err != nil {
		return nil, err
	}
	if s.db, err = tenant.Open(sqldb.In(cfg.Database, filepath.Join(s.dir, "control.db"), "control")); err != nil {
		return nil, err
	}
	if err := s.openAudit(); err != nil {
		return nil, err
	}
	if s.sess, err = newSessions(s); err != nil {
		return nil, err
	}
	s.keys = &keyCache{s: s, m: map[string]*cachedKey{}}
	s.hmac = &auth.Verifier{Nonces: auth.NewNonceCache(1 << 20), Lookup: s.keys.secret}
	if sqldb.DialectOf(s.db.DB()) == sqldb.Postgres {
		// Replicas may share the database: each must know the nonces
		// every other has seen.
		if s.hmac.Nonces, err = session.NewNonces(context.Background(), s.db.DB()); err != nil {
			return nil, err
		}
		s.spendWithKey = true
	}
	s.hub = newHub(4096)
	s.met = newMetrics()
	if err := s.bootstrap(context.Background()); err != nil {
		return nil, err
	}
	s.table = append(append(s.routes(), s.extraRoutes()...), s.consoleRoutes()...)
	s.openapi = sync.OnceValues(OpenAPI)
	if s.mux, err = s.buildMux(); err != nil {
		return nil, err
	}
	if s.portal, err = portal.New(portal.Config{API: http.HandlerFunc(s.serveAPI), Logger: s.log}); err != nil {
		return nil, err
	}
	s.real = newRealizer(s)
	// Replicas sharing a PostgreSQL database elect the one that
	// reconciles among those that may (not --no-reconcile); on SQLite
	// this one always does.
	self, _ := os.Hostname()
	if cfg.Realize {
		if s.lead, err = leader.New(context.Background(), s.db.DB(), leader.Config{Name: "realizer", Self: fmt.Sprintf("%s/%d/%s", self, os.Getpid(), rand.Text()[:8]),
			TTL: cfg.LeaseTTL, Logger: s.log, OnChange: func(leading bool) {
				if leading {
					s.real.wakeUp() // to carry out what the last leader left pending
				}
			}}); err != nil {
			return nil, err
		}
	}
	ok = true
	return s, nil
}

// openAudit opens the audit log with its checkpoint key, sealed in the
// control database, and publishes the public key beside the log so that
// `holdfast audit verify` (and anyone given a copy) can check it. Every
// checkpoint is published to AuditCheckpointsFile beside it, and to the
// witness if one is configured.
func (s *Server) openAudit() error {
	var priv ed25519.PrivateKey
	err := s.db.Do(context.Background(), func(tx *tenant.Tx) error {
		sealed, err := tx.Setting("audit.key")
		if errors.Is(err, tenant.ErrNotFound) {
			_, p, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			if sealed, err = s.box.Seal(p, []byte("audit.key")); err != nil {
				return err
			}
			if err := tx.PutSetting("audit.key", sealed); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		raw, err := s.box.Open(sealed, []byte("audit.key"))
		if err != nil {
			return fmt.Errorf("audit key: %w", err)
		}
		priv = ed25519.PrivateKey(raw)
		return nil
	})
	if err != nil {
		return err
	}
	s.auditK = priv.Public().(ed25519.PublicKey)
	if err := os.WriteFile(filepath.Join(s.dir, "audit.pub"), []byte(fmt.Sprintf("%x\n", []byte(s.auditK))), 0o644); err != nil {
		return err
	}
	s.audit, err = audit.Open(sqldb.In(s.cfg.Database, filepath.Join(s.dir, "audit.db"), "audit"), priv,
		audit.CheckpointInterval(s.cfg.AuditCheckpointInterval),
		audit.PublishTo(filepath.Join(s.dir, AuditCheckpointsFile)), audit.Name(s.cloud), audit.Witness(s.cfg.AuditWitness),
		audit.Logger(s.log), audit.Clock(s.now))
	return err
}

// AuditCheckpointsFile is where, in Dir, every audit checkpoint is
// published as it is made: operators ship it off the host and verify the
// log against their copy.
const AuditCheckpointsFile = "audit-checkpoints.jsonl"

// bootstrap, on first start, creates the first operator with a one-time
// password and publishes the spec's flavors and templates.
func (s *Server) bootstrap(ctx context.Context) error {
	name := s.cfg.OperatorName
	if name == "" {
		name = "admin"
	}
	return s.db.Do(ctx, func(tx *tenant.Tx) error {
		n, err := tx.CountOperators()
		if err != nil || n > 0 {
			return err
		}
		// First start: publish the spec's flavors and templates that fit
		// the API's rules; the operator manages the catalogue from here.
		for _, n := range spec.SortedNames(s.spec.Flavors) {
			f := s.spec.Flavors[n]
			fl := api.Flavor{Name: n, CPUs: f.CPUs, MemoryMiB: f.Memory.MiB, DiskGiB: f.Disk.MiB / 1024}
			if _, err := tx.Flavor(n); errors.Is(err, tenant.ErrNotFound) && api.Check(fl) == nil {
				if err := tx.PutFlavor(fl); err != nil {
					return err
				}
			}
		}
		for _, n := range spec.SortedNames(s.spec.Templates) {
			t := s.spec.Templates[n]
			if _, err := tx.Template(n); errors.Is(err, tenant.ErrNotFound) && api.Check(api.Template{Name: n, Image: t.Image}) == nil {
				if err := tx.PutTemplate(api.Template{Name: n, Image: t.Image, OS: t.OS, Description: t.Description}); err != nil {
					return err
				}
			}
		}
		pw := rand.Text() // 26 base32 characters, 130 bits
		hash, err := auth.HashPassword(pw)
		if err != nil {
			return err
		}
		if _, err := tx.CreateUser(api.UserCreate{Name: name, Operator: true}, hash); err != nil {
			return err
		}
		s.Bootstrap = Bootstrap{User: name, Password: auth.SecretString(pw)}
		return nil
	})
}

// Handler is the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s }

// Cloud is the name of the cloud served.
func (s *Server) Cloud() string { return s.cloud }

// Dir is where the server keeps its files.
func (s *Server) Dir() string { return s.dir }

// AuditKey is the public key that verifies the audit log's checkpoints.
func (s *Server) AuditKey() ed25519.PublicKey { return s.auditK }

// Close releases the databases. Run's caller stops the realizer first.
func (s *Server) Close() error {
	var errs []error
	s.closeOnce.Do(func() {
		if s.stopBus != nil {
			s.stopBus()
			<-s.busDone
		}
		if s.audit != nil {
			errs = append(errs, s.audit.Close())
		}
		if s.db != nil {
			errs = append(errs, s.db.Close())
		}
	})
	return errors.Join(errs...)
}
