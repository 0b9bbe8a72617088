package spec

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"net/netip"
	"slices"
	"strings"
)

// Tenants' networks and instances are ordinary zones and instances that
// carry a tenant field. holdfast serve writes them to a tenants file of its
// own (see ParseTenants), allocating each network from the tenancy pool;
// the rules below keep every tenant's resources apart from everyone else's
// whoever wrote the file.

// Defaults of a tenancy block.
const (
	DefaultTenantZoneType = "guest"
	DefaultTenantPrefix   = 24
)

// tenancy checks the pool and fills Tenancy.Net. The operator's zones must
// stay out of it: their subnets out of the cidr, their VLANs (at the
// tenancy's site) out of the vlans.
func (v *validator) tenancy() {
	t := v.s.Tenancy
	if t == nil {
		return
	}
	n := &t.Net
	n.Site = t.Site
	switch {
	case t.Site == "" && len(v.s.Sites) == 1:
		n.Site = SortedNames(v.s.Sites)[0]
	case t.Site == "" && len(v.s.Sites) > 1:
		v.diags.Errorf(t.Pos, "tenancy: missing site (the cloud has %d sites; name the one that serves tenants)", len(v.s.Sites))
	case t.Site != "":
		if _, ok := v.s.Sites[t.Site]; !ok {
			v.diags.Errorf(t.FieldPos("site"), "tenancy: site %q does not exist%s", t.Site, didYouMean(t.Site, v.s.Sites))
		}
	}
	if _, ok := v.s.Roles[t.Role]; !ok && t.Role != "" {
		v.diags.Errorf(t.FieldPos("role"), "tenancy: role %q does not exist%s", t.Role, didYouMean(t.Role, v.s.Roles))
	}
	n.ZoneType = cmpOr(t.ZoneType, DefaultTenantZoneType)
	n.Bits = DefaultTenantPrefix
	if t.Prefix != nil {
		n.Bits = *t.Prefix // bounds are the decoder's
	}
	n.Access = []string{Internet}
	if t.Access != nil {
		n.Access = slices.Clone(*t.Access)
		for _, a := range n.Access {
			if a != Internet {
				v.diags.Errorf(t.FieldPos("access"), "tenancy: access lists %q; tenant networks may reach only the internet (access: [internet]) or nothing (access: [])", a)
			}
		}
	}
	if t.VLANs.Lo < 1 || t.VLANs.Hi > 4094 {
		v.diags.Errorf(t.FieldPos("vlans"), "tenancy: vlans %s must lie within 1-4094", t.VLANs)
	}
	if t.CIDR != "" {
		p, err := netip.ParsePrefix(t.CIDR)
		switch {
		case err != nil || !p.Addr().Is4():
			v.diags.Errorf(t.FieldPos("cidr"), "tenancy: cidr %q is not an IPv4 subnet such as 10.128.0.0/12", t.CIDR)
		case p.Masked() != p:
			v.diags.Errorf(t.FieldPos("cidr"), "tenancy: cidr %q has host bits set; did you mean %s?", t.CIDR, p.Masked())
		case p.Bits() > n.Bits:
			at := "prefix"
			if !t.Has(at) {
				at = "cidr"
			}
			v.diags.Errorf(t.FieldPos(at), "tenancy: networks of /%d do not fit the pool %s; give a wider cidr or a longer prefix", n.Bits, p)
		default:
			n.Pool = p
		}
	}
	for _, name := range SortedNames(v.s.Zones) {
		z := v.s.Zones[name]
		if z.Tenant != "" {
			continue
		}
		if n.Pool.IsValid() && z.Net.Prefix.IsValid() && n.Pool.Overlaps(z.Net.Prefix) {
			v.diags.Errorf(t.FieldPos("cidr"), "tenancy: pool %s overlaps zone %q (%s); tenant networks need addresses of their own", n.Pool, name, z.Net.Prefix)
		}
		if z.Net.VLAN >= 0 && t.VLANs.Contains(z.Net.VLAN) && slices.Contains(v.zoneSites(z), n.Site) {
			v.diags.Errorf(t.FieldPos("vlans"), "tenancy: vlans %s include VLAN %d of zone %q", t.VLANs, z.Net.VLAN, name)
		}
	}
}

