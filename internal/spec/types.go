// Package spec defines the Holdfast cloud spec, loads it from YAML with
// positions, and validates it. Everything the compiler needs to know about a
// cloud is in a *Spec; nothing in this package touches infrastructure.
package spec

import (
	"net/netip"

	"go.yaml.in/yaml/v3"
)

// Spec is a whole cloud: the merge of every file of a spec directory.
// Maps are keyed by name; iterate with SortedNames for a stable order.
type Spec struct {
	Cloud     *Cloud               `yaml:"cloud" doc:"The cloud's identity: its name and DNS domain."`
	Sites     map[string]*Site     `yaml:"sites" doc:"Locations, each realized by one engine on a set of nodes."`
	Zones     map[string]*Zone     `yaml:"zones" doc:"Network segments with TAPPaaS semantics; default deny between them."`
	Roles     map[string]*Role     `yaml:"roles" doc:"Classes of instances, each with a VMID range."`
	Flavors   map[string]*Flavor   `yaml:"flavors" doc:"Named sizes: vCPUs, memory and disk."`
	Templates map[string]*Template `yaml:"templates" doc:"Images instances are created from."`
	Groups    map[string]*Group    `yaml:"groups" doc:"Overlay identity groups and which groups they may reach."`
	Overlay   *Overlay             `yaml:"overlay" doc:"The overlay mesh (Nebula) whose members are the instances with groups."`
	DNS       *DNS                 `yaml:"dns" doc:"Which instances serve the cloud's names, and where other names are forwarded."`
	ACME      *ACME                `yaml:"acme" doc:"Where front ends get certificates for https routes that have none of their own: an ACME directory (default Let's Encrypt's)."`
	Instances map[string]*Instance `yaml:"instances" doc:"VMs (system containers on the local engine)."`
	Routes    map[string]*Route    `yaml:"routes" doc:"Public hostnames at a site's front end, with failover to backends at the peer site."`
	Tenancy   *Tenancy             `yaml:"tenancy" doc:"The pool tenants' networks and instances are allocated from, for holdfast serve."`

	// Files lists the files the spec was read from, in load order.
	Files []string `yaml:"-"`

	// valid is set by a Validate that found no errors: only then is
	// every default filled in for the compiler.
	valid bool
}

// Valid reports whether the spec has passed Validate without errors, as
// the compiler requires.
func (s *Spec) Valid() bool { return s.valid }

// Cloud names the cloud.
type Cloud struct {
	Meta        `yaml:"-"`
	Name        string `yaml:"name" required:"true" pattern:"name" doc:"Short name of the cloud."`
	Domain      string `yaml:"domain" required:"true" pattern:"domain" doc:"DNS domain; instances are named <instance>.<zone>.<domain>."`
	Description string `yaml:"description" doc:"Free text."`
}

// Site is one location or provider.
type Site struct {
	Meta        `yaml:"-"`
	Engine      string   `yaml:"engine" required:"true" doc:"Engine that realizes this site."`
	Nodes       []string `yaml:"nodes" required:"true" doc:"Hypervisor nodes (namespaces on the local engine)."`
	Peer        string   `yaml:"peer" doc:"Peer site for failover and replication."`
	Ingress     *Ingress `yaml:"ingress" doc:"What the site's public address forwards to its front ends; the rest is dropped, but for the node's own ports (its SSH)."`
	Description string   `yaml:"description" doc:"Free text."`

	// Block is the site's engine block, written under the engine's name
	// and decoded by the engine's EngineSpec; nil when the site has none.
	// Importers may set it to what that EngineSpec's NewBlock returns.
	Block any `yaml:"-"`

	blockKey  string     // the engine name the block was written under
	blockNode *yaml.Node // the block as written, until the engine is known
}

