// Package compile turns a validated spec and the allocations already made
// into the desired state of a cloud: every VMID, address, MAC, DNS name and
// allowed flow, and the resources an engine realizes, in dependency order.
// Compile is a pure function: the same spec and allocations give
// byte-identical output.
package compile

// State is the desired state of a cloud. Its JSON form is a documented,
// stable contract (docs/cli.md); add fields, never rename or remove them.
type State struct {
	Cloud     string     `json:"cloud"`
	Domain    string     `json:"domain"`
	Sites     []Site     `json:"sites"`
	Zones     []Zone     `json:"zones"`
	Instances []Instance `json:"instances"`
	Flows     []Flow     `json:"flows"`
	Routes    []Route    `json:"routes"`
	// Overlay is the overlay mesh and its members; nil when the spec has
	// no overlay section.
	Overlay *Overlay `json:"overlay,omitempty"`
	// DNS is the cloud's name service; nil when the spec names none
	// (instances then ask their gateway).
	DNS *DNS `json:"dns,omitempty"`
	// ACME is where front ends get certificates; nil when no route needs
	// one from an ACME directory.
	ACME *ACME `json:"acme,omitempty"`
	// Resources are what engines create, in dependency order: every
	// resource comes after the ones it depends on.
	Resources []Resource `json:"resources"`
}

// Site is a compiled site.
type Site struct {
	Name   string   `json:"name"`
	Engine string   `json:"engine"`
	Nodes  []string `json:"nodes"`
	Peer   string   `json:"peer,omitempty"`
	// Ingress is what the site's public address forwards; nil when the
	// spec says nothing (then nothing is forwarded).
	Ingress *Ingress `json:"ingress,omitempty"`
	// Settings are the site's engine settings with the engine's defaults
	// applied (what its EngineSpec compiled); nil when it has none. JSON
	// writes them under the engine's name.
	Settings any `json:"-"`
}

// Zone is a compiled zone with every default applied.
type Zone struct {
	Name               string   `json:"name"`
	Type               string   `json:"type"`
	TypeID             int      `json:"type_id"`
	SubID              int      `json:"sub_id"`
	VLAN               *int     `json:"vlan"` // null for overlay zones
	VNI                *int     `json:"vni"`  // VXLAN id joining a site's nodes; null for overlay zones
	CIDR               string   `json:"cidr"`
	Gateway            string   `json:"gateway"`
	DHCPStart          string   `json:"dhcp_start"` // empty when the zone has no DHCP range
	DHCPEnd            string   `json:"dhcp_end"`
	AccessTo           []string `json:"access_to"`
	PinholeAllowedFrom []string `json:"pinhole_allowed_from"`
	State              string   `json:"state"`
	Present            bool     `json:"present"`
	Isolated           bool     `json:"isolated"`
	// IsolateInstances: the zone's instances do not reach each other on
	// it, only its gateway side and the flows allowed within it.
	IsolateInstances bool     `json:"isolate_instances"`
	Sites            []string `json:"sites"`
	Tenant           string   `json:"tenant,omitempty"` // the owning tenant of a tenant network
}

// Instance is a compiled instance.
type Instance struct {
	Name      string   `json:"name"`
	Site      string   `json:"site"`
	Node      string   `json:"node"`
	Role      string   `json:"role"`
	VMID      int      `json:"vmid"`
	Zone      string   `json:"zone"` // of the first interface
	IP        string   `json:"ip"`   // of the first interface
	MAC       string   `json:"mac"`  // of the first interface
	FQDN      string   `json:"fqdn"`
	NICs      []NIC    `json:"nics"`
	CPUs      int      `json:"cpus"`
	MemoryMiB int64    `json:"memory_mib"`
	DiskMiB   int64    `json:"disk_mib"`
	Template  string   `json:"template,omitempty"`
	Image     string   `json:"image,omitempty"`   // the template's image
	Command   []string `json:"command,omitempty"` // local engine: the service to run
	Groups    []string `json:"groups"`
	OverlayIP string   `json:"overlay_ip"` // the member's overlay address; empty when the instance is no member
	Ports     []Port   `json:"ports"`
	DependsOn []string `json:"depends_on"`
	HA        bool     `json:"ha"`
	Pinned    bool     `json:"pinned,omitempty"` // the spec names the node (HA keeps it there)
	Spread    string   `json:"spread,omitempty"` // anti-affinity group
	Replicate bool     `json:"replicate"`
	Tenant    string   `json:"tenant,omitempty"` // the owning tenant of a tenant instance
	Power     string   `json:"power"`            // running or stopped
	Reboot    int      `json:"reboot"`           // reboot generation: a change restarts the instance
	Rebuild   int      `json:"rebuild"`          // rebuild generation: a change recreates it from its template
	SSHKeys   []string `json:"ssh_keys"`         // authorized_keys lines for root
	// Resolvers are the name servers the instance asks, in order: its
	// site's DNS servers, then its peer site's, else its gateway.
	Resolvers []string `json:"resolvers"`
}

// Power states of an instance.
const (
	PowerRunning = "running"
	PowerStopped = "stopped"
)

// NIC is one interface of an instance.
type NIC struct {
	Index   int      `json:"index"`
	Zone    string   `json:"zone"`
	IP      string   `json:"ip"`
	Prefix  int      `json:"prefix"`
	Gateway string   `json:"gateway"`
	MAC     string   `json:"mac"`
	Trunks  []string `json:"trunks,omitempty"`
}

// Port is a port an instance serves.
type Port struct {
	Port  int    `json:"port"`
	Proto string `json:"proto"`
}

