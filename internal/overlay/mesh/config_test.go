package mesh_test

import (
	"testing"

	"go.yaml.in/yaml/v3"
)

// nebulaConfig is the part of Nebula's configuration the tests use, typed
// so the YAML is marshalled, never concatenated.
type nebulaConfig struct {
	PKI           pkiConfig           `yaml:"pki"`
	StaticHostMap map[string][]string `yaml:"static_host_map,omitempty"`
	Lighthouse    lighthouseConfig    `yaml:"lighthouse"`
	Listen        listenConfig        `yaml:"listen"`
	Punchy        punchyConfig        `yaml:"punchy"`
	Tun           tunConfig           `yaml:"tun"`
	Timers        *timersConfig       `yaml:"timers,omitempty"`
	Firewall      firewallConfig      `yaml:"firewall"`
}

type pkiConfig struct {
	CA        string   `yaml:"ca"`
	Cert      string   `yaml:"cert"`
	Key       string   `yaml:"key"`
	Blocklist []string `yaml:"blocklist,omitempty"`
}

type lighthouseConfig struct {
	AmLighthouse bool     `yaml:"am_lighthouse"`
	Interval     int      `yaml:"interval"`
	Hosts        []string `yaml:"hosts,omitempty"`
}

type listenConfig struct {
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
}

type punchyConfig struct {
	Punch bool `yaml:"punch"`
}

type tunConfig struct {
	Dev string `yaml:"dev"`
	MTU int    `yaml:"mtu,omitempty"`
}

type timersConfig struct {
	// How often Nebula checks each tunnel (and drops those whose peer's
	// certificate became invalid or blocklisted); 5 s by default, 1 s here
	// so that the revocation test is short.
	ConnectionAliveInterval int `yaml:"connection_alive_interval,omitempty"`
}

type firewallConfig struct {
	Outbound []firewallRule `yaml:"outbound"`
	Inbound  []firewallRule `yaml:"inbound"`
}

type firewallRule struct {
	Port  string `yaml:"port"`
	Proto string `yaml:"proto"`
	Host  string `yaml:"host,omitempty"`
	Group string `yaml:"group,omitempty"`
}

func (c nebulaConfig) yaml(t testing.TB) []byte {
	t.Helper()
	b, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
