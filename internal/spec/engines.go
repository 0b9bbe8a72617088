package spec

import (
	"reflect"
	"slices"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// A site names its engine, and the engine alone knows its site block: the
// mapping under the key named for the engine (proxmox: for engine:
// proxmox). spec keeps the block as a raw node while decoding the site and
// hands it to the engine's EngineSpec, which decodes it with spec's own
// decoder (so its errors carry file:line:col like every other) and checks
// it once the whole spec is loaded. spec cannot import the engines, so
// they fill this registry (through engine.Register) instead.

// EngineSpec is what an engine tells the spec about its sites.
type EngineSpec interface {
	// NewBlock returns an empty site block to decode into: a pointer to a
	// struct tagged like spec's own types (yaml, required, enum, min, max,
	// doc; embed Meta for positions), or nil when the engine takes none.
	NewBlock() any
	// CheckSite validates a site of the engine once the whole spec is
	// loaded; site.Block is its decoded block, nil when it has none.
	CheckSite(s *Spec, name string, site *Site, diags *Diagnostics)
}

var (
	enginesMu sync.RWMutex
	engines   = map[string]EngineSpec{}
)

// RegisterEngine makes an engine name valid in sites; es may be nil for
// an engine without a site block. engine.Register calls it.
func RegisterEngine(name string, es EngineSpec) {
	enginesMu.Lock()
	defer enginesMu.Unlock()
	if _, dup := engines[name]; dup {
		panic("spec: engine " + name + " registered twice")
	}
	engines[name] = es
}

// EngineNames lists the engines a site may name, sorted.
func EngineNames() []string {
	enginesMu.RLock()
	defer enginesMu.RUnlock()
	names := make([]string, 0, len(engines))
	for n := range engines {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// engineSpec returns the registered spelling of an engine name (matched
// without regard to case, as enums are) and its EngineSpec.
func engineSpec(name string) (canonical string, es EngineSpec, ok bool) {
	enginesMu.RLock()
	defer enginesMu.RUnlock()
	for n, es := range engines {
		if strings.EqualFold(n, name) {
			return n, es, true
		}
	}
	return "", nil, false
}

// isEngine reports whether key names a registered engine.
func isEngine(key string) bool {
	enginesMu.RLock()
	defer enginesMu.RUnlock()
	_, ok := engines[key]
	return ok
}

// blockHolder is implemented by structs that take, beyond their fields,
// a block keyed by an engine's name (a site).
type blockHolder interface {
	takeBlock(d *decoder, key, val *yaml.Node, what string) bool
}

// afterDecoder is implemented by structs that finish their decoding once
// all their fields are read (a site decodes its engine block then).
type afterDecoder interface {
	afterDecode(d *decoder, n *yaml.Node, what string)
}

// takeBlock keeps the value of a key named for an engine as the site's
// raw engine block.
func (s *Site) takeBlock(d *decoder, key, val *yaml.Node, what string) bool {
	if !isEngine(key.Value) {
		return false
	}
	if s.blockKey != "" {
		d.errorf(key, "%s: blocks for engines %s and %s; a site has one engine and its one block", what, s.blockKey, key.Value)
		return true
	}
	s.blockKey, s.blockNode = key.Value, val
	return true
}

// afterDecode checks the site's engine and decodes its block with the
// engine's own type once the engine is known (the block may come first).
func (s *Site) afterDecode(d *decoder, _ *yaml.Node, what string) {
	if s.Engine == "" {
		return
	}
	name, es, ok := engineSpec(s.Engine)
	if !ok {
		d.diags.Errorf(s.FieldPos("engine"), "%s.engine: %q is not one of %s", what, s.Engine, strings.Join(EngineNames(), ", "))
		return
	}
	s.Engine = name
	if s.blockKey != s.Engine || s.blockNode == nil {
		return // a block for another engine: Validate says so
	}
	var blk any
	if es != nil {
		blk = es.NewBlock()
	}
	if blk == nil {
		d.errorf(s.blockNode, "%s: engine %s takes no %s block", what, s.Engine, s.blockKey)
		return
	}
	d.decode(s.blockNode, reflect.ValueOf(blk).Elem(), what+"."+s.blockKey)
	s.Block = blk
}

// engineBlock checks that a site's block is its engine's, then lets the
// engine check the site.
func (v *validator) engineBlock(name string, site *Site) {
	if site.blockKey != "" && site.blockKey != site.Engine {
		v.diags.Errorf(site.FieldPos(site.blockKey), "site %q: %s is for sites with engine: %s (this one has engine: %s)", name, site.blockKey, site.blockKey, site.Engine)
	}
	if _, es, ok := engineSpec(site.Engine); ok && es != nil {
		es.CheckSite(v.s, name, site, &v.diags)
	}
}

// encodeBlock is the site's block as the encoder writes it, under its
// engine's name.
func (s *Site) encodeBlock() (key string, n *yaml.Node) {
	if s.Block == nil {
		return "", nil
	}
	return s.Engine, encodeValue(reflect.ValueOf(s.Block))
}

// blockSchemas are the JSON schemas of the engines' site blocks, by name.
func (g *schemaGen) blockSchemas() map[string]any {
	enginesMu.RLock()
	defer enginesMu.RUnlock()
	out := map[string]any{}
	for name, es := range engines {
		if es == nil {
			continue
		}
		if blk := es.NewBlock(); blk != nil {
			out[name] = g.of(reflect.TypeOf(blk))
		}
	}
	return out
}