// Flow is one allowed flow. Everything not listed is denied; return
// traffic of an allowed flow is allowed (stateful).
type Flow struct {
	From     string   `json:"from"`      // zone, instance, "internet" or "group:<name>"
	To       string   `json:"to"`        // likewise
	Proto    string   `json:"proto"`     // any, tcp, udp or icmp
	Ports    []string `json:"ports"`     // "443" or "8000-8100"; empty means all
	Kind     string   `json:"kind"`      // access, internet, pinhole, egress, route, overlay or underlay
	FromCIDR string   `json:"from_cidr"` // source addresses; empty for internet and groups
	ToCIDR   string   `json:"to_cidr"`   // destination addresses; empty for internet and groups
	// EnforcedBy says what enforces the flow, set from its kind: the zone
	// firewall of the sites carrying its zones, or the overlay's firewall
	// on each member.
	EnforcedBy string `json:"enforced_by"`
}

// What enforces a flow.
const (
	EnforcedByZoneFirewall = "zone-firewall" // the site's firewall between zones (the engine's)
	EnforcedByOverlay      = "overlay"       // Nebula's firewall on each member, from its certificate's groups
)

// Flow kinds.
const (
	KindAccess   = "access"   // zone to zone, from access-to
	KindInternet = "internet" // zone to the internet, from access-to
	KindPinhole  = "pinhole"  // zone or internet to one instance's ports
	KindEgress   = "egress"   // one instance to a zone or the internet
	KindRoute    = "route"    // front end to backend, and clients to the front end
	KindOverlay  = "overlay"  // overlay group to group
	KindUnderlay = "underlay" // a zone to a member's Nebula, on the overlay's port
	// KindDNS (dns.go): a zone to its DNS servers, a server to its upstreams.
)

// Route is a compiled public route.
type Route struct {
	Name string `json:"name"`
	// Site is where the route's front ends are, and whose engine realizes
	// it; a route whose front ends are at several sites is refused.
	Site        string   `json:"site"`
	Host        string   `json:"host"`
	Port        int      `json:"port"`
	Frontends   []string `json:"frontends"`
	Backends    []string `json:"backends"`
	BackendPort int      `json:"backend_port"`
	Failover    []string `json:"failover"`
	AllowedFrom []string `json:"allowed_from"`
	// Proto is https, http or tcp.
	Proto string `json:"proto"`
	// Address is where clients reach the route (host:port): the site's
	// public address when its ingress forwards the route's port to a
	// front end of the route, else the first front end's own address.
	Address string `json:"address"`
	// HealthPath is what health checks ask an http(s) backend for.
	HealthPath string `json:"health_path,omitempty"`
	// Certificate is the operator's (files, absolute paths); nil for an
	// https route whose certificate comes from the cloud's ACME directory.
	Certificate *CertFiles `json:"certificate,omitempty"`
	// ChallengePeers are the front ends serving the same host over https
	// from ACME, the route's own and the peer site's: an HTTP-01
	// challenge that reaches one of them for another's order is passed on
	// (the public address forwards to one front end; the hostname may
	// resolve to both sites).
	ChallengePeers []string `json:"challenge_peers,omitempty"`
}

// CertFiles are a certificate and its key, as files.
type CertFiles struct {
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
}

// ACME is the certificate authority front ends ask.
type ACME struct {
	Directory string `json:"directory"`
	Email     string `json:"email,omitempty"`
	// CARootsFile (absolute) holds the CAs of the directory's own TLS
	// certificate; empty: the system's.
	CARootsFile string `json:"ca_roots_file,omitempty"`
}

// Ingress is a site's public address and what it forwards.
type Ingress struct {
	// Address is the spec's; empty when the engine gives the site one
	// (the local engine's edge).
	Address   string    `json:"address,omitempty"`
	Forward   []Forward `json:"forward"`
	HostPorts []int     `json:"host_ports"`
}

// Forward is a port of the site's public address sent on to an instance.
type Forward struct {
	Proto string `json:"proto"`
	Port  int    `json:"port"`
	To    string `json:"to"`
	ToIP  string `json:"to_ip"`
}

// Resource is one thing an engine creates, updates or deletes. Attrs hold
// everything that, when changed, needs the engine to act.
type Resource struct {
	ID ID `json:"id"` // unique; printed kind/site/name
	// Kind and Site repeat the ID's, for readers of the JSON form.
	Kind  string            `json:"kind"`
	Site  string            `json:"site,omitempty"`
	Deps  []ID              `json:"deps"`
	Attrs map[string]string `json:"attrs"`
}

// NewResource makes a resource with its kind and site taken from its ID,
// so that the three never disagree.
func NewResource(id ID, deps []ID, attrs map[string]string) Resource {
	if deps == nil {
		deps = []ID{}
	}
	return Resource{ID: id, Kind: id.Kind, Site: id.Site, Deps: deps, Attrs: attrs}
}

// Options are what an engine knows about the infrastructure that
// allocation must respect. The zero value knows nothing.
type Options struct {
	// Taken are VMIDs in use by guests Holdfast does not manage for this
	// cloud (value: what holds it, for messages). Neither new instances nor
	// instances whose guest was never made take them.
	Taken map[int]string
	// Free is memory free for new instances per site and node, in MiB.
	// When a site has it, new instances go to the allowed node with the
	// most free memory instead of the one with the fewest instances.
	Free map[string]map[string]int64
}

// Allocations are the identities already handed out: they keep an
// instance's VMID, node and addresses stable across compiles, and keep a
// removed instance's VMID and addresses reserved until an engine has
// destroyed it and released them.
type Allocations struct {
	Instances map[string]InstanceAlloc `json:"instances"`
}

// InstanceAlloc is what was allocated to one instance.
type InstanceAlloc struct {
	VMID  int               `json:"vmid"`
	Site  string            `json:"site"`
	Node  string            `json:"node"`
	Addrs map[string]string `json:"addrs"` // zone -> address
}
