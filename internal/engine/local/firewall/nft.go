package firewall

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Apply makes the namespace's table inet holdfast exactly what in asks
// for. It replaces the table in one transaction — create it if missing,
// delete it, create it anew with every set, element, chain and rule — so
// the kernel switches from the old ruleset to the new one at once: there
// is never a moment without rules, nor with half of them. (During the
// commit itself a packet may be dropped — the old chains, already empty,
// are unhooked a moment after the switch — but never wrongly accepted:
// see lastDrop.) Running it again with the same input changes nothing;
// running it over a damaged table repairs it.
func Apply(ns netns.NsHandle, in Input) error {
	rs, err := build(in)
	if err != nil {
		return err
	}
	c, err := connect(ns)
	if err != nil {
		return err
	}
	t := table()
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	for i, s := range rs.sets {
		ks := s.kernel(t, uint32(i+1))
		if err := c.AddSet(ks, nil); err != nil {
			return fmt.Errorf("set %s: %w", s.name, err)
		}
		// One message per chunk: a netlink attribute holds at most 64 KiB.
		for chunk := range slices.Chunk(s.kernelElements(), elementsPerMessage) {
			if err := c.SetAddElements(ks, chunk); err != nil {
				return fmt.Errorf("set %s: %w", s.name, err)
			}
		}
	}
	addChains(c, t, rs.chains)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("replace table inet %s: %w", TableName, err)
	}
	return nil
}

// addChains adds chains and their rules to t in c's batch: every chain
// first, as a rule may jump to a later one.
func addChains(c *nftables.Conn, t *nftables.Table, chs []*chain) {
	chains := map[string]*nftables.Chain{}
	for _, ch := range chs {
		chains[ch.name] = c.AddChain(ch.kernel(t))
	}
	for _, ch := range chs {
		for _, r := range ch.rules {
			c.AddRule(&nftables.Rule{Table: t, Chain: chains[ch.name], Exprs: r.exprs})
		}
	}
}

// Delete removes the table. A missing table is not an error: the batch
// creates it (a no-op when it exists) before deleting it.
func Delete(ns netns.NsHandle) error {
	c, err := connect(ns)
	if err != nil {
		return err
	}
	t := table()
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("delete table inet %s: %w", TableName, err)
	}
	return nil
}

// Verify reads the namespace's table back and names every difference from
// what Apply would make: a missing table, chain or set, a chain's hook or
// policy, its rules, a set's type or its elements. It is empty when the
// table is intact. Verify changes nothing.
func Verify(ns netns.NsHandle, in Input) (drift []string, err error) {
	rs, err := build(in)
	if err != nil {
		return nil, err
	}
	c, err := connect(ns)
	if err != nil {
		return nil, err
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	if !slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == TableName }) {
		return []string{fmt.Sprintf("table inet %s is missing", TableName)}, nil
	}
	t := table()
	chainDrift, err := verifyChains(c, t, rs)
	if err != nil {
		return nil, err
	}
	setDrift, err := verifySets(c, t, rs)
	if err != nil {
		return nil, err
	}
	return append(chainDrift, setDrift...), nil
}

func verifyChains(c *nftables.Conn, t *nftables.Table, rs *ruleset) ([]string, error) {
	all, err := c.ListChainsOfTableFamily(t.Family)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	got := map[string]*nftables.Chain{}
	for _, ch := range all {
		if ch.Table != nil && ch.Table.Name == TableName {
			got[ch.Name] = ch
		}
	}
	var drift []string
	for _, want := range rs.chains {
		ch, ok := got[want.name]
		if !ok {
			drift = append(drift, fmt.Sprintf("chain %s is missing", want.name))
			continue
		}
		delete(got, want.name)
		if d := want.hookDrift(ch); d != "" {
			drift = append(drift, fmt.Sprintf("chain %s: %s", want.name, d))
		}
		rules, err := c.GetRules(t, ch)
		if err != nil {
			return nil, fmt.Errorf("chain %s: list rules: %w", want.name, err)
		}
		d, err := want.ruleDrift(rules)
		if err != nil {
			return nil, err
		}
		drift = append(drift, d...)
	}
	for _, name := range sortedKeys(got) {
		drift = append(drift, fmt.Sprintf("chain %s is not Holdfast's", name))
	}
	return drift, nil
}

func (want *chain) hookDrift(got *nftables.Chain) string {
	h := want.base
	switch {
	case h == nil && got.Hooknum == nil:
		return ""
	case h == nil:
		return "is a base chain, want a regular one"
	case got.Hooknum == nil || got.Priority == nil || got.Policy == nil:
		return fmt.Sprintf("is a regular chain, want type %s hook %s", h.typ, h.hookName)
	case got.Type != h.typ || *got.Hooknum != h.num || *got.Priority != h.prio:
		return fmt.Sprintf("type %s hook %d priority %d, want type %s hook %s priority %s (%d)", got.Type, *got.Hooknum, *got.Priority, h.typ, h.hookName, h.prioName, h.prio)
	case *got.Policy != h.policy:
		return fmt.Sprintf("policy %s, want %s", policyName(*got.Policy), policyName(h.policy))
	}
	return ""
}