// Zone is a network segment. Fields left unset are derived from the zone's
// type and sub-id exactly as TAPPaaS derives them.
type Zone struct {
	Meta               `yaml:"-"`
	Tenant             string   `yaml:"tenant" pattern:"name" doc:"The tenant that owns the zone (a tenant network, allocated from the tenancy pool); empty for the operator's zones."`
	Type               string   `yaml:"type" required:"true" enum:"management,service,client,iot,guest,dmz,overlay,test" doc:"Zone type; fixes the typeId (management 0, service 2, client 3, iot 4, guest 5, dmz 6, overlay 7, test 8)."`
	SubID              *int     `yaml:"sub-id" doc:"Number of the zone within its type, 0-99 (default 0)."`
	VLAN               *int     `yaml:"vlan" doc:"VLAN tag, 0 = untagged. Default typeId*100+subId."`
	CIDR               string   `yaml:"cidr" doc:"IPv4 subnet. Default 10.<typeId>.<subId>.0/24."`
	Gateway            string   `yaml:"gateway" doc:"Gateway address. Default the first host of the subnet."`
	DHCP               *bool    `yaml:"dhcp" doc:"Whether the zone has a DHCP range (default true, false for overlay zones)."`
	DHCPStart          *int     `yaml:"dhcp-start" doc:"First DHCP address as an offset into the subnet (default 50)."`
	DHCPEnd            *int     `yaml:"dhcp-end" doc:"Last DHCP address as an offset into the subnet (default 250)."`
	AccessTo           []string `yaml:"access-to" doc:"Zones this zone may reach (whole subnet, stateful); 'internet' for egress, 'all' for everything."`
	PinholeAllowedFrom []string `yaml:"pinhole-allowed-from" doc:"Zones (or 'internet') that instances of this zone may open pinholes to."`
	State              string   `yaml:"state" enum:"active,mandatory,inactive,disabled,manual" doc:"active and mandatory zones are created; inactive and disabled ones are not; manual ones exist but are not managed."`
	Isolated           bool     `yaml:"isolated" doc:"An isolated zone is reachable by pinholes only: no zone but a management zone may list it in access-to."`
	IsolateInstances   bool     `yaml:"isolate-instances" doc:"The zone's instances cannot reach each other on it: only the gateway side (the host, the site's router) reaches them and they reach it; flows the spec allows within the zone (pinholes, the overlay's underlay) still pass. Not on overlay zones."`
	Sites              []string `yaml:"sites" doc:"Sites that carry this zone (default all)."`
	Uplink             string   `yaml:"uplink" doc:"Physical interface or trunk the zone rides on (TAPPaaS 'bridge')."`
	SSID               string   `yaml:"ssid" doc:"Wireless network name of a client zone."`
	Description        string   `yaml:"description" doc:"Free text."`

	// Net is filled by Validate: the zone's network with defaults applied.
	Net ZoneNet `yaml:"-"`
}

// ZoneNet is a zone's network after defaults are applied.
type ZoneNet struct {
	TypeID, SubID int
	VLAN          int // -1 for overlay zones, which carry no VLAN
	Prefix        netip.Prefix
	Gateway       netip.Addr
	DHCPStart     netip.Addr // invalid when the zone has no DHCP range
	DHCPEnd       netip.Addr
	State         string
	Present       bool // active, mandatory or manual: the zone exists
}

// Role is a class of instances with a VMID range.
type Role struct {
	Meta        `yaml:"-"`
	VMIDs       Range  `yaml:"vmids" required:"true" doc:"VMID range, e.g. 1000-1999."`
	IP          string `yaml:"ip" enum:"pool,vmid" doc:"pool (default): the next free address outside the DHCP range; vmid: last octet = first digit*10 + last digit of the VMID."`
	Description string `yaml:"description" doc:"Free text."`
}

// Flavor is a named size.
type Flavor struct {
	Meta   `yaml:"-"`
	CPUs   int  `yaml:"cpus" required:"true" min:"1" doc:"vCPUs."`
	Memory Size `yaml:"memory" required:"true" doc:"Memory, e.g. 4GiB or 4096 (MiB)."`
	Disk   Size `yaml:"disk" doc:"Root disk, e.g. 32G."`
}

// Template is an image instances are created from.
type Template struct {
	Meta        `yaml:"-"`
	Image       string `yaml:"image" required:"true" doc:"Image reference, read by the site's engine: a template name or VMID, a root filesystem directory, or an image file name."`
	OS          string `yaml:"os" doc:"Operating system, informational."`
	CloudInit   *bool  `yaml:"cloud-init" doc:"Whether the image takes cloud-init (default true)."`
	Description string `yaml:"description" doc:"Free text."`
}

// Group is an overlay identity group (Nebula-style).
type Group struct {
	Meta        `yaml:"-"`
	CanAccess   []string `yaml:"can-access" doc:"Groups whose members this group may reach; 'all' for every group."`
	Description string   `yaml:"description" doc:"Free text."`
}

