package guest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// AgentSettings is the agent's own configuration file (agent.json),
// written by whoever delivers the agent: the local engine, or the
// metadata service's user-data on Proxmox.
type AgentSettings struct {
	// Server is the guest service: "unix:///run/holdfast/guest/agent.sock"
	// (the local engine) or "http://host:port" (a metadata service).
	Server string `json:"server"`
	// TokenFile holds the instance's agent token; it is read again when
	// the server refuses the one in hand (the credential was rotated).
	TokenFile string `json:"token_file"`
	// StateDir keeps the last configuration applied, so that a restarted
	// agent brings the instance's services up before it reaches the server.
	StateDir string `json:"state_dir"`
	// Interval is how often to ask for the configuration and report
	// health (Go duration; zero: DefaultInterval).
	Interval Duration `json:"interval,omitempty"`
	// ConfigFile, instead of Server and TokenFile, is a configuration
	// (guest.Config, JSON) kept on the machine by whoever runs the agent,
	// read again when it changes; nothing is reported. The local engine's
	// site edges run their DNS and DHCP so.
	ConfigFile string `json:"config_file,omitempty"`
}

// Duration is a time.Duration written as Go writes one ("5s").
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// ReadAgentSettings reads and checks an agent.json.
func ReadAgentSettings(path string) (AgentSettings, error) {
	var s AgentSettings
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	if err := s.check(); err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

func (s AgentSettings) check() error {
	var errs []error
	if s.ConfigFile != "" {
		if s.Server != "" || s.TokenFile != "" {
			errs = append(errs, errors.New("config_file: a configuration file replaces server and token_file; give one or the other"))
		}
		if !filepath.IsAbs(s.ConfigFile) {
			errs = append(errs, fmt.Errorf("config_file: %q is not an absolute path", s.ConfigFile))
		}
		if !filepath.IsAbs(s.StateDir) {
			errs = append(errs, fmt.Errorf("state_dir: %q is not an absolute path", s.StateDir))
		}
		return errors.Join(errs...)
	}
	u, err := url.Parse(s.Server)
	switch {
	case s.Server == "":
		errs = append(errs, errors.New("server: missing"))
	case err != nil:
		errs = append(errs, fmt.Errorf("server: %w", err))
	case u.Scheme == "unix":
		if !filepath.IsAbs(u.Path) {
			errs = append(errs, fmt.Errorf("server: %q: a unix socket needs an absolute path", s.Server))
		}
	case u.Scheme == "http" || u.Scheme == "https":
		if u.Host == "" {
			errs = append(errs, fmt.Errorf("server: %q has no host", s.Server))
		}
	default:
		errs = append(errs, fmt.Errorf("server: %q: want unix://, http:// or https://", s.Server))
	}
	if !filepath.IsAbs(s.TokenFile) {
		errs = append(errs, fmt.Errorf("token_file: %q is not an absolute path", s.TokenFile))
	}
	if !filepath.IsAbs(s.StateDir) {
		errs = append(errs, fmt.Errorf("state_dir: %q is not an absolute path", s.StateDir))
	}
	if s.Interval < 0 {
		errs = append(errs, errors.New("interval: negative"))
	}
	return errors.Join(errs...)
}
