package spec

import (
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Size is an amount of memory or disk in MiB. In YAML: an integer (MiB) or a
// number with a unit: M/MiB, G/GiB, T/TiB (binary units, as Proxmox reads them).
type Size struct {
	MiB int64
}

// ParseSize reads "4096", "4G", "4GiB", "512M", "1T".
func ParseSize(s string) (Size, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return Size{}, fmt.Errorf("size %q: want a number with an optional unit (M, G, T), e.g. 4G", s)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return Size{}, fmt.Errorf("size %q: %w", s, err)
	}
	var mul int64
	switch strings.ToUpper(strings.TrimSpace(s[i:])) {
	case "", "M", "MB", "MI", "MIB":
		mul = 1
	case "G", "GB", "GI", "GIB":
		mul = 1 << 10
	case "T", "TB", "TI", "TIB":
		mul = 1 << 20
	default:
		return Size{}, fmt.Errorf("size %q: unknown unit %q (use M, G or T)", s, s[i:])
	}
	if n > (1<<62)/mul {
		return Size{}, fmt.Errorf("size %q is too large", s)
	}
	return Size{MiB: n * mul}, nil
}

func (s *Size) decodeNode(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!str") {
		return fmt.Errorf("expected a size such as 4G or 4096, got %s", describe(n))
	}
	v, err := ParseSize(n.Value)
	if err != nil {
		return err
	}
	if v.MiB <= 0 {
		return fmt.Errorf("size must be positive, got %q", n.Value)
	}
	*s = v
	return nil
}

func (s Size) String() string {
	switch {
	case s.MiB%(1<<20) == 0 && s.MiB != 0:
		return fmt.Sprintf("%dT", s.MiB>>20)
	case s.MiB%(1<<10) == 0 && s.MiB != 0:
		return fmt.Sprintf("%dG", s.MiB>>10)
	default:
		return fmt.Sprintf("%dM", s.MiB)
	}
}

// Range is an inclusive integer range, written "1000-1999".
type Range struct {
	Lo, Hi int
}

// ParseRange reads "lo-hi" or a single number.
func ParseRange(s string) (Range, error) {
	lo, hi, found := strings.Cut(strings.TrimSpace(s), "-")
	a, err := strconv.Atoi(strings.TrimSpace(lo))
	if err != nil {
		return Range{}, fmt.Errorf("range %q: want lo-hi, e.g. 1000-1999", s)
	}
	b := a
	if found {
		if b, err = strconv.Atoi(strings.TrimSpace(hi)); err != nil {
			return Range{}, fmt.Errorf("range %q: want lo-hi, e.g. 1000-1999", s)
		}
	}
	if b < a {
		return Range{}, fmt.Errorf("range %q: end is below start", s)
	}
	return Range{Lo: a, Hi: b}, nil
}

func (r *Range) decodeNode(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!str") {
		return fmt.Errorf("expected a range such as 1000-1999, got %s", describe(n))
	}
	v, err := ParseRange(n.Value)
	if err != nil {
		return err
	}
	*r = v
	return nil
}

func (r Range) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(r.Lo)
	}
	return fmt.Sprintf("%d-%d", r.Lo, r.Hi)
}

// Contains reports whether v is in the range.
func (r Range) Contains(v int) bool { return v >= r.Lo && v <= r.Hi }

// Ports is a list of port ranges. In YAML: 443, "8000-8100", or a list of them.
type Ports []Range

func (ps *Ports) decodeNode(n *yaml.Node) error {
	items := []*yaml.Node{n}
	if n.Kind == yaml.SequenceNode {
		items = n.Content
	}
	out := make(Ports, 0, len(items))
	for _, it := range items {
		if it.Kind == yaml.AliasNode {
			it = it.Alias
		}
		if it.Kind != yaml.ScalarNode || (it.Tag != "!!int" && it.Tag != "!!str") {
			return fmt.Errorf("expected a port or range such as 443 or 8000-8100, got %s", describe(it))
		}
		r, err := ParseRange(it.Value)
		if err != nil {
			return err
		}
		if r.Lo < 1 || r.Hi > 65535 {
			return fmt.Errorf("port %s is outside 1-65535", it.Value)
		}
		out = append(out, r)
	}
	*ps = out
	return nil
}

// Strings renders each range.
func (ps Ports) Strings() []string {
	out := make([]string, len(ps))
	for i, r := range ps {
		out[i] = r.String()
	}
	return out
}

// decodeShorthand lets a port be written as 443 or "53/udp" as well as a mapping.
func (p *Port) decodeShorthand(n *yaml.Node) (handled bool, err error) {
	if n.Kind != yaml.ScalarNode {
		return false, nil
	}
	num, proto, slash := strings.Cut(n.Value, "/")
	v, err := strconv.Atoi(num)
	if err != nil || v < 1 || v > 65535 {
		return true, fmt.Errorf("expected a port such as 443 or \"53/udp\", got %q", n.Value)
	}
	proto = strings.ToLower(proto)
	if slash && proto != "tcp" && proto != "udp" { // "443/" is not a port
		return true, fmt.Errorf("port %q: protocol must be tcp or udp", n.Value)
	}
	p.Port, p.Proto = v, proto
	return true, nil
}
