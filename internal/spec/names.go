package spec

import (
	"errors"
	"fmt"
	"strings"
)

// MaxName is the longest name of a spec object: names become DNS labels
// (RFC 1035 section 2.3.4) and engines derive host names from them.
const MaxName = 63

// CheckName says why s cannot name a spec object — a site, zone, role,
// template, instance — or returns nil when it can: a letter, then letters,
// digits or '-', not ending in '-', at most MaxName characters. It is the
// one definition of a valid name: the decoder checks every name of a spec
// file with it, and holdfast serve checks with it every name it will write
// into the tenants file before it records a request.
func CheckName(s string) error {
	if namePattern.MatchString(s) {
		return nil
	}
	switch {
	case s == "":
		return errors.New("must not be empty")
	case len(s) > MaxName:
		return fmt.Errorf("is %d characters long; a name has at most %d", len(s), MaxName)
	case !isLetter(s[0]):
		return errors.New("must start with a letter")
	case s[len(s)-1] == '-':
		return errors.New("must not end in '-'")
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return r > 0x7f || !isLetter(byte(r)) && !isDigit(byte(r)) && r != '-' }); i >= 0 {
		return fmt.Errorf("may hold only letters, digits and '-', not %q", []rune(s[i:])[0])
	}
	return errors.New("is not a valid name") // unreachable while the cases above cover namePattern
}

// ValidName reports whether s may name a site, zone, instance or other
// spec object (it becomes a DNS label).
func ValidName(s string) bool { return CheckName(s) == nil }

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