// tenantZones keeps tenant zones inside the pool and apart: a tenant zone
// reaches at most the internet and accepts pinholes only from its own
// tenant's zones and the internet, and no operator zone grants itself
// access to one.
func (v *validator) tenantZones() {
	t := v.s.Tenancy
	for _, name := range SortedNames(v.s.Zones) {
		z := v.s.Zones[name]
		if z.Tenant == "" {
			for _, a := range z.AccessTo {
				if tz, ok := v.s.Zones[a]; ok && tz.Tenant != "" {
					v.diags.Errorf(z.FieldPos("access-to"), "zone %q: access-to lists zone %q of tenant %q; a tenant's network is reached only through the pinholes it allows", name, a, tz.Tenant)
				}
			}
			continue
		}
		for _, a := range z.AccessTo {
			if a == Internet && (t == nil || slices.Contains(t.Net.Access, Internet)) {
				continue
			}
			why := "a tenant's zone may reach only the internet"
			if a == Internet {
				why = "the tenancy's access does not include the internet"
			}
			v.diags.Errorf(z.FieldPos("access-to"), "zone %q: access-to lists %q; %s", name, a, why)
		}
		for _, from := range z.PinholeAllowedFrom {
			if fz, ok := v.s.Zones[from]; ok && fz.Tenant != z.Tenant {
				v.diags.Errorf(z.FieldPos("pinhole-allowed-from"), "zone %q: pinhole-allowed-from lists %q, which is not a zone of tenant %q; a tenant's zone allows pinholes only from its own zones and the internet", name, from, z.Tenant)
			}
		}
		if t == nil {
			v.diags.Errorf(z.FieldPos("tenant"), "zone %q: a tenant's zone needs a tenancy block (the pool tenant networks come from)", name)
			continue
		}
		if t.Net.Site != "" && !slices.Equal(v.zoneSites(z), []string{t.Net.Site}) {
			at := "sites"
			if !z.Has(at) {
				at = "tenant"
			}
			v.diags.Errorf(z.FieldPos(at), "zone %q: a tenant's zone is carried by the tenancy's site only (sites: [%s])", name, t.Net.Site)
		}
		if p := z.Net.Prefix; p.IsValid() && t.Net.Pool.IsValid() {
			at := "cidr"
			if !z.Has(at) {
				at = "tenant"
			}
			switch {
			case !t.Net.Pool.Contains(p.Addr()) || p.Bits() < t.Net.Pool.Bits():
				v.diags.Errorf(z.FieldPos(at), "zone %q: cidr %s is outside the tenancy pool %s", name, p, t.Net.Pool)
			case p.Bits() != t.Net.Bits:
				v.diags.Errorf(z.FieldPos(at), "zone %q: cidr %s is a /%d; tenant networks are /%d", name, p, p.Bits(), t.Net.Bits)
			}
		}
		if z.Net.VLAN >= 0 && z.Net.VLAN <= 4094 && !t.VLANs.Contains(z.Net.VLAN) {
			at := "vlan"
			if !z.Has(at) {
				at = "tenant"
			}
			v.diags.Errorf(z.FieldPos(at), "zone %q: VLAN %d is outside the tenancy's vlans %s", name, z.Net.VLAN, t.VLANs)
		}
	}
}

// tenantInstance checks what only a tenant's instance must obey: its VMID
// comes from the tenancy's role and it depends on nothing of others.
// Its interfaces and rules are checked with everyone's.
func (v *validator) tenantInstance(in *Instance) {
	if in.Tenant == "" {
		return
	}
	if t := v.s.Tenancy; t != nil && in.Role != t.Role {
		at := "role"
		if !in.Has(at) {
			at = "tenant"
		}
		v.diags.Errorf(in.FieldPos(at), "instance %q: a tenant's instance takes its VMID from the tenancy's role %q", in.Name, t.Role)
	}
	for _, dep := range in.DependsOn {
		if d, ok := v.s.Instances[dep]; ok && d.Tenant != in.Tenant {
			v.diags.Errorf(in.FieldPos("depends-on"), "instance %q: depends-on names %q, which is not an instance of tenant %q", in.Name, dep, in.Tenant)
		}
	}
}

// tenantRuleZone checks that a tenant's instance names only its own
// tenant's zones (or the internet) in an ingress or egress rule.
func (v *validator) tenantRuleZone(in *Instance, r *Rule, field, name string) bool {
	if in.Tenant == "" || name == Internet {
		return true
	}
	if z := v.s.Zones[name]; z != nil && z.Tenant != in.Tenant {
		v.diags.Errorf(r.FieldPos(field), "instance %q: %s names zone %q, which is not a zone of tenant %q; a tenant's rules name only its own zones and the internet", in.Name, field, name, in.Tenant)
		return false
	}
	return true
}

