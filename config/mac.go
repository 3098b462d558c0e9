package config

import (
	"fmt"
	"net"
)

// MAC is an Ethernet address: flint's one MAC type. It is a comparable value,
// so it keys maps directly, and it prints in the colon form the store and
// the logs use (52:54:00:12:34:56).
type MAC [6]byte

// ParseMAC parses the two forms a MAC reaches flint in: iPXE's ${mac:hexhyp}
// (52-54-00-12-34-56) and the colon form (52:54:00:12:34:56), either case,
// and nothing else: the dotted and 20-byte forms net.ParseMAC also takes never
// come from a machine, and a strict parser keeps odd input out of the store.
func ParseMAC(s string) (MAC, error) {
	var m MAC
	if len(s) != len(m)*3-1 {
		return MAC{}, fmt.Errorf("%q is not a MAC address like 52-54-00-12-34-56 or 52:54:00:12:34:56", s)
	}
	sep := s[2]
	if sep != '-' && sep != ':' {
		return MAC{}, fmt.Errorf("%q is not a MAC address like 52-54-00-12-34-56 or 52:54:00:12:34:56", s)
	}
	for i := range m {
		at := i * 3
		if i > 0 && s[at-1] != sep {
			return MAC{}, fmt.Errorf("%q mixes separators or misplaces one: use 52-54-00-12-34-56 or 52:54:00:12:34:56", s)
		}
		hi, ok1 := hexDigit(s[at])
		lo, ok2 := hexDigit(s[at+1])
		if !ok1 || !ok2 {
			return MAC{}, fmt.Errorf("%q has a non-hex digit: use 52-54-00-12-34-56 or 52:54:00:12:34:56", s)
		}
		m[i] = hi<<4 | lo
	}
	return m, nil
}

// MACFromHW converts an address from a packet; ok is false unless it has
// exactly six bytes.
func MACFromHW(hw net.HardwareAddr) (MAC, bool) {
	var m MAC
	if len(hw) != len(m) {
		return MAC{}, false
	}
	copy(m[:], hw)
	return m, true
}

// IsZero reports whether m is 00:00:00:00:00:00 (no MAC).
func (m MAC) IsZero() bool { return m == MAC{} }

// String is the colon form, lower case: 52:54:00:12:34:56.
func (m MAC) String() string { return m.format(':') }

// HexHyp is the form of iPXE's ${mac:hexhyp}: 52-54-00-12-34-56. URLs use it.
func (m MAC) HexHyp() string { return m.format('-') }

// HW is m as a net.HardwareAddr, for packet libraries.
func (m MAC) HW() net.HardwareAddr { return net.HardwareAddr(append([]byte(nil), m[:]...)) }

func (m MAC) format(sep byte) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 0, len(m)*3-1)
	for i, o := range m {
		if i > 0 {
			b = append(b, sep)
		}
		b = append(b, digits[o>>4], digits[o&0x0f])
	}
	return string(b)
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