// Overlay is the cloud's overlay mesh, realized with Nebula: every instance
// with groups is a member, with a certificate carrying its groups and a
// firewall compiled from the groups' can-access.
type Overlay struct {
	Meta        `yaml:"-"`
	CIDR        string        `yaml:"cidr" required:"true" doc:"IPv4 network of the overlay, e.g. 10.10.10.0/24. It overlaps no zone, except an overlay-type zone with exactly this cidr, which stands for the overlay in zone lists."`
	Domain      string        `yaml:"domain" pattern:"domain" doc:"DNS domain of overlay names: a member is <instance>.<domain> at its overlay address (default: the cloud's domain)."`
	Lighthouses []*Lighthouse `yaml:"lighthouses" required:"true" doc:"Where members find each other: member instances (by name), or {address: host:port, overlay-ip} for a lighthouse outside the cloud."`
	Port        *int          `yaml:"port" min:"1" max:"65535" doc:"UDP port every member listens on, on its underlay addresses (default 4242)."`
	Description string        `yaml:"description" doc:"Free text."`

	// Net is filled by Validate: the overlay with defaults applied.
	Net OverlayNet `yaml:"-"`
}

// OverlayNet is an overlay section after defaults are applied.
type OverlayNet struct {
	Prefix netip.Prefix // invalid when the cidr is
	Domain string
	Port   int
	// Zone is the overlay-type zone with the overlay's cidr, which stands
	// for the overlay in zone lists; empty when there is none.
	Zone string
}

// DNS is the cloud's name service.
type DNS struct {
	Meta      `yaml:"-"`
	Servers   []string `yaml:"servers" doc:"Instances that serve the cloud's names (the agent runs the server): each instance resolves at its site's servers first, then at its peer site's."`
	Upstreams []string `yaml:"upstreams" doc:"Resolvers other names are forwarded to (IP addresses, port 53), for the cloud's own clients only; none: other names are refused."`
}

// DefaultOverlayPort is Nebula's usual listen port.
const DefaultOverlayPort = 4242

// Lighthouse is one of an overlay's lighthouses: a member instance, or a
// lighthouse outside the cloud. In YAML a plain name means an instance.
type Lighthouse struct {
	Meta      `yaml:"-"`
	Instance  string `yaml:"instance" doc:"A member instance that serves as a lighthouse; reached on its first interface's address at the overlay's port."`
	Address   string `yaml:"address" doc:"host:port of a lighthouse outside the cloud, on the underlay."`
	OverlayIP string `yaml:"overlay-ip" doc:"The outside lighthouse's overlay address (with address)."`
}

