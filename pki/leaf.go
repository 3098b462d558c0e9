package pki

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

var localhostIP = netip.MustParseAddr("127.0.0.1")

// leafSpec is what a leaf certificate must contain. A stored certificate that
// differs in any of these is re-issued.
type leafSpec struct {
	file       string // path below the PKI dir without extension, e.g. "etcd/nuc1-server"
	commonName string
	dnsNames   []string
	ips        []netip.Addr
	usages     []x509.ExtKeyUsage
}

// EtcdServer returns the etcd serving certificate of n. It carries clientAuth as
// well as serverAuth because etcd also presents it as a client (its gRPC
// gateway dials the member itself).
// SANs: n.IP, 127.0.0.1, n.Name, n.FQDN (if set), localhost.
func (p *PKI) EtcdServer(n Node) (KeyPair, error) {
	n, err := checkNode(n)
	if err != nil {
		return KeyPair{}, err
	}
	return p.leaf(leafSpec{
		file:       etcdDir + "/" + n.Name + "-server",
		commonName: n.Name,
		dnsNames:   appendNonEmpty([]string{n.Name}, n.FQDN, "localhost"),
		ips:        []netip.Addr{n.IP, localhostIP},
		usages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
}

// EtcdPeer returns the etcd peer certificate of n (peers are both client and
// server to each other). SANs: n.IP, n.Name, n.FQDN (if set).
func (p *PKI) EtcdPeer(n Node) (KeyPair, error) {
	n, err := checkNode(n)
	if err != nil {
		return KeyPair{}, err
	}
	return p.leaf(leafSpec{
		file:       etcdDir + "/" + n.Name + "-peer",
		commonName: n.Name,
		dnsNames:   appendNonEmpty([]string{n.Name}, n.FQDN),
		ips:        []netip.Addr{n.IP},
		usages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
}

// EtcdClient returns the etcd client certificate with common name name, e.g.
// "k3s-datastore" (shared by all K3s servers) or a node's hostname. The name
// AdminName is reserved for Admin, so no node can get flint's own credentials.
func (p *PKI) EtcdClient(name string) (KeyPair, error) {
	if err := checkHostname("client name", name); err != nil {
		return KeyPair{}, err
	}
	if name == AdminName {
		return KeyPair{}, fmt.Errorf("pki: client name %q is reserved for flint's own admin certificate", name)
	}
	return p.clientCert(name)
}

// Admin returns flint's own etcd client certificate (CN flint-admin).
func (p *PKI) Admin() (KeyPair, error) { return p.clientCert(AdminName) }

// servingCommonName is the subject of flint's HTTPS certificate; clients check
// its SANs, not this.
const servingCommonName = "flint"

// Serving returns the certificate flint serves HTTPS with, signed by the etcd CA
// so that nodes can check it with the ca.crt they already have. Its only
// extended key usage is serverAuth, never clientAuth: etcd members trust this
// CA, and a certificate without clientAuth is refused as an etcd client or peer
// certificate. Its SANs are exactly names and ips (e.g. flint's address,
// 127.0.0.1 and localhost); it is re-issued when they change. Names are compared
// case-insensitively and without a trailing dot; order and duplicates do not
// matter.
func (p *PKI) Serving(names []string, ips []netip.Addr) (KeyPair, error) {
	names, ips, err := checkServingSANs(names, ips)
	if err != nil {
		return KeyPair{}, err
	}
	file := servingDir + "/flint"
	if p.store.shared() {
		// Instances sharing the storage each serve their own names and
		// addresses: one certificate each, named by its SANs, rather than
		// one they would re-issue in turn.
		h := sha256.New()
		for _, n := range sortedStrings(names) {
			fmt.Fprintf(h, "dns:%s\n", n)
		}
		for _, ip := range sortedAddrs(ips) {
			fmt.Fprintf(h, "ip:%s\n", ip)
		}
		file += "-" + hex.EncodeToString(h.Sum(nil))[:16]
	}
	return p.leaf(leafSpec{
		file:       file,
		commonName: servingCommonName,
		dnsNames:   names,
		ips:        ips,
		usages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
}

func (p *PKI) clientCert(name string) (KeyPair, error) {
	return p.leaf(leafSpec{
		file:       clientsDir + "/" + name,
		commonName: name,
		usages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

// leaf returns the stored certificate for spec if it still fits, otherwise it
// issues a new one and stores it.
func (p *PKI) leaf(spec leafSpec) (KeyPair, error) {
	p.mu.Lock()
	defer p.mu.Unlock()

	certPath, keyPath := p.path(spec.file+".crt"), p.path(spec.file+".key")
	kp, reason, level, err := KeyPair{}, "throw-away PKI", slog.LevelDebug, error(nil)
	if !p.ephemeral {
		kp, reason, level, err = p.loadLeaf(spec, certPath, keyPath)
	}
	if err != nil {
		return KeyPair{}, err
	}
	if reason == "" {
		return kp, nil
	}
	kp, err = p.issueLeaf(spec, certPath, keyPath)
	if err != nil {
		return KeyPair{}, err
	}
	if p.readOnly {
		p.unsaved = append(p.unsaved, spec.file+".crt")
		return kp, nil
	}
	if reason == reasonMissing {
		// A first issue is routine: counted in the PKI's summary line.
		level = slog.LevelDebug
		p.created.note(func(t *tally) { t.certs++ })
	} else {
		p.created.note(func(t *tally) { t.renewed++ })
	}
	p.log.Log(context.Background(), level, "issued certificate", "file", certPath, "cn", spec.commonName, "reason", reason,
		"serial", kp.Cert.SerialNumber.Text(16), "not_after", kp.Cert.NotAfter)
	return kp, nil
}

// reasonMissing is loadLeaf's reason for a certificate never issued here.
const reasonMissing = "no certificate on disk yet"

// loadLeaf reads a stored leaf. With a non-empty reason the caller must
// (re-)issue it; level says how loudly to log that. err is kept for failures
// that a new certificate would not fix, such as a permission error.
func (p *PKI) loadLeaf(spec leafSpec, certPath, keyPath string) (kp KeyPair, reason string, level slog.Level, err error) {
	// One snapshot: another instance may be storing a new pair meanwhile.
	certPEM, err, keyPEM, keyErr := p.store.readPair(item{name: spec.file + ".crt"}, item{name: spec.file + ".key", secret: true})
	if errors.Is(err, fs.ErrNotExist) {
		return KeyPair{}, reasonMissing, slog.LevelInfo, nil
	}
	if err != nil {
		return KeyPair{}, "", 0, fmt.Errorf("pki: %w", err)
	}
	if errors.Is(keyErr, fs.ErrNotExist) {
		return KeyPair{}, "key file missing", slog.LevelWarn, nil
	}
	if keyErr != nil {
		return KeyPair{}, "", 0, fmt.Errorf("pki: %w", keyErr)
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return KeyPair{}, "stored certificate unreadable: " + err.Error(), slog.LevelWarn, nil
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return KeyPair{}, "stored key unreadable: " + err.Error(), slog.LevelWarn, nil
	}
	// A crash between writing the new key and the new certificate leaves a pair
	// that does not match.
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return KeyPair{}, "key does not match certificate", slog.LevelWarn, nil
	}
	if reason := p.mismatch(spec, cert); reason != "" {
		return KeyPair{}, reason, slog.LevelInfo, nil
	}
	return KeyPair{CertPEM: certPEM, KeyPEM: keyPEM, Cert: cert}, "", 0, nil
}

// mismatch says why cert no longer serves spec, or "" if it does.
func (p *PKI) mismatch(spec leafSpec, cert *x509.Certificate) string {
	if cert.CheckSignatureFrom(p.caCert) != nil {
		return "not signed by the current CA"
	}
	if cert.Subject.CommonName != spec.commonName {
		return fmt.Sprintf("common name is %q, want %q", cert.Subject.CommonName, spec.commonName)
	}
	if have, want := sortedStrings(cert.DNSNames), sortedStrings(spec.dnsNames); !slices.Equal(have, want) {
		return fmt.Sprintf("DNS names are %v, want %v", have, want)
	}
	if have, want := sortedAddrs(certIPs(cert)), sortedAddrs(spec.ips); !slices.Equal(have, want) {
		return fmt.Sprintf("IP addresses are %v, want %v", have, want)
	}
	if have, want := sortedUsages(cert.ExtKeyUsage), sortedUsages(spec.usages); !slices.Equal(have, want) {
		return fmt.Sprintf("extended key usages are %v, want %v", usageNames(have), usageNames(want))
	}
	return renewalReason(cert, p.now())
}

// renewalReason says why a leaf certificate is due for renewal by time, or "".
func renewalReason(cert *x509.Certificate, now time.Time) string {
	return expiryReason(cert, now, RenewBefore)
}

// caRotationReason says why the CA needs attention, or "". The window is a
// leaf's lifetime: from then on, new leaves would outlive the CA.
func caRotationReason(ca *x509.Certificate, now time.Time) string {
	return expiryReason(ca, now, LeafValidity)
}

func expiryReason(cert *x509.Certificate, now time.Time, window time.Duration) string {
	switch {
	case now.Before(cert.NotBefore):
		return fmt.Sprintf("not valid before %s (issued with a wrong clock)", cert.NotBefore.UTC().Format(time.RFC3339))
	case !now.Before(cert.NotAfter):
		return fmt.Sprintf("expired at %s", cert.NotAfter.UTC().Format(time.RFC3339))
	case cert.NotAfter.Sub(now) <= window:
		return fmt.Sprintf("expires at %s, within the renewal window of %s", cert.NotAfter.UTC().Format(time.RFC3339), window)
	}
	return ""
}

func (p *PKI) issueLeaf(spec leafSpec, certPath, keyPath string) (KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return KeyPair{}, fmt.Errorf("pki: generate key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return KeyPair{}, err
	}
	ips := make([]net.IP, len(spec.ips))
	for i, ip := range spec.ips {
		ips[i] = net.IP(ip.AsSlice())
	}
	now := p.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: spec.commonName},
		DNSNames:              spec.dnsNames,
		IPAddresses:           ips,
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(LeafValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           spec.usages,
		BasicConstraintsValid: true,
		SubjectKeyId:          subjectKeyID(&key.PublicKey),
		// AuthorityKeyId is filled from the CA's SubjectKeyId by CreateCertificate.
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		return KeyPair{}, fmt.Errorf("pki: sign %s: %w", spec.file, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return KeyPair{}, fmt.Errorf("pki: parse new certificate: %w", err)
	}
	certPEM := encodeCertPEM(der)
	keyPEM, err := encodeKeyPEM(key)
	if err != nil {
		return KeyPair{}, err
	}
	kp := KeyPair{CertPEM: certPEM, KeyPEM: keyPEM, Cert: cert}
	if p.readOnly {
		return kp, nil
	}
	// Key first: if the certificate write is lost, the next call sees a pair
	// that does not match and issues again (etcd stores both at once).
	if err := p.store.put(item{spec.file + ".key", keyPEM, true}, item{spec.file + ".crt", certPEM, false}); err != nil {
		return KeyPair{}, fmt.Errorf("pki: write key and certificate %s: %w", certPath, err)
	}
	return kp, nil
}

func appendNonEmpty(list []string, more ...string) []string {
	for _, s := range more {
		if s != "" {
			list = append(list, s)
		}
	}
	return list
}

func certIPs(cert *x509.Certificate) []netip.Addr {
	out := make([]netip.Addr, 0, len(cert.IPAddresses))
	for _, ip := range cert.IPAddresses {
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a.Unmap())
		}
	}
	return out
}

func sortedStrings(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = strings.ToLower(v)
	}
	slices.Sort(out)
	return out
}

func sortedAddrs(a []netip.Addr) []netip.Addr {
	out := slices.Clone(a)
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

func sortedUsages(u []x509.ExtKeyUsage) []x509.ExtKeyUsage {
	out := slices.Clone(u)
	slices.Sort(out)
	return out
}
