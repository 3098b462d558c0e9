// Package pki creates and keeps flint's secrets in its data directory: the etcd CA,
// the etcd server, peer and client certificates, the K3s token and the per-node K3s
// passwords.
//
// Everything is generated once and then reused: a node rebuilt from the same data
// directory gets credentials the rest of the cluster already trusts. Leaf
// certificates are re-issued only when they no longer fit (other names or IP,
// close to expiry, signed by another CA). The CA, the token and the node passwords
// are never replaced: when they are damaged, Open fails and says what to restore.
//
// Layout of the directory:
//
//	ca.crt, ca.key                      the etcd CA
//	k3s-token                           the K3s cluster token
//	etcd/NAME-server.crt, .key          etcd serving certificate of node NAME
//	etcd/NAME-peer.crt, .key            etcd peer certificate of node NAME
//	clients/NAME.crt, .key              etcd client certificates (flint-admin, k3s-datastore, ...)
//	node-passwords/NAME                 K3s node password of node NAME
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Names of files and folders inside the PKI directory.
const (
	caCertFile   = "ca.crt"
	caKeyFile    = "ca.key"
	tokenFile    = "k3s-token"
	etcdDir      = "etcd"
	clientsDir   = "clients"
	passwordsDir = "node-passwords"
)

const (
	// CACommonName is the subject of the CA flint creates.
	CACommonName = "flint etcd CA"
	// AdminName is the common name of flint's own etcd client certificate.
	AdminName = "flint-admin"
)

// Lifetimes. Variables so that a site (or a test) can tune them before Open.
var (
	// CAValidity is how long a new CA is valid (about ten years).
	CAValidity = 10 * 365 * 24 * time.Hour
	// LeafValidity is how long a server, peer or client certificate is valid.
	LeafValidity = 365 * 24 * time.Hour
	// RenewBefore is the renewal window: a certificate that expires within it is re-issued.
	RenewBefore = 30 * 24 * time.Hour
	// Backdate moves NotBefore into the past, so that a NUC whose clock is behind
	// (no RTC battery, NTP not yet synced) still accepts a fresh certificate.
	Backdate = time.Hour
)

// Node is one machine that gets etcd certificates.
type Node struct {
	Name string     // hostname, e.g. "nuc1"; also names the files
	FQDN string     // optional, e.g. "nuc1.rack.example"
	IP   netip.Addr // IPv4 address the node serves and peers on
}

// KeyPair is a certificate with its private key, both PEM-encoded as stored on disk.
type KeyPair struct {
	CertPEM []byte
	KeyPEM  []byte
	Cert    *x509.Certificate
}

// PKI is an open PKI directory. It is safe for concurrent use.
type PKI struct {
	dir string
	now func() time.Time
	log *slog.Logger

	// mu serialises everything that reads or writes files, so two requests for
	// the same node never issue two different certificates.
	mu        sync.Mutex
	caCert    *x509.Certificate
	caCertPEM []byte
	caKey     crypto.Signer
	token     string
}

// Open loads the PKI from dir (e.g. DATA/pki), creating the CA, the K3s token and
// the flint admin client certificate on first use. now is injectable for tests
// (pass time.Now in production); a nil log discards messages.
func Open(dir string, now func() time.Time, log *slog.Logger) (*PKI, error) {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &PKI{dir: dir, now: now, log: log}
	for _, d := range []string{dir, p.path(etcdDir), p.path(clientsDir), p.path(passwordsDir)} {
		if err := ensurePrivateDir(d); err != nil {
			return nil, err
		}
		// A crash between creating and renaming a temp file leaves it behind.
		if err := removeStaleTemps(d); err != nil {
			return nil, err
		}
	}
	if err := p.loadOrCreateCA(); err != nil {
		return nil, err
	}
	token, err := p.loadOrCreateSecret(tokenFile, "K3s token")
	if err != nil {
		return nil, err
	}
	p.token = token
	if _, err := p.Admin(); err != nil {
		return nil, err
	}
	return p, nil
}

// Dir is the directory the PKI lives in.
func (p *PKI) Dir() string { return p.dir }

// CACertPEM returns the CA certificate exactly as stored in ca.crt.
func (p *PKI) CACertPEM() []byte { return append([]byte(nil), p.caCertPEM...) }

// K3sToken returns the cluster token. It never changes: K3s encrypts its
// bootstrap data in etcd with it.
func (p *PKI) K3sToken() string { return p.token }

func (p *PKI) path(rel string) string { return filepath.Join(p.dir, rel) }

