package lifecycle

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/netip"
	"time"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/store"
)

// TokenLen is the length of every token flint hands out: 64 hex digits (256 bits).
const TokenLen = 64

// maxBootTokens bounds the unspent config tokens one machine holds (a script
// fetched again, by iPXE retrying, issues another one).
const maxBootTokens = 4

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

// newToken is 256 random bits in hex.
func newToken() string {
	b := make([]byte, TokenLen/2)
	rand.Read(b) // never fails (crypto/rand panics rather than return short)
	return hex.EncodeToString(b)
}

// hashToken is what the store keeps of a token.
func hashToken(tok string) string {
	h := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(h[:])
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

// findToken returns the index of tok among the unexpired issued tokens, or
// -1. Every entry is compared, so the time taken does not say which matched.
func findToken(tokens []store.BootToken, tok string, now time.Time) int {
	h := hashToken(tok)
	found := -1
	for i, t := range tokens {
		if equalToken(t.Hash, h) && now.Before(t.Expires) && found < 0 {
			found = i
		}
	}
	return found
}

// issue adds a token to the boot record: expired ones are dropped and at most
// maxBootTokens stay (the oldest go).
func issue(b *store.Boot, tok string, ip netip.Addr, now time.Time, ttl time.Duration) {
	kept := b.Tokens[:0]
	for _, t := range b.Tokens {
		if now.Before(t.Expires) {
			kept = append(kept, t)
		}
	}
	kept = append(kept, store.BootToken{Hash: hashToken(tok), IP: ip, Issued: now, Expires: now.Add(ttl)})
	if len(kept) > maxBootTokens {
		kept = kept[len(kept)-maxBootTokens:]
	}
	b.Tokens = append([]store.BootToken(nil), kept...)
}