// ruleDrift compares rules by their expressions as the kernel encodes
// them, in order.
func (want *chain) ruleDrift(got []*nftables.Rule) ([]string, error) {
	wantKeys := make([]string, len(want.rules))
	for i, r := range want.rules {
		k, err := exprKey(r.exprs)
		if err != nil {
			return nil, err
		}
		wantKeys[i] = k
	}
	gotKeys := make([]string, len(got))
	for i, r := range got {
		k, err := exprKey(r.Exprs)
		if err != nil {
			return nil, fmt.Errorf("chain %s: rule %d: %w", want.name, i+1, err)
		}
		gotKeys[i] = k
	}
	if slices.Equal(wantKeys, gotKeys) {
		return nil, nil
	}
	var drift []string
	if len(got) != len(want.rules) {
		drift = append(drift, fmt.Sprintf("chain %s: %d rules, want %d", want.name, len(got), len(want.rules)))
	}
	unmatched := slices.Clone(gotKeys)
	for i, k := range wantKeys {
		if j := slices.Index(unmatched, k); j >= 0 {
			unmatched[j] = "" // each kernel rule accounts for one wanted rule
			continue
		}
		drift = append(drift, fmt.Sprintf("chain %s: rule %q is missing", want.name, want.rules[i]))
	}
	extra := 0
	for _, k := range unmatched {
		if k != "" {
			extra++
		}
	}
	switch {
	case extra == 1:
		drift = append(drift, fmt.Sprintf("chain %s: 1 rule is not Holdfast's", want.name))
	case extra > 1:
		drift = append(drift, fmt.Sprintf("chain %s: %d rules are not Holdfast's", want.name, extra))
	case len(drift) == 0:
		drift = append(drift, fmt.Sprintf("chain %s: rules are out of order", want.name))
	}
	return drift, nil
}

// exprKey is a rule's identity: its expressions as the kernel takes them.
// Set IDs only bind a lookup to a set inside one transaction; the kernel
// reports set names.
func exprKey(exprs []expr.Any) (string, error) {
	var b bytes.Buffer
	for _, e := range exprs {
		if l, ok := e.(*expr.Lookup); ok && l.SetID != 0 {
			cp := *l
			cp.SetID = 0
			e = &cp
		}
		m, err := expr.Marshal(byte(nftables.TableFamilyINet), e)
		if err != nil {
			return "", fmt.Errorf("encode %T: %w", e, err)
		}
		b.Write(m)
	}
	return b.String(), nil
}

func verifySets(c *nftables.Conn, t *nftables.Table, rs *ruleset) ([]string, error) {
	sets, err := c.GetSets(t)
	if err != nil {
		return nil, fmt.Errorf("list sets: %w", err)
	}
	got := map[string]*nftables.Set{}
	for _, s := range sets {
		got[s.Name] = s
	}
	var drift []string
	for _, want := range rs.sets {
		s, ok := got[want.name]
		if !ok {
			drift = append(drift, fmt.Sprintf("set %s is missing", want.name))
			continue
		}
		delete(got, want.name)
		kt := keyType(want.key)
		if s.KeyType.Name != kt.Name || s.KeyType.Bytes != kt.Bytes || s.Interval != want.interval || s.Concatenation != want.concat() || s.IsMap {
			drift = append(drift, fmt.Sprintf("set %s: type %s (%d bytes, interval %t), want %s (%d bytes, interval %t)",
				want.name, s.KeyType.Name, s.KeyType.Bytes, s.Interval, kt.Name, kt.Bytes, want.interval))
			continue
		}
		s.Table = t
		kernel, err := c.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("set %s: list elements: %w", want.name, err)
		}
		gotElems, err := want.decode(kernel)
		if err != nil {
			return nil, fmt.Errorf("set %s: %w", want.name, err)
		}
		wantElems := make([]string, len(want.elems))
		for i, e := range want.elems {
			wantElems[i] = want.format(e)
		}
		drift = append(drift, elementDrift(want.name, gotElems, wantElems)...)
	}
	for _, name := range sortedKeys(got) {
		drift = append(drift, fmt.Sprintf("set %s is not Holdfast's", name))
	}
	return drift, nil
}

// elementDrift names missing and foreign elements, a few of each.
func elementDrift(set string, got, want []string) []string {
	var missing, extra []string
	have := map[string]bool{}
	for _, e := range got {
		have[e] = true
	}
	wanted := map[string]bool{}
	for _, e := range want {
		wanted[e] = true
		if !have[e] {
			missing = append(missing, e)
		}
	}
	for _, e := range got {
		if !wanted[e] {
			extra = append(extra, e)
		}
	}
	var drift []string
	list := func(what string, es []string) {
		if len(es) == 0 {
			return
		}
		const shown = 5
		more := ""
		if len(es) > shown {
			more = fmt.Sprintf(" and %d more", len(es)-shown)
			es = es[:shown]
		}
		drift = append(drift, fmt.Sprintf("set %s: %s { %s }%s", set, what, strings.Join(es, ", "), more))
	}
	list("missing", missing)
	list("not Holdfast's", extra)
	return drift
}

