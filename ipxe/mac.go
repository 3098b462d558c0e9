package ipxe

import (
	"fmt"
	"net"
)

// ParseMAC parses the MAC a machine puts in its script URL. It accepts iPXE's
// ${mac:hexhyp} form (52-54-00-12-34-56) and the colon form (52:54:00:12:34:56),
// either case, and nothing else: the dotted and 20-byte forms net.ParseMAC also
// takes never come from iPXE, and a strict parser keeps odd URLs out of the store.
func ParseMAC(s string) (net.HardwareAddr, error) {
	const octets = 6
	if len(s) != octets*3-1 {
		return nil, fmt.Errorf("%q is not a MAC address like 52-54-00-12-34-56 or 52:54:00:12:34:56", s)
	}
	sep := s[2]
	if sep != '-' && sep != ':' {
		return nil, fmt.Errorf("%q is not a MAC address like 52-54-00-12-34-56 or 52:54:00:12:34:56", s)
	}
	hw := make(net.HardwareAddr, octets)
	for i := range octets {
		at := i * 3
		if i > 0 && s[at-1] != sep {
			return nil, fmt.Errorf("%q mixes separators or misplaces one: use 52-54-00-12-34-56 or 52:54:00:12:34:56", s)
		}
		hi, ok1 := hexDigit(s[at])
		lo, ok2 := hexDigit(s[at+1])
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%q has a non-hex digit: use 52-54-00-12-34-56 or 52:54:00:12:34:56", s)
		}
		hw[i] = hi<<4 | lo
	}
	return hw, nil
}

// HexHyp formats a MAC the way iPXE's ${mac:hexhyp} does (52-54-00-12-34-56).
func HexHyp(hw net.HardwareAddr) string {
	b := make([]byte, 0, len(hw)*3)
	for i, o := range hw {
		if i > 0 {
			b = append(b, '-')
		}
		b = append(b, "0123456789abcdef"[o>>4], "0123456789abcdef"[o&0x0f])
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