// Instance is one VM.
type Instance struct {
	Meta        `yaml:"-"`
	Tenant      string   `yaml:"tenant" pattern:"name" doc:"The tenant that owns the instance; it sits in that tenant's zones only. Empty for the operator's instances."`
	Site        string   `yaml:"site" doc:"Site; may be omitted when the cloud has one site."`
	Node        string   `yaml:"node" doc:"Node of the site; chosen by the compiler when omitted."`
	Role        string   `yaml:"role" doc:"Role; the VMID comes from its range."`
	VMID        *int     `yaml:"vmid" doc:"Explicit VMID (100-999999999)."`
	Zone        string   `yaml:"zone" doc:"Zone of the first network interface (shorthand for networks)."`
	IP          string   `yaml:"ip" doc:"Explicit address in the zone (with zone)."`
	Trunks      []string `yaml:"trunks" doc:"Further zones tagged on the first interface; 'all' for every zone (with zone)."`
	Networks    []*NIC   `yaml:"networks" doc:"Network interfaces in order; the first is the primary."`
	Flavor      string   `yaml:"flavor" doc:"Flavor name."`
	Template    string   `yaml:"template" doc:"Template name."`
	CPUs        *int     `yaml:"cpus" doc:"vCPUs, overriding the flavor."`
	Memory      *Size    `yaml:"memory" doc:"Memory, overriding the flavor."`
	Disk        *Size    `yaml:"disk" doc:"Disk, overriding the flavor."`
	Groups      []string `yaml:"groups" doc:"Overlay groups the instance's certificate carries; with an overlay, an instance with groups is a member."`
	OverlayIP   string   `yaml:"overlay-ip" doc:"Explicit overlay address of a member, inside the overlay's cidr. Default: derived from the VMID when the role has ip: vmid, else allocated from the cidr."`
	Ports       []*Port  `yaml:"ports" doc:"Ports the instance serves."`
	Ingress     []*Rule  `yaml:"ingress" doc:"Pinholes: who may reach which of its ports (from a zone or 'internet')."`
	Egress      []*Rule  `yaml:"egress" doc:"Narrow flows out of the instance to a zone or 'internet'."`
	DependsOn   []string `yaml:"depends-on" doc:"Instances that must exist first."`
	Provides    []string `yaml:"provides" doc:"Capabilities the instance provides, informational."`
	Command     []string `yaml:"command" doc:"Local engine: the service to run (argv), restarted when it exits. Without it, the local engine answers on the instance's ports."`
	Power       string   `yaml:"power" enum:"running,stopped" doc:"running (default) or stopped: a stopped instance keeps its network and disk, but nothing runs."`
	Reboot      int      `yaml:"reboot" min:"0" doc:"Reboot generation: changing it restarts the instance, keeping its disk and addresses."`
	Rebuild     int      `yaml:"rebuild" min:"0" doc:"Rebuild generation: changing it recreates the instance from its template, discarding its writable state."`
	SSHKeys     []string `yaml:"ssh-keys" doc:"OpenSSH public keys (authorized_keys lines: type, base64 key, optional comment) put into root's authorized_keys."`
	HA          bool     `yaml:"ha" doc:"Restart on another node when its node fails."`
	Spread      string   `yaml:"spread" pattern:"name" doc:"Anti-affinity: instances with the same spread name never share a node (the members of one cluster, e.g. three Patroni nodes)."`
	Replicate   bool     `yaml:"replicate" doc:"Replicate to the peer site."`
	Description string   `yaml:"description" doc:"Free text."`
}

// NIC is one network interface of an instance.
type NIC struct {
	Meta   `yaml:"-"`
	Zone   string   `yaml:"zone" required:"true" doc:"Zone of the interface."`
	IP     string   `yaml:"ip" doc:"Explicit address; allocated when omitted."`
	Trunks []string `yaml:"trunks" doc:"Further zones tagged on this interface; 'all' for every zone."`
}

// Port is a port an instance serves. In YAML: 443, "53/udp", or a mapping.
type Port struct {
	Meta        `yaml:"-"`
	Port        int    `yaml:"port" required:"true" min:"1" max:"65535" doc:"Port number."`
	Proto       string `yaml:"proto" enum:"tcp,udp" doc:"Protocol (default tcp)."`
	Description string `yaml:"description" doc:"Free text."`
}

// Rule is a narrow flow to or from one instance.
type Rule struct {
	Meta        `yaml:"-"`
	From        string `yaml:"from" doc:"Source zone or 'internet' (ingress)."`
	To          string `yaml:"to" doc:"Destination zone or 'internet' (egress)."`
	Ports       Ports  `yaml:"ports" doc:"Ports or ranges, e.g. [80, 443, '8000-8100']; all ports when omitted."`
	Proto       string `yaml:"proto" enum:"tcp,udp,icmp,any" doc:"Protocol (default tcp with ports, any without)."`
	Description string `yaml:"description" doc:"Free text."`
}

// Tenancy is the operator's offer to tenants: the site, VMID range, address
// pool and VLAN range that holdfast serve allocates tenant networks and
// instances from. Tenant zones must lie inside it.
type Tenancy struct {
	Meta        `yaml:"-"`
	Site        string    `yaml:"site" pattern:"name" doc:"Site that carries tenant networks and instances (default: the only site)."`
	Role        string    `yaml:"role" required:"true" pattern:"name" doc:"Role whose VMID range tenant instances take their VMIDs from."`
	ZoneType    string    `yaml:"zone-type" enum:"management,service,client,iot,guest,dmz,test" doc:"Zone type of tenant networks (default guest)."`
	CIDR        string    `yaml:"cidr" required:"true" doc:"IPv4 pool tenant networks are carved from, e.g. 10.128.0.0/12; it overlaps no operator zone."`
	Prefix      *int      `yaml:"prefix" min:"16" max:"29" doc:"Size of each tenant network, 16-29 (default 24)."`
	VLANs       Range     `yaml:"vlans" required:"true" doc:"VLANs of tenant networks, e.g. 3000-3999; no operator zone at the site uses them."`
	Access      *[]string `yaml:"access" doc:"What tenant networks may reach; only 'internet' (the default) or nothing ([])."`
	Description string    `yaml:"description" doc:"Free text."`

	// Net is filled by Validate: the pool with defaults applied.
	Net TenancyNet `yaml:"-"`
}

