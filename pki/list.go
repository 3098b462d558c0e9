package pki

import (
	"crypto/x509"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// CertInfo describes one certificate file, for `flint` to show operators.
type CertInfo struct {
	File       string       `json:"file"` // relative to the PKI dir, e.g. "etcd/nuc1-server.crt"
	CommonName string       `json:"common_name"`
	DNSNames   []string     `json:"dns_names,omitempty"`
	IPs        []netip.Addr `json:"ips,omitempty"`
	Usages     []string     `json:"usages"` // e.g. "certSign", "serverAuth", "clientAuth"
	IsCA       bool         `json:"is_ca"`
	NotBefore  time.Time    `json:"not_before"`
	NotAfter   time.Time    `json:"not_after"`
	Serial     string       `json:"serial"` // hex
	// RenewalDue is true when the next request for this certificate re-issues it.
	// For the CA it means a manual rotation is due: it expires within LeafValidity,
	// so new leaves would outlive it.
	RenewalDue bool   `json:"renewal_due"`
	Reason     string `json:"reason,omitempty"` // why it is due, or why the file is unreadable
}

// List describes every certificate on disk, CA first, then by file name. A file
// that cannot be parsed is listed with only File and Reason set.
func (p *PKI) List() ([]CertInfo, error) {
	p.mu.Lock()
	defer p.mu.Unlock()

	out := []CertInfo{p.describe(caCertFile, p.caCertPEM)}
	for _, sub := range []string{clientsDir, etcdDir, servingDir} {
		names, err := certNames(p.store, sub)
		if err != nil {
			return nil, err
		}
		for _, name := range names {
			rel := sub + "/" + name
			data, err := p.store.read(rel, false)
			if err != nil {
				return nil, fmt.Errorf("pki: %w", err)
			}
			out = append(out, p.describe(rel, data))
		}
	}
	slices.SortStableFunc(out[1:], func(a, b CertInfo) int { return strings.Compare(a.File, b.File) })
	return out, nil
}

func (p *PKI) describe(rel string, data []byte) CertInfo {
	cert, err := parseCertPEM(data)
	if err != nil {
		return CertInfo{File: rel, RenewalDue: true, Reason: "unreadable: " + err.Error()}
	}
	info := CertInfo{
		File:       rel,
		CommonName: cert.Subject.CommonName,
		DNSNames:   cert.DNSNames,
		IPs:        certIPs(cert),
		Usages:     append(keyUsageNames(cert.KeyUsage), usageNames(cert.ExtKeyUsage)...),
		IsCA:       cert.IsCA,
		NotBefore:  cert.NotBefore,
		NotAfter:   cert.NotAfter,
		Serial:     cert.SerialNumber.Text(16),
	}
	now := p.now()
	if cert.IsCA {
		if r := caRotationReason(cert, now); r != "" {
			info.RenewalDue, info.Reason = true, "CA "+r+": flint never replaces its CA, plan a rotation"
		}
		return info
	}
	if cert.CheckSignatureFrom(p.caCert) != nil {
		info.RenewalDue, info.Reason = true, "not signed by the current CA"
	} else if r := renewalReason(cert, now); r != "" {
		info.RenewalDue, info.Reason = true, r
	}
	return info
}

func keyUsageNames(u x509.KeyUsage) []string {
	names := []struct {
		bit  x509.KeyUsage
		name string
	}{
		{x509.KeyUsageDigitalSignature, "digitalSignature"},
		{x509.KeyUsageKeyEncipherment, "keyEncipherment"},
		{x509.KeyUsageCertSign, "certSign"},
		{x509.KeyUsageCRLSign, "crlSign"},
	}
	var out []string
	for _, n := range names {
		if u&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

func usageNames(us []x509.ExtKeyUsage) []string {
	out := make([]string, 0, len(us))
	for _, u := range us {
		switch u {
		case x509.ExtKeyUsageServerAuth:
			out = append(out, "serverAuth")
		case x509.ExtKeyUsageClientAuth:
			out = append(out, "clientAuth")
		default:
			out = append(out, fmt.Sprintf("extKeyUsage(%d)", u))
		}
	}
	return out
}
