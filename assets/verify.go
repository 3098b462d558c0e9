package assets

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// HashError is a file whose hash is not the published one. Sync deleted it.
type HashError struct {
	File     string // the file's name in the release (flatcar_production_pxe.vmlinuz)
	Algo     string // sha256 or sha512
	Expected string
	Got      string
	Source   string // where the expected hash came from (URL of the checksum file)
}

func (e *HashError) Error() string {
	return fmt.Sprintf("%s: %s mismatch: expected %s (from %s), got %s; the download was deleted and the store is unchanged: the mirror may be corrupt or mid-update, check it and run sync again",
		e.File, e.Algo, e.Expected, e.Source, e.Got)
}

// SignatureError is a file whose detached OpenPGP signature does not verify
// with the configured key. Sync deleted it.
type SignatureError struct {
	File   string
	KeyID  string // key that made the signature (16 hex digits), when known
	Reason string
}

func (e *SignatureError) Error() string {
	by := ""
	if e.KeyID != "" {
		by = " by key " + e.KeyID
	}
	return fmt.Sprintf("%s: bad signature%s: %s; the download was deleted and the store is unchanged", e.File, by, e.Reason)
}

// loadKeyring reads assets.flatcar.signing_key: the armored public key
// itself, or the name of a file holding it.
func loadKeyring(setting string) (openpgp.EntityList, error) {
	text := []byte(setting)
	if !strings.Contains(setting, "-----BEGIN PGP PUBLIC KEY BLOCK-----") {
		b, err := os.ReadFile(setting)
		if err != nil {
			return nil, fmt.Errorf("assets.flatcar.signing_key: %w (give the path of the ASCII-armored Flatcar image signing key, e.g. Flatcar_Image_Signing_Key.asc from https://www.flatcar.org/security/image-signing-key/)", err)
		}
		text = b
	}
	kr, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(text))
	if err != nil {
		return nil, fmt.Errorf("assets.flatcar.signing_key: not an ASCII-armored OpenPGP public key (%v)", err)
	}
	if len(kr) == 0 {
		return nil, errors.New("assets.flatcar.signing_key holds no key")
	}
	return kr, nil
}

// fingerprints names the keys of a keyring for messages.
func fingerprints(kr openpgp.EntityList) string {
	var fps []string
	for _, e := range kr {
		fps = append(fps, strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint)))
	}
	return strings.Join(fps, ", ")
}

// sigVerifier checks a detached signature while the file is hashed: it is
// an io.Writer fed with the file's bytes.
type sigVerifier struct {
	file  string
	kr    openpgp.EntityList
	sig   []byte
	keyID string
	pw    *io.PipeWriter
	done  chan error
	// signer is the fingerprint of the key that made a good signature.
	signer string
}

// newSigVerifier parses the signature (binary, as Flatcar publishes it, or
// armored) and starts verifying whatever is written to it. Expiry and
// revocation are judged at the signature's creation time, as gpg does: a
// release signed while its subkey was valid stays valid after the subkey
// expires; a key revoked as compromised is refused whatever the date.
func newSigVerifier(file string, kr openpgp.EntityList, sig []byte) (*sigVerifier, error) {
	if bytes.Contains(sig[:min(len(sig), 64)], []byte("-----BEGIN PGP SIGNATURE")) {
		blk, err := armor.Decode(bytes.NewReader(sig))
		if err != nil {
			return nil, &SignatureError{File: file, Reason: "cannot read the armored signature: " + err.Error()}
		}
		if sig, err = io.ReadAll(blk.Body); err != nil {
			return nil, &SignatureError{File: file, Reason: "cannot read the armored signature: " + err.Error()}
		}
	}
	p, err := packet.NewReader(bytes.NewReader(sig)).Next()
	if err != nil {
		return nil, &SignatureError{File: file, Reason: "the .sig file is not an OpenPGP signature: " + err.Error()}
	}
	s, ok := p.(*packet.Signature)
	if !ok {
		return nil, &SignatureError{File: file, Reason: "the .sig file holds no OpenPGP signature"}
	}
	v := &sigVerifier{file: file, kr: kr, sig: sig, done: make(chan error, 1)}
	if s.IssuerKeyId != nil {
		v.keyID = fmt.Sprintf("%016X", *s.IssuerKeyId)
	}
	created := s.CreationTime
	pr, pw := io.Pipe()
	v.pw = pw
	go func() {
		cfg := &packet.Config{Time: func() time.Time { return created }}
		_, e, err := openpgp.VerifyDetachedSignature(kr, pr, bytes.NewReader(sig), cfg)
		pr.CloseWithError(errors.New("signature check finished")) // unblock the writer if it stopped early
		if err == nil && e != nil {
			v.signer = strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint))
		}
		v.done <- err
	}()
	return v, nil
}

