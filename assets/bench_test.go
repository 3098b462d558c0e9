package assets

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
)

// BenchmarkVerifyFlatcarFile measures what sync spends per byte after a
// download: one read computing SHA-256, SHA-512 and the OpenPGP signature
// check together.
func BenchmarkVerifyFlatcarFile(b *testing.B) {
	key := newKey(b, "bench")
	data := randomBytes(1, 64<<20)
	p := filepath.Join(b.TempDir(), "file")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		b.Fatal(err)
	}
	sig := detachSign(b, key, data)
	kr := openpgp.EntityList{key}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		v, err := newSigVerifier("file", kr, sig)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, _, err := hashFile(p, v); err != nil {
			b.Fatal(err)
		}
		if err := v.finish(); err != nil {
			b.Fatal(err)
		}
	}
}
