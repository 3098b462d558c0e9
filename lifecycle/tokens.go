package lifecycle

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"time"

	"github.com/flint-boot/flint/config"
)

// TokenLen is the length of every token flint hands out: 64 hex digits (256 bits).
const TokenLen = 64

// ValidToken reports whether s has the shape of a token: exactly TokenLen
// lower-case hex digits. Anything else is refused before any lookup.
func ValidToken(s string) bool {
	if len(s) != TokenLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// newToken is 256 random bits in hex (the nonce of a delivery).
func newToken() string {
	b := make([]byte, TokenLen/2)
	rand.Read(b) // never fails (crypto/rand panics rather than return short)
	return hex.EncodeToString(b)
}

// A boot token carries what proves it, so issuing one writes nothing: its
// issue time (8 bytes), 8 random bytes, and the first 16 bytes of an HMAC
// (flint's report key) over the MAC it was issued for, the issue time, the
// random bytes and, in off mode, the address the script went to. It is
// valid until security.token_ttl after its issue time, and spent once the
// machine's config was delivered after it was issued (Boot.Delivered): the
// first delivery spends every token of that boot.
const (
	bootIssuedLen = 8
	bootNonceLen  = 8
	bootMACLen    = TokenLen/2 - bootIssuedLen - bootNonceLen
)

// issueBootToken makes machine mac's boot token, issued now (bound to ip in
// off mode, where ip is the address its script goes to).
func (m *Manager) issueBootToken(mac config.MAC, ip netip.Addr, now time.Time) string {
	b := make([]byte, TokenLen/2)
	binary.BigEndian.PutUint64(b, uint64(now.UnixNano()))
	rand.Read(b[bootIssuedLen : bootIssuedLen+bootNonceLen])
	copy(b[bootIssuedLen+bootNonceLen:], m.bootMAC(mac, ip, b[:bootIssuedLen+bootNonceLen]))
	return hex.EncodeToString(b)
}

func (m *Manager) bootMAC(mac config.MAC, ip netip.Addr, issuedAndNonce []byte) []byte {
	h := hmac.New(sha256.New, m.reportKey)
	h.Write([]byte("boot\x00" + mac.String() + "\x00"))
	if m.cfg.DHCP.Mode == config.ModeOff {
		h.Write(ip.AsSlice())
	}
	h.Write([]byte{0})
	h.Write(issuedAndNonce)
	return h.Sum(nil)[:bootMACLen]
}

// checkBootToken verifies tok for machine mac asked from ip: issued by this
// flint for mac (and, in off mode, to ip), unexpired; it returns its issue
// time. Whether it is spent is the caller's to check against the record.
func (m *Manager) checkBootToken(tok string, mac config.MAC, ip netip.Addr, now time.Time) (time.Time, bool) {
	if !ValidToken(tok) {
		return time.Time{}, false
	}
	b, err := hex.DecodeString(tok)
	if err != nil || len(b) != TokenLen/2 {
		return time.Time{}, false
	}
	want := m.bootMAC(mac, ip, b[:bootIssuedLen+bootNonceLen])
	if subtle.ConstantTimeCompare(want, b[bootIssuedLen+bootNonceLen:]) != 1 {
		return time.Time{}, false
	}
	issued := time.Unix(0, int64(binary.BigEndian.Uint64(b)))
	ttl := m.cfg.Security.TokenTTL.Duration
	if issued.After(now.Add(time.Minute)) || now.Sub(issued) >= ttl {
		return issued, false // from the future (a clock stepped back) or expired
	}
	return issued, true
}

// derive makes the token of a given purpose from the report key, the MAC and
// the delivery's nonce. The installer of a disk install and the installed
// system share the nonce, hence the report token.
func (m *Manager) derive(purpose string, mac config.MAC, nonce string) string {
	h := hmac.New(sha256.New, m.reportKey)
	h.Write([]byte(purpose + "\x00" + mac.String() + "\x00" + nonce))
	return hex.EncodeToString(h.Sum(nil))
}

// Purposes of derived tokens.
const (
	purposeReport    = "report"
	purposeInstalled = "installed"
)

// equalToken compares in constant time.
func equalToken(a, b string) bool {
	return len(a) == len(b) && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
