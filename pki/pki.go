// Package pki creates and keeps flint's secrets in its data directory: the etcd CA,
// the etcd server, peer and client certificates, flint's own HTTPS certificate,
// the K3s server and agent tokens, the per-node K3s passwords, the key for
// node-report tokens and the admin API token.
//
// Everything is generated once and then reused: a node rebuilt from the same data
// directory gets credentials the rest of the cluster already trusts. Leaf
// certificates are re-issued only when they no longer fit (other names or IP,
// close to expiry, signed by another CA). The CA, the tokens, the report key and
// the node passwords are never replaced: when they are damaged, Open fails and
// says what to restore.
//
// Layout of the directory (secret files are 0600, directories 0700):
//
//	ca.crt, ca.key                      the etcd CA; it also signs flint's HTTPS certificate
//	k3s-token                           the K3s cluster token (K3S_TOKEN of the servers)
//	k3s-agent-token                     the K3s agent token (K3S_AGENT_TOKEN of the servers,
//	                                    K3S_TOKEN of the agents, which never see k3s-token)
//	report-key                          key for node-report tokens: 32 random bytes, stored
//	                                    as 64 hex digits and a newline; ReportKey decodes it
//	admin-token                         bearer token for flint's admin API (flint makes 64 hex digits)
//	etcd/NAME-server.crt, .key          etcd serving certificate of node NAME
//	etcd/NAME-peer.crt, .key            etcd peer certificate of node NAME
//	clients/NAME.crt, .key              etcd client certificates (flint-admin, k3s-datastore, ...)
//	serving/flint.crt, .key             flint's HTTPS certificate (serverAuth only)
//	node-passwords/NAME                 K3s node password of node NAME
//
// With EtcdStorage the same items live in etcd under PREFIX/pki/ with the same
// names, each sealed with the store's encryption key (see EtcdStorage), except
// that each flint instance keeps its own serving certificate
// (serving/flint-<hash of its SANs>): the instances share one etcd CA, tokens,
// report key, admin token and node passwords.
//
// The tokens, passwords and the report key are one line of text each; flint
// ignores white space around it, so an operator may restore or provide them
// with an editor.
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
	"slices"
	"strings"
	"sync"
	"time"
)

// Names of files and folders inside the PKI directory.
const (
	caCertFile     = "ca.crt"
	caKeyFile      = "ca.key"
	tokenFile      = "k3s-token"
	agentTokenFile = "k3s-agent-token"
	reportKeyFile  = "report-key"
	adminTokenFile = "admin-token"
	etcdDir        = "etcd"
	clientsDir     = "clients"
	servingDir     = "serving"
	passwordsDir   = "node-passwords"
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
	store Storage
	now   func() time.Time
	log   *slog.Logger

	// mu serialises everything that reads or writes files, so two requests for
	// the same node never issue two different certificates.
	mu         sync.Mutex
	caCert     *x509.Certificate
	caCertPEM  []byte
	caKey      crypto.Signer
	token      string
	agentToken string
	reportKey  []byte
	adminToken string

	// readOnly: nothing is written (OpenExisting, Ephemeral); what would be
	// created is made in memory only and listed in unsaved.
	readOnly  bool
	ephemeral bool // Ephemeral: no directory at all, everything is new
	unsaved   []string

	// created counts what this PKI wrote, for one summary line per burst.
	created tally
}

// Open loads the PKI from dir (e.g. DATA/pki), creating the CA, the K3s server
// and agent tokens, the report key, the admin API token and the flint admin
// client certificate on first use (also in a directory from an older flint that
// lacks some of them). now is injectable for tests (pass time.Now in
// production); a nil log discards messages.
func Open(dir string, now func() time.Time, log *slog.Logger) (*PKI, error) {
	return OpenStorage(FileStorage(dir), now, log)
}

// OpenStorage is Open on any Storage, e.g. EtcdStorage: several flint
// instances opening the same etcd storage at once end with one CA and one
// set of tokens (the first writer's; the others read it).
func OpenStorage(st Storage, now func() time.Time, log *slog.Logger) (*PKI, error) {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &PKI{store: st, now: now, log: log, created: tally{log: log}}
	if err := st.start(false, log); err != nil {
		return nil, err
	}
	if err := p.loadOrCreateCA(); err != nil {
		return nil, err
	}
	if err := p.loadOrCreateSecrets(); err != nil {
		return nil, err
	}
	if _, err := p.Admin(); err != nil {
		return nil, err
	}
	return p, nil
}

