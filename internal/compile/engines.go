package compile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/holdfast/holdfast/internal/spec"
)

// EngineSpec is what an engine tells the compiler: how a site's block
// becomes the settings the engine is created with. compile cannot import
// the engines, so they fill this registry (through engine.Register).
type EngineSpec interface {
	// Settings compiles a site's block (site.Block, validated) with the
	// engine's defaults applied; nil when the engine has no settings.
	Settings(s *spec.Spec, name string, site *spec.Site) any
}

// SiteAttrs is implemented by an EngineSpec whose settings belong in the
// site resource's attributes: a change of them needs the engine to act.
type SiteAttrs interface {
	SiteAttrs(settings any) map[string]string
}

// PublicAddresser is implemented by an EngineSpec that gives a site its
// public address itself (the local engine: its edge's uplink), in place
// of the spec's ingress address; "" when it has none.
type PublicAddresser interface {
	PublicAddress(st *State, site string) string
}

// SettingsDecoder is implemented by an EngineSpec whose settings are read
// back from a state's JSON (a state handed to another process, as the
// conformance suite's crash tests do): NewSettings returns an empty value
// of the type Settings returns, to decode into.
type SettingsDecoder interface {
	NewSettings() any
}

var (
	enginesMu sync.RWMutex
	engines   = map[string]EngineSpec{}
)

// RegisterEngine registers what the compiler needs of an engine; es may
// be nil. engine.Register calls it.
func RegisterEngine(name string, es EngineSpec) {
	enginesMu.Lock()
	defer enginesMu.Unlock()
	if _, dup := engines[name]; dup {
		panic("compile: engine " + name + " registered twice")
	}
	engines[name] = es
}

func engineSpec(name string) EngineSpec {
	enginesMu.RLock()
	defer enginesMu.RUnlock()
	return engines[name]
}

// siteAttrs are the engine's attributes of a compiled site.
func siteAttrs(st Site) map[string]string {
	if sa, ok := engineSpec(st.Engine).(SiteAttrs); ok && st.Settings != nil {
		return sa.SiteAttrs(st.Settings)
	}
	return nil
}

// MarshalJSON writes the engine's settings under the engine's name
// ("proxmox": {...}), after the fields every site has, so that the
// state's JSON keeps one shape whichever engine a site has.
func (s Site) MarshalJSON() ([]byte, error) {
	type plain Site // without this method
	b, err := json.Marshal(plain(s))
	if err != nil || s.Settings == nil {
		return b, err
	}
	key, err := json.Marshal(s.Engine)
	if err != nil {
		return nil, err
	}
	settings, err := json.Marshal(s.Settings)
	if err != nil {
		return nil, fmt.Errorf("site %q: %s settings: %w", s.Name, s.Engine, err)
	}
	var out bytes.Buffer
	out.Write(b[:len(b)-1]) // without the closing brace
	out.WriteByte(',')
	out.Write(key)
	out.WriteByte(':')
	out.Write(settings)
	out.WriteByte('}')
	return out.Bytes(), nil
}

// UnmarshalJSON reads what MarshalJSON writes: the settings under the
// engine's name go into the engine's settings type when it has a
// SettingsDecoder, else they are kept as raw JSON.
func (s *Site) UnmarshalJSON(b []byte) error {
	type plain Site // without this method
	if err := json.Unmarshal(b, (*plain)(s)); err != nil {
		return err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return err
	}
	raw, ok := fields[s.Engine]
	if !ok || s.Engine == "" {
		return nil
	}
	dec, ok := engineSpec(s.Engine).(SettingsDecoder)
	if !ok {
		s.Settings = raw
		return nil
	}
	v := dec.NewSettings()
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("site %q: %s settings: %w", s.Name, s.Engine, err)
	}
	s.Settings = v
	return nil
}