// tenancyMismatch says why an instance may not use a zone.
func tenancyMismatch(in *Instance, z *Zone) string {
	switch {
	case in.Tenant == "":
		return fmt.Sprintf("zone %q is a network of tenant %q; only that tenant's instances may use it", z.Name, z.Tenant)
	case z.Tenant == "":
		return fmt.Sprintf("zone %q is not a zone of tenant %q; a tenant's instance uses only its own tenant's zones", z.Name, in.Tenant)
	default:
		return fmt.Sprintf("zone %q belongs to tenant %q, not to tenant %q", z.Name, z.Tenant, in.Tenant)
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Networks yields the networks the pool can give, in order, with their
// VLANs: the i-th is the i-th prefix-long subnet of the pool with the i-th
// VLAN of the range, as many as the smaller of the two holds. Call it
// after Validate. holdfast serve takes the first one whose subnet and VLAN
// no zone uses (see FreeTenantNetwork).
func (t *Tenancy) Networks() iter.Seq2[netip.Prefix, int] {
	return func(yield func(netip.Prefix, int) bool) {
		pool, bits := t.Net.Pool, t.Net.Bits
		if !pool.IsValid() || bits < pool.Bits() || bits > 30 || t.VLANs.Lo < 1 {
			return
		}
		step := uint64(1) << (32 - bits)
		base := uint64(AddrU32(pool.Addr()))
		end := base + uint64(PrefixSize(pool))
		vlan := t.VLANs.Lo
		for a := base; a < end && vlan <= t.VLANs.Hi; a, vlan = a+step, vlan+1 {
			if !yield(netip.PrefixFrom(U32Addr(uint32(a)), bits), vlan) {
				return
			}
		}
	}
}

// FreeTenantNetwork returns the first network of the pool whose subnet
// overlaps no zone of the spec and whose VLAN no zone at the tenancy's
// site uses: what a new tenant zone may take. ok is false when the spec
// has no tenancy block or the pool is full. Call it after Validate.
func (s *Spec) FreeTenantNetwork() (cidr netip.Prefix, vlan int, ok bool) {
	t := s.Tenancy
	if t == nil {
		return netip.Prefix{}, 0, false
	}
	usedVLAN := map[int]bool{}
	var nets []netip.Prefix
	for _, name := range SortedNames(s.Zones) {
		z := s.Zones[name]
		if z.Net.Prefix.IsValid() {
			nets = append(nets, z.Net.Prefix)
		}
		sites := z.Sites
		if len(sites) == 0 || slices.Contains(sites, t.Net.Site) {
			usedVLAN[z.Net.VLAN] = true
		}
	}
	for p, v := range t.Networks() {
		if !usedVLAN[v] && !slices.ContainsFunc(nets, p.Overlaps) {
			return p, v, true
		}
	}
	return netip.Prefix{}, 0, false
}

// sshKeyTypes are the key types OpenSSH accepts in authorized_keys (DSA
// keys are no longer among them).
var sshKeyTypes = []string{
	"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
	"sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
}

// maxSSHKey bounds one key line; a 16384-bit RSA key is under 3 KB.
const maxSSHKey = 8 << 10

// CheckSSHKey reports what is wrong with an OpenSSH public key, which must
// be one authorized_keys line without options: "<type> <base64 key>
// [comment]", of a known type, whose key data names the same type.
func CheckSSHKey(line string) error {
	if strings.ContainsAny(line, "\r\n\x00") {
		return errors.New("a key is one line; it holds a line break")
	}
	if len(line) > maxSSHKey {
		return fmt.Errorf("%d bytes is too long for a public key", len(line))
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return errors.New("want <type> <base64 key> [comment], e.g. ssh-ed25519 AAAAC3Nza... me@laptop")
	}
	if !slices.Contains(sshKeyTypes, f[0]) {
		return fmt.Errorf("unknown key type %q (known: %s; authorized_keys options are not accepted)", trimForMessage(f[0]), strings.Join(sshKeyTypes, ", "))
	}
	blob, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil {
		return fmt.Errorf("the key data is not base64: %w", err)
	}
	// The key data begins with its own type, as an SSH string.
	if len(blob) < 4 || uint64(binary.BigEndian.Uint32(blob))+4 > uint64(len(blob)) {
		return errors.New("the key data is malformed")
	}
	if inner := string(blob[4 : 4+binary.BigEndian.Uint32(blob)]); inner != f[0] {
		return fmt.Errorf("the key data is a %q key, not %q", trimForMessage(inner), f[0])
	}
	return nil
}

func trimForMessage(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