// Descriptions of the secrets Open loads or creates. fix completes "restore the
// file from a backup of DIR (...)" in the error for a damaged file.
var (
	tokenSecret = secretSpec{
		file: tokenFile,
		what: "K3s token",
		fix:  "flint does not replace it: K3s would reject the nodes that use the old one",
	}
	agentTokenSecret = secretSpec{
		file: agentTokenFile,
		what: "K3s agent token",
		fix:  "flint does not replace it: K3s would reject the agents that joined with the old one",
	}
	reportKeySecret = secretSpec{
		file:  reportKeyFile,
		what:  "report key",
		check: checkReportKey,
		fix: "if there is none, delete the file and flint creates a new key on its next start; " +
			"machines that booted before then report with tokens flint rejects until they boot again",
	}
	adminTokenSecret = secretSpec{
		file:  adminTokenFile,
		what:  "admin API token",
		check: checkAdminToken,
		fix: "or write a new token of at least 43 characters into it (e.g. the output of `openssl rand -hex 32`), " +
			"or delete it and flint creates one on its next start; every remote admin caller then needs the new token",
	}
)

// loadOrCreateSecrets loads the tokens and the report key, creating the missing ones.
func (p *PKI) loadOrCreateSecrets() error {
	var err error
	if p.token, err = p.loadOrCreateSecret(tokenSecret); err != nil {
		return err
	}
	if p.agentToken, err = p.loadOrCreateSecret(agentTokenSecret); err != nil {
		return err
	}
	// Agents would hold the server token, with which they could join as servers
	// and read the whole datastore.
	if p.agentToken == p.token {
		return fmt.Errorf("pki: %s holds the same value as %s, so agents would join with the server token: "+
			"write a different secret into %s (e.g. the output of `openssl rand -hex 32`) and give it to agents "+
			"that already joined, or, if no agent has joined yet, delete it and flint creates one on its next start",
			p.path(agentTokenFile), p.path(tokenFile), p.path(agentTokenFile))
	}
	key, err := p.loadOrCreateSecret(reportKeySecret)
	if err != nil {
		return err
	}
	if p.reportKey, err = hex.DecodeString(key); err != nil {
		return fmt.Errorf("pki: %s: %w", p.path(reportKeyFile), err) // checkReportKey let it pass
	}
	if p.adminToken, err = p.loadOrCreateSecret(adminTokenSecret); err != nil {
		return err
	}
	return nil
}

// Dir is where the PKI lives: its directory, or its etcd prefix.
func (p *PKI) Dir() string { return p.store.Origin() }

// CACertPEM returns the CA certificate exactly as stored in ca.crt.
func (p *PKI) CACertPEM() []byte { return append([]byte(nil), p.caCertPEM...) }

// K3sToken returns the cluster token. It never changes: K3s encrypts its
// bootstrap data in etcd with it. Only K3s servers get it.
func (p *PKI) K3sToken() string { return p.token }

// K3sAgentToken returns the token agents join with: K3s servers get it as
// K3S_AGENT_TOKEN, agents as their K3S_TOKEN. It differs from K3sToken (Open
// fails if the files hold the same value) and never changes.
func (p *PKI) K3sAgentToken() string { return p.agentToken }

// ReportKey returns the 32-byte secret flint derives per-boot node-report tokens
// from with HMAC. The file report-key holds it as 64 hex digits; the key is the
// decoded bytes. It never changes. The result is a copy.
func (p *PKI) ReportKey() []byte { return slices.Clone(p.reportKey) }

// AdminToken returns the bearer token remote callers of flint's admin API send
// as "Authorization: Bearer TOKEN". flint generates 64 hex digits (256 bits);
// an operator may put another token of at least 43 characters from the
// RFC 6750 alphabet into the file.
func (p *PKI) AdminToken() string { return p.adminToken }

// AdminTokenPath is the file (or etcd key) holding AdminToken, for telling
// the operator where to find it.
func (p *PKI) AdminTokenPath() string { return p.path(adminTokenFile) }

func (p *PKI) path(rel string) string { return p.store.where(rel) }