// TenancyNet is a tenancy block after defaults are applied.
type TenancyNet struct {
	Site     string
	ZoneType string
	Pool     netip.Prefix // invalid when the cidr is
	Bits     int          // the prefix length of each tenant network
	Access   []string
}

// Ingress is a site's public address: the ports it forwards to instances
// (DNAT on the site's edge), and the ports the node keeps for itself.
type Ingress struct {
	Meta      `yaml:"-"`
	Address   string     `yaml:"address" doc:"The site's public IPv4 address. The local engine's edge has its own (198.51.100.x) when none is given; on Proxmox it is the operator's router's, named here so that holdfast show routes can print where clients reach each route."`
	Forward   []*Forward `yaml:"forward" doc:"Ports forwarded to an instance at the site, usually its front end."`
	HostPorts []int      `yaml:"host-ports" doc:"Ports the site's node answers itself on its public address (default [22], its SSH; [] for none)."`
}

// Forward is ports of a site's public address sent on to one instance.
type Forward struct {
	Meta        `yaml:"-"`
	Ports       Ports  `yaml:"ports" required:"true" doc:"Ports or ranges, e.g. [80, 443]."`
	To          string `yaml:"to" required:"true" doc:"The instance (at the site) they go to, on the same ports."`
	Proto       string `yaml:"proto" enum:"tcp,udp" doc:"Protocol (default tcp)."`
	Description string `yaml:"description" doc:"Free text."`
}

// ACME is the certificate authority front ends ask for certificates.
type ACME struct {
	Meta      `yaml:"-"`
	Directory string `yaml:"directory" required:"true" doc:"The ACME directory URL (https), e.g. https://acme-v02.api.letsencrypt.org/directory."`
	Email     string `yaml:"email" doc:"Contact address given to the CA."`
	CARoots   string `yaml:"ca-roots" doc:"A PEM file of the CAs that sign the directory's own TLS certificate (a private ACME server); default the system's. Relative to the file it is written in."`
}

// Certificate is a certificate the operator gives a route, as files.
type Certificate struct {
	Meta     `yaml:"-"`
	CertFile string `yaml:"cert-file" required:"true" doc:"PEM certificate chain, leaf first; relative to the file it is written in."`
	KeyFile  string `yaml:"key-file" required:"true" doc:"PEM private key of the leaf; relative to the file it is written in. It is handed to the route's front ends."`
}

// Route is a public hostname served by a site's front end.
type Route struct {
	Meta        `yaml:"-"`
	Host        string       `yaml:"host" required:"true" pattern:"domain" doc:"Public hostname."`
	Proto       string       `yaml:"proto" enum:"https,http,tcp" doc:"https (default: TLS terminated at the front end, certificate from acme or certificate), http (plain) or tcp (bytes passed on: SSH, databases)."`
	Port        *int         `yaml:"port" doc:"Front-end port (default 443 for https, 80 for http; required for tcp)."`
	Certificate *Certificate `yaml:"certificate" doc:"The operator's certificate for an https route; without it the front ends get one from the ACME directory (the acme section; default Let's Encrypt)."`
	HealthPath  string       `yaml:"health-path" doc:"Path the front end's health check asks each backend for (http and https; default /). A tcp backend is checked by connecting."`
	Frontends   []string     `yaml:"frontends" required:"true" doc:"Instances that terminate the route."`
	Backends    []string     `yaml:"backends" required:"true" doc:"Instances that serve it, preferred."`
	BackendPort int          `yaml:"backend-port" required:"true" min:"1" max:"65535" doc:"Port the backends serve."`
	Failover    []string     `yaml:"failover" doc:"Backends used when every preferred backend is down, usually at the peer site."`
	AllowedFrom []string     `yaml:"allowed-from" doc:"Zones or 'internet' that may reach the front end (default internet)."`
}