func table() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}
}

// elementsPerMessage keeps each element message far below the 64 KiB a
// netlink attribute can hold: the widest element, ifname . ipv4 start and
// end, takes under 100 bytes.
const elementsPerMessage = 256

func (s *set) kernel(t *nftables.Table, id uint32) *nftables.Set {
	return &nftables.Set{Table: t, ID: id, Name: s.name, KeyType: keyType(s.key), Interval: s.interval, Concatenation: s.concat()}
}

// kernelElements encodes the elements as the kernel's set backends take
// them. A concatenation with ranges (pipapo) takes each element's start
// key and end key; a one-field interval set (rbtree) takes a start element
// and, unless the range ends at the top of the field, an end element one
// past its last value.
func (s *set) kernelElements() []nftables.SetElement {
	var out []nftables.SetElement
	for _, e := range s.elems {
		switch {
		case s.concat():
			out = append(out, nftables.SetElement{Key: keyBytes(e, false, true), KeyEnd: keyBytes(e, true, true)})
		case s.interval:
			out = append(out, nftables.SetElement{Key: keyBytes(e, false, false)})
			if end, ok := inc(e[0].hi); ok {
				out = append(out, nftables.SetElement{Key: end, IntervalEnd: true})
			}
		default:
			out = append(out, nftables.SetElement{Key: keyBytes(e, false, false)})
		}
	}
	return out
}

// decode reads the kernel's elements back into printed elements.
func (s *set) decode(kernel []nftables.SetElement) ([]string, error) {
	var out []string
	if s.concat() || !s.interval {
		for _, k := range kernel {
			lo, err := splitKey(k.Key, s.key, s.concat())
			if err != nil {
				return nil, err
			}
			hi := lo
			if len(k.KeyEnd) > 0 {
				if hi, err = splitKey(k.KeyEnd, s.key, s.concat()); err != nil {
					return nil, err
				}
			}
			e := make(box, len(lo))
			for i := range lo {
				e[i] = span{lo: lo[i], hi: hi[i]}
			}
			out = append(out, s.format(e))
		}
		return out, nil
	}
	// An rbtree lists starts and ends (flagged) in no promised order; a
	// start with no end runs to the top of the field.
	width := s.key[0].width
	points := slices.Clone(kernel)
	for _, p := range points {
		if len(p.Key) != width {
			return nil, fmt.Errorf("element %x: want %d bytes", p.Key, width)
		}
	}
	slices.SortStableFunc(points, func(a, b nftables.SetElement) int {
		if c := bytes.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		switch {
		case a.IntervalEnd == b.IntervalEnd:
			return 0
		case a.IntervalEnd:
			return -1 // an end closes the range before another starts at it
		}
		return 1
	})
	for i := 0; i < len(points); i++ {
		p := points[i]
		if p.IntervalEnd {
			out = append(out, fmt.Sprintf("(end %s with no start)", s.key[0].print(exact(p.Key))))
			continue
		}
		hi := maxOf(width)
		if i+1 < len(points) && points[i+1].IntervalEnd {
			hi, _ = dec(points[i+1].Key)
			i++
		}
		out = append(out, s.format(box{{lo: p.Key, hi: hi}}))
	}
	return out, nil
}

func (ch *chain) kernel(t *nftables.Table) *nftables.Chain {
	c := &nftables.Chain{Name: ch.name, Table: t}
	if h := ch.base; h != nil {
		num, prio, policy := h.num, h.prio, h.policy
		c.Type, c.Hooknum, c.Priority, c.Policy = h.typ, &num, &prio, &policy
	}
	return c
}

// connect opens nftables in the namespace. The netlink socket is created
// inside ns on a thread of its own; the calling thread never changes
// namespace.
func connect(ns netns.NsHandle) (*nftables.Conn, error) {
	if !ns.IsOpen() {
		return nil, fmt.Errorf("network namespace handle %d is not open", ns)
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)), nftables.WithSockOptions(largeBuffers))
	if err != nil {
		return nil, fmt.Errorf("nftables in namespace %s: %w", ns, err)
	}
	return c, nil
}

// Socket buffers: a transaction is one sendmsg and must fit the send
// buffer (a cloud's sets run to megabytes), and the kernel queues an ack
// per message before the first is read. The *FORCE options pass the
// sysctl caps (we hold CAP_NET_ADMIN); memory is only taken as used.
const (
	sendBuffer    = 64 << 20
	receiveBuffer = 16 << 20
)

// largeBuffers is an nftables.SockOption. It is generic only so that the
// netlink connection type is inferred, not named: naming it would import
// mdlayher/netlink, a module this package otherwise only uses through
// google/nftables.
func largeBuffers[C interface {
	SyscallConn() (syscall.RawConn, error)
}](conn C) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sendBuffer); serr != nil {
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, receiveBuffer)
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("netlink socket buffers: %w", serr)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