// loadOrCreateCA loads ca.crt and ca.key, or creates both when neither exists and
// nothing was ever issued here. Any other state is an error for the operator:
// a new CA would lock every existing etcd member and K3s server out.
func (p *PKI) loadOrCreateCA() error { return p.loadOrCreateCAOnce(true) }

// loadOrCreateCAOnce is loadOrCreateCA; with mayRetry, losing the race to
// create the CA to another flint process loads the winner's CA.
func (p *PKI) loadOrCreateCAOnce(mayRetry bool) error {
	certPath, keyPath := p.path(caCertFile), p.path(caKeyFile)
	certPEM, certErr, keyPEM, keyErr := p.store.readPair(item{name: caCertFile}, item{name: caKeyFile, secret: true})
	certMissing := errors.Is(certErr, fs.ErrNotExist)
	keyMissing := errors.Is(keyErr, fs.ErrNotExist)

	switch {
	case certErr != nil && !certMissing:
		return fmt.Errorf("pki: read CA certificate: %w", certErr)
	case keyErr != nil && !keyMissing:
		return fmt.Errorf("pki: read CA key: %w", keyErr)
	case certMissing && keyMissing && p.readOnly:
		return fmt.Errorf("%w: %s has no %s and %s", ErrNoPKI, p.store.Origin(), caCertFile, caKeyFile)
	case certMissing && keyMissing:
		issued, err := p.issuedCertFiles()
		if err != nil {
			return err
		}
		if len(issued) > 0 {
			return fmt.Errorf("pki: %s and %s are missing but %s holds certificates they signed (%s): "+
				"restore ca.crt and ca.key from a backup of %s; only if you mean to re-provision every etcd member "+
				"and K3s server, delete %s, %s and %s to start a new CA",
				certPath, keyPath, p.store.Origin(), strings.Join(issued, ", "), p.store.Origin(), p.path(etcdDir), p.path(clientsDir), p.path(servingDir))
		}
		err = p.createCA()
		if errors.Is(err, fs.ErrExist) && mayRetry {
			p.log.Debug("another flint created the CA first; loading it", "where", p.store.Origin())
			return p.loadOrCreateCAOnce(false)
		}
		return err
	case keyMissing:
		return fmt.Errorf("pki: %s exists but %s is missing: restore ca.key from a backup of %s. "+
			"flint does not create a new CA over an existing one: etcd members and K3s servers trust only the original",
			certPath, keyPath, p.store.Origin())
	case certMissing:
		return fmt.Errorf("pki: %s exists but %s is missing: restore ca.crt from a backup of %s "+
			"(if the very first start of flint was interrupted and no node was ever provisioned, delete %s instead)",
			keyPath, certPath, p.store.Origin(), keyPath)
	}

	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return fmt.Errorf("pki: %s is corrupt (%v): restore ca.crt from a backup of %s; flint will not replace the CA", certPath, err, p.store.Origin())
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return fmt.Errorf("pki: %s is corrupt (%v): restore ca.key from a backup of %s; flint will not replace the CA", keyPath, err, p.store.Origin())
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("pki: %s is not a CA certificate (needs basic constraints CA:TRUE and key usage certSign): restore the original ca.crt", certPath)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return fmt.Errorf("pki: %s does not belong to %s: restore the matching pair from a backup of %s", keyPath, certPath, p.store.Origin())
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
	if p.readOnly {
		p.caCert, p.caCertPEM, p.caKey = cert, certPEM, key
		return nil
	}
	// Key first: a crash in between leaves ca.key without ca.crt, which Open
	// reports instead of silently starting over (etcd stores both in one
	// transaction). Both writes refuse to replace an existing item, so a
	// second flint process can never swap the CA: it loses the race and
	// loads the winner's (loadOrCreateCA).
	if err := p.store.create(item{caKeyFile, keyPEM, true}, item{caCertFile, certPEM, false}); err != nil {
		return fmt.Errorf("pki: write CA key and certificate: %w", err)
	}
	p.log.Debug("created etcd CA", "file", p.path(caCertFile), "subject", CACommonName, "not_after", cert.NotAfter)
	p.created.note(func(t *tally) { t.caCreated = true })
	p.caCert, p.caCertPEM, p.caKey = cert, certPEM, key
	return nil
}

