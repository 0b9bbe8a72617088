package compile

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
)

// ID names a resource: its kind, the site it belongs to, and its name
// within the kind and site. Every resource belongs to a site; a resource
// that is one per site (the site itself, its firewall) has no name. Its
// printed form, kind/site/name or kind/site, is what the store keeps, the
// plan shows and engines may label what they make with, so String and
// ParseID are the only places that know it.
type ID struct {
	Kind string
	Site string
	Name string
}

// Resource kinds.
const (
	ResSite     = "site"
	ResNetwork  = "network"
	ResFirewall = "firewall"
	ResInstance = "instance"
	ResRoute    = "route"
	// ResMember is an instance's membership of the overlay: the
	// certificate Holdfast's overlay CA issued it.
	ResMember = "member"
)

// named says, for each kind Holdfast knows, whether its IDs carry a name.
// Kinds not listed (an engine's own) may have one or not.
var named = map[string]bool{
	ResSite: false, ResFirewall: false,
	ResNetwork: true, ResInstance: true, ResRoute: true, ResMember: true,
}

// SiteID is the ID of a site resource.
func SiteID(site string) ID { return ID{Kind: ResSite, Site: site} }

// FirewallID is the ID of a site's firewall.
func FirewallID(site string) ID { return ID{Kind: ResFirewall, Site: site} }

// NetworkID is the ID of a zone's network at a site.
func NetworkID(site, zone string) ID { return ID{Kind: ResNetwork, Site: site, Name: zone} }

// InstanceID is the ID of an instance.
func InstanceID(site, name string) ID { return ID{Kind: ResInstance, Site: site, Name: name} }

// RouteID is the ID of a route at its front ends' site.
func RouteID(site, name string) ID { return ID{Kind: ResRoute, Site: site, Name: name} }

// MemberID is the ID of an instance's overlay membership.
func MemberID(site, name string) ID { return ID{Kind: ResMember, Site: site, Name: name} }

// String prints the ID as kind/site/name, or kind/site when it has no name.
func (id ID) String() string {
	if id.Name == "" {
		return id.Kind + "/" + id.Site
	}
	return id.Kind + "/" + id.Site + "/" + id.Name
}

// IsZero reports whether the ID is unset.
func (id ID) IsZero() bool { return id == ID{} }

// Compare orders IDs as their printed forms sort.
func (id ID) Compare(o ID) int { return cmp.Compare(id.String(), o.String()) }

// ErrBadID is returned (wrapped) by ParseID.
var ErrBadID = errors.New("not a resource ID")

// ParseID reads an ID printed by String. The parts are non-empty and hold
// no slash; a kind Holdfast knows has a name exactly when its IDs do.
func ParseID(s string) (ID, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return ID{}, fmt.Errorf("%w: %q is not kind/site or kind/site/name", ErrBadID, s)
	}
	for _, p := range parts {
		if p == "" {
			return ID{}, fmt.Errorf("%w: %q has an empty part", ErrBadID, s)
		}
	}
	id := ID{Kind: parts[0], Site: parts[1]}
	if len(parts) == 3 {
		id.Name = parts[2]
	}
	if want, known := named[id.Kind]; known && want != (id.Name != "") {
		if want {
			return ID{}, fmt.Errorf("%w: %q: a %s ID is %s/site/name", ErrBadID, s, id.Kind, id.Kind)
		}
		return ID{}, fmt.Errorf("%w: %q: a %s ID is %s/site", ErrBadID, s, id.Kind, id.Kind)
	}
	return id, nil
}

// MarshalText prints the ID, so that it is a string in JSON.
func (id ID) MarshalText() ([]byte, error) {
	if id.IsZero() {
		return nil, fmt.Errorf("%w: empty", ErrBadID)
	}
	return []byte(id.String()), nil
}

// UnmarshalText parses a printed ID.
func (id *ID) UnmarshalText(b []byte) error {
	got, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = got
	return nil
}