// loadOrCreateCA loads ca.crt and ca.key, or creates both when neither exists and
// nothing was ever issued here. Any other state is an error for the operator:
// a new CA would lock every existing etcd member and K3s server out.
func (p *PKI) loadOrCreateCA() error {
	certPath, keyPath := p.path(caCertFile), p.path(caKeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := p.readSecretFile(keyPath)
	certMissing := errors.Is(certErr, fs.ErrNotExist)
	keyMissing := errors.Is(keyErr, fs.ErrNotExist)

	switch {
	case certErr != nil && !certMissing:
		return fmt.Errorf("pki: read CA certificate: %w", certErr)
	case keyErr != nil && !keyMissing:
		return fmt.Errorf("pki: read CA key: %w", keyErr)
	case certMissing && keyMissing:
		issued, err := p.issuedCertFiles()
		if err != nil {
			return err
		}
		if len(issued) > 0 {
			return fmt.Errorf("pki: %s and %s are missing but %s holds certificates they signed (%s): "+
				"restore ca.crt and ca.key from a backup of %s; only if you mean to re-provision every etcd member "+
				"and K3s server, delete %s and %s to start a new CA",
				certPath, keyPath, p.dir, strings.Join(issued, ", "), p.dir, p.path(etcdDir), p.path(clientsDir))
		}
		return p.createCA()
	case keyMissing:
		return fmt.Errorf("pki: %s exists but %s is missing: restore ca.key from a backup of %s. "+
			"flint does not create a new CA over an existing one: etcd members and K3s servers trust only the original",
			certPath, keyPath, p.dir)
	case certMissing:
		return fmt.Errorf("pki: %s exists but %s is missing: restore ca.crt from a backup of %s "+
			"(if the very first start of flint was interrupted and no node was ever provisioned, delete %s instead)",
			keyPath, certPath, p.dir, keyPath)
	}

	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return fmt.Errorf("pki: %s is corrupt (%v): restore ca.crt from a backup of %s; flint will not replace the CA", certPath, err, p.dir)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return fmt.Errorf("pki: %s is corrupt (%v): restore ca.key from a backup of %s; flint will not replace the CA", keyPath, err, p.dir)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("pki: %s is not a CA certificate (needs basic constraints CA:TRUE and key usage certSign): restore the original ca.crt", certPath)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return fmt.Errorf("pki: %s does not belong to %s: restore the matching pair from a backup of %s", keyPath, certPath, p.dir)
	}
	if reason := caRotationReason(cert, p.now()); reason != "" {
		p.log.Warn("etcd CA needs a rotation (flint never replaces it by itself)", "file", certPath, "reason", reason)
	}
	p.caCert, p.caCertPEM, p.caKey = cert, certPEM, key
	return nil
}

func (p *PKI) createCA() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("pki: generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	now := p.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: CACommonName},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		// Only leaf certificates hang below this CA.
		MaxPathLenZero: true,
		KeyUsage:       x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		SubjectKeyId:   subjectKeyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("pki: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("pki: parse new CA certificate: %w", err)
	}
	certPEM := encodeCertPEM(der)
	keyPEM, err := encodeKeyPEM(key)
	if err != nil {
		return err
	}
	// Key first: a crash in between leaves ca.key without ca.crt, which Open
	// reports instead of silently starting over. Both writes refuse to replace
	// an existing file, so a second flint process can never swap the CA.
	if err := writeNewFile(p.path(caKeyFile), keyPEM, 0o600); err != nil {
		return fmt.Errorf("pki: write CA key: %w", err)
	}
	if err := writeNewFile(p.path(caCertFile), certPEM, 0o644); err != nil {
		return fmt.Errorf("pki: write CA certificate: %w", err)
	}
	p.log.Info("created etcd CA", "file", p.path(caCertFile), "subject", CACommonName, "not_after", cert.NotAfter)
	p.caCert, p.caCertPEM, p.caKey = cert, certPEM, key
	return nil
}

// issuedCertFiles lists leaf certificates on disk (relative paths), to tell a
// fresh directory from one that lost its CA.
func (p *PKI) issuedCertFiles() ([]string, error) {
	var found []string
	for _, sub := range []string{etcdDir, clientsDir} {
		entries, err := os.ReadDir(p.path(sub))
		if err != nil {
			return nil, fmt.Errorf("pki: %w", err)
		}
		for _, e := range entries {
			if isCertFileName(e.Name()) {
				found = append(found, sub+"/"+e.Name())
			}
		}
	}
	return found, nil
}

// loadOrCreateSecret returns the secret in file rel, creating a random one if the
// file does not exist. An existing but unusable file is an error: replacing a
// token or node password would lock the cluster or the node out.
func (p *PKI) loadOrCreateSecret(rel, what string) (string, error) {
	path := p.path(rel)
	for range 2 {
		data, err := p.readSecretFile(path)
		if err == nil {
			secret := strings.TrimSpace(string(data))
			if secret == "" || strings.ContainsFunc(secret, isSpaceOrControl) {
				return "", fmt.Errorf("pki: %s in %s is empty or corrupt: restore the file from a backup of %s "+
					"(flint does not replace it: K3s would reject the nodes that use the old one)", what, path, p.dir)
			}
			return secret, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("pki: read %s: %w", what, err)
		}
		secret, err := randomHex(32)
		if err != nil {
			return "", err
		}
		err = writeNewFile(path, []byte(secret+"\n"), 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue // another process created it just now: use theirs
		}
		if err != nil {
			return "", fmt.Errorf("pki: write %s: %w", what, err)
		}
		p.log.Info("generated "+what, "file", path)
		return secret, nil
	}
	return "", fmt.Errorf("pki: %s in %s appeared and vanished while creating it", what, path)
}

// readSecretFile reads a file that must be private, tightening its mode if a
// restore from backup left it readable by others.
func (p *PKI) readSecretFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			return nil, fmt.Errorf("make %s private: %w", path, err)
		}
		p.log.Warn("secret file was readable by others; changed its mode to 0600", "file", path, "was", fi.Mode().Perm())
	}
	return data, nil
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("pki: random: %w", err)
	}
	return hex.EncodeToString(b), nil
}