func (v *sigVerifier) Write(b []byte) (int, error) {
	n, err := v.pw.Write(b)
	if err != nil {
		// The verifier quit early (unknown key): keep hashing, report at finish.
		return len(b), nil
	}
	return n, nil
}

// finish returns nil when the signature is good.
func (v *sigVerifier) finish() error {
	v.pw.Close()
	err := <-v.done
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		return &SignatureError{File: v.file, KeyID: v.keyID, Reason: "that key is not the configured assets.flatcar.signing_key (" + fingerprints(v.kr) + "): the file was not signed by the configured publisher"}
	case errors.Is(err, pgperrors.ErrKeyExpired):
		return &SignatureError{File: v.file, KeyID: v.keyID, Reason: "the key had expired when the signature was made"}
	case errors.Is(err, pgperrors.ErrSignatureExpired):
		return &SignatureError{File: v.file, KeyID: v.keyID, Reason: "the signature has expired"}
	case errors.Is(err, pgperrors.ErrKeyRevoked):
		return &SignatureError{File: v.file, KeyID: v.keyID, Reason: "the key was revoked"}
	default:
		return &SignatureError{File: v.file, KeyID: v.keyID, Reason: "the file does not match its signature (" + err.Error() + ")"}
	}
}

// hashes computes SHA-256 and SHA-512 together.
type hashes struct{ h256, h512 hash.Hash }

func newHashes() *hashes { return &hashes{sha256.New(), sha512.New()} }

func (h *hashes) Write(b []byte) (int, error) {
	h.h256.Write(b)
	h.h512.Write(b)
	return len(b), nil
}

func (h *hashes) sums() (sha256hex, sha512hex string) {
	return hex.EncodeToString(h.h256.Sum(nil)), hex.EncodeToString(h.h512.Sum(nil))
}

// hashFile reads a file once, through the hashers and any extra writers
// (a signature check).
func hashFile(p string, extra ...io.Writer) (size int64, sha256hex, sha512hex string, err error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, "", "", err
	}
	defer f.Close()
	h := newHashes()
	w := io.MultiWriter(append([]io.Writer{h}, extra...)...)
	n, err := io.Copy(w, f)
	if err != nil {
		return 0, "", "", err
	}
	a, b := h.sums()
	return n, a, b, nil
}

// parseDigests finds the SHA512 line for file in a Gentoo-style DIGESTS file
// as Flatcar publishes it:
//
//	# MD5 HASH
//	<hex>  flatcar_production_pxe.vmlinuz
//	# SHA1 HASH
//	<hex>  flatcar_production_pxe.vmlinuz
//	# SHA512 HASH
//	<hex>  flatcar_production_pxe.vmlinuz
//
// A clearsigned copy (.DIGESTS.asc) parses the same: the armor lines are
// skipped.
func parseDigests(data []byte, file string) (string, error) {
	section := ""
	found := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") {
			f := strings.Fields(strings.TrimPrefix(line, "#"))
			if len(f) == 2 && strings.EqualFold(f[1], "HASH") {
				section = strings.ToUpper(f[0])
			}
			continue
		}
		if section != "SHA512" {
			continue
		}
		sum, name, ok := sumLine(line)
		if !ok || name != file {
			continue
		}
		if len(sum) != 128 {
			return "", fmt.Errorf("its SHA512 line for %s has %d hex digits, not 128", file, len(sum))
		}
		if found != "" && found != sum {
			return "", fmt.Errorf("it lists two different SHA512 hashes for %s", file)
		}
		found = sum
	}
	if found == "" {
		return "", fmt.Errorf("it has no SHA512 hash for %s", file)
	}
	return found, nil
}

// parseSHA256Sums finds file in sha256sum output ("<hex>  name" or
// "<hex> *name"), as K3s and etcd publish it.
func parseSHA256Sums(data []byte, file string) (string, error) {
	found := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		sum, name, ok := sumLine(strings.TrimSpace(sc.Text()))
		if !ok || name != file {
			continue
		}
		if len(sum) != 64 {
			return "", fmt.Errorf("its line for %s has %d hex digits, not 64", file, len(sum))
		}
		if found != "" && found != sum {
			return "", fmt.Errorf("it lists two different hashes for %s", file)
		}
		found = sum
	}
	if found == "" {
		return "", fmt.Errorf("it has no line for %s", file)
	}
	return found, nil
}

// sumLine splits "<hex>  name", "<hex> *name" or "<hex>  ./name".
func sumLine(line string) (sum, name string, ok bool) {
	f := strings.Fields(line)
	if len(f) != 2 {
		return "", "", false
	}
	sum = strings.ToLower(f[0])
	if _, err := hex.DecodeString(sum); err != nil {
		return "", "", false
	}
	name = strings.TrimPrefix(strings.TrimPrefix(f[1], "*"), "./")
	return sum, name, true
}