// issuedCertFiles lists leaf certificates on disk (relative paths), to tell a
// fresh directory from one that lost its CA.
func (p *PKI) issuedCertFiles() ([]string, error) {
	var found []string
	for _, sub := range []string{etcdDir, clientsDir, servingDir} {
		names, err := certNames(p.store, sub)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			found = append(found, sub+"/"+n)
		}
	}
	return found, nil
}

// secretSpec describes one secret that flint generates once and never replaces.
type secretSpec struct {
	file string // path below the PKI dir, e.g. "k3s-token"
	what string // for messages, e.g. "K3s token"
	// check rejects a stored value that is unusable beyond being empty or more
	// than one word, its error completing "TOKEN in FILE is ..."; nil accepts
	// any word. The error must not quote the value.
	check func(string) error
	fix   string // completes "restore the file from a backup of DIR (...)"
	// preview: a read-only PKI that lacks the file makes a value in memory
	// (listed by Unsaved) instead of failing; for secrets flint makes on
	// demand, like node passwords.
	preview bool
}

// loadOrCreateSecret returns the secret in file s.file, creating a random one
// (64 hex digits) if the file does not exist. An existing but unusable file is
// an error: replacing a token or node password would lock the cluster or the
// node out.
func (p *PKI) loadOrCreateSecret(s secretSpec) (string, error) {
	path := p.path(s.file)
	for range 2 {
		data, err := []byte(nil), error(fs.ErrNotExist)
		if !p.ephemeral {
			data, err = p.store.read(s.file, true)
		}
		if err == nil {
			secret := strings.TrimSpace(string(data))
			var problem string
			switch {
			case secret == "":
				problem = "empty"
			case strings.ContainsFunc(secret, isSpaceOrControl):
				problem = "corrupt (more than one word, or control characters)"
			case s.check != nil:
				if err := s.check(secret); err != nil {
					problem = err.Error()
				}
			}
			if problem != "" {
				return "", fmt.Errorf("pki: %s in %s is %s: restore the file from a backup of %s (%s)", s.what, path, problem, p.store.Origin(), s.fix)
			}
			return secret, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("pki: read %s: %w", s.what, err)
		}
		if p.readOnly && !s.preview && !p.ephemeral {
			return "", fmt.Errorf("%w: %s has no %s (%s): flint serve creates it when it starts; run flint serve --data DIR once",
				ErrNoPKI, p.store.Origin(), s.what, s.file)
		}
		secret, err := randomHex(32)
		if err != nil {
			return "", err
		}
		if p.readOnly {
			p.unsaved = append(p.unsaved, s.file)
			return secret, nil
		}
		err = p.store.create(item{s.file, []byte(secret + "\n"), true})
		if errors.Is(err, fs.ErrExist) {
			continue // another process created it just now: use theirs
		}
		if err != nil {
			return "", fmt.Errorf("pki: write %s: %w", s.what, err)
		}
		p.log.Debug("generated "+s.what, "file", path)
		p.created.note(func(t *tally) { t.secrets++ })
		return secret, nil
	}
	return "", fmt.Errorf("pki: %s in %s appeared and vanished while creating it", s.what, path)
}

// checkReportKey accepts exactly 32 bytes in hex, which is what flint writes.
func checkReportKey(s string) error {
	if _, err := hex.DecodeString(s); err != nil || len(s) != 64 {
		return fmt.Errorf("corrupt (want 64 hex digits, found %d characters)", len(s))
	}
	return nil
}

// minAdminTokenLen is 256 bits in unpadded base64; flint's own tokens are 64 hex digits.
const minAdminTokenLen = 43

// checkAdminToken accepts a token that fits an Authorization header as is
// (RFC 6750 b64token) and is long enough to hold 256 bits.
func checkAdminToken(s string) error {
	body := strings.TrimRight(s, "=")
	if strings.ContainsFunc(body, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("-._~+/", r))
	}) {
		return errors.New("not usable as a bearer token (only letters, digits, '-', '.', '_', '~', '+', '/' and trailing '=' are)")
	}
	if len(body) < minAdminTokenLen {
		return fmt.Errorf("too short (%d characters, want at least %d)", len(body), minAdminTokenLen)
	}
	return nil
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("pki: random: %w", err)
	}
	return hex.EncodeToString(b), nil
}
