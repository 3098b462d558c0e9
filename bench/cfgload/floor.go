package main

// The floor: a stand-in server for -mode flint's protocol with nothing but
// what the protocol itself costs in Go: net/http, new TCP connections, a full
// TLS 1.3 handshake with an ECDSA P-256 certificate (what flint's PKI issues),
// a fresh 256-bit boot token per script kept in memory (single use, no disk),
// the pointer marshalled per request, and a config answered from memory. No
// lifecycle, store, timeline, logging or render. bench/ignition.sh runs it
// with SERVERS="... floor": what flint's whole delivery could cost at best,
// on the same machine, under the same load.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// serveFloor serves plain HTTP on httpAddr and HTTPS on tlsAddr until killed.
// configFile is the config every machine gets (e.g. one flint rendered).
func serveFloor(httpAddr, tlsAddr, configFile string) error {
	body, err := os.ReadFile(configFile)
	if err != nil {
		return err
	}
	caPEM, cert, err := floorPKI()
	if err != nil {
		return err
	}
	f := &floor{
		config: body,
		tokens: map[string]string{},
		https:  "https://" + tlsAddr,
		http:   "http://" + httpAddr,
		ca:     "data:;base64," + base64.StdEncoding.EncodeToString(caPEM),
	}
	plain := http.NewServeMux()
	plain.HandleFunc("GET /machines/{mac}/boot.ipxe", f.script)
	plain.HandleFunc("GET /ignition", f.pointer)
	plain.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {})
	secure := http.NewServeMux()
	secure.HandleFunc("GET /ignition", f.secret)

	hl, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return err
	}
	tl, err := net.Listen("tcp", tlsAddr)
	if err != nil {
		return err
	}
	errc := make(chan error, 2)
	go func() {
		errc <- (&http.Server{Handler: plain, ReadHeaderTimeout: 10 * time.Second}).Serve(hl)
	}()
	go func() {
		// HTTP/1.1 only, like flint's listener answering Ignition.
		s := &http.Server{Handler: secure, ReadHeaderTimeout: 10 * time.Second,
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}}
		errc <- s.ServeTLS(tl, "", "")
	}()
	return <-errc
}

type floor struct {
	config []byte
	https  string
	http   string
	ca     string
	mu     sync.Mutex
	tokens map[string]string // mac -> the token of its last script
}

func (f *floor) script(w http.ResponseWriter, r *http.Request) {
	mac := r.PathValue("mac")
	var b [32]byte
	rand.Read(b[:])
	tok := hex.EncodeToString(b[:])
	f.mu.Lock()
	f.tokens[mac] = tok
	f.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintf(w, "#!ipxe\necho floor: booting %s\nkernel %s/assets/flatcar/flatcar_production_pxe.vmlinuz initrd=flatcar_production_pxe_image.cpio.gz flatcar.first_boot=1 ignition.config.url=%s/ignition?mac=%s&token=%s\ninitrd %s/assets/flatcar/flatcar_production_pxe_image.cpio.gz\nboot\n",
		mac, f.http, f.http, mac, tok, f.http)
}

func (f *floor) valid(r *http.Request, spend bool) (string, bool) {
	mac, tok := r.URL.Query().Get("mac"), r.URL.Query().Get("token")
	f.mu.Lock()
	defer f.mu.Unlock()
	if want, ok := f.tokens[mac]; !ok || want != tok || len(tok) != 64 {
		return mac, false
	}
	if spend {
		delete(f.tokens, mac)
	}
	return mac, true
}

func (f *floor) pointer(w http.ResponseWriter, r *http.Request) {
	mac, ok := f.valid(r, false)
	if !ok {
		http.Error(w, "unknown token", http.StatusForbidden)
		return
	}
	var p struct {
		Ignition struct {
			Version string `json:"version"`
			Config  struct {
				Replace struct {
					Source string `json:"source"`
				} `json:"replace"`
			} `json:"config"`
			Security struct {
				TLS struct {
					CertificateAuthorities []struct {
						Source string `json:"source"`
					} `json:"certificateAuthorities"`
				} `json:"tls"`
			} `json:"security"`
		} `json:"ignition"`
	}
	p.Ignition.Version = "3.4.0"
	p.Ignition.Config.Replace.Source = f.https + "/ignition?" + url.Values{"mac": {mac}, "token": {r.URL.Query().Get("token")}}.Encode()
	p.Ignition.Security.TLS.CertificateAuthorities = append(p.Ignition.Security.TLS.CertificateAuthorities, struct {
		Source string `json:"source"`
	}{f.ca})
	out, _ := json.Marshal(p)
	w.Header().Set("Content-Type", "application/vnd.coreos.ignition+json;version=3.4.0")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(out)
}

func (f *floor) secret(w http.ResponseWriter, r *http.Request) {
	if _, ok := f.valid(r, true); !ok {
		http.Error(w, "unknown or used token", http.StatusForbidden)
		return
	}
	w.Header().Set("Content-Type", "application/vnd.coreos.ignition+json;version=3.4.0")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(f.config)
}

// floorPKI makes a CA and a serving certificate for 127.0.0.1, both ECDSA
// P-256 like flint's.
func floorPKI() ([]byte, tls.Certificate, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "floor CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "floor"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, tls.Certificate{}, err
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return caPEM, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// runFloor serves -serve-floor HTTP_ADDR,TLS_ADDR,CONFIG_FILE until killed.
func runFloor(spec string) {
	parts := strings.Split(spec, ",")
	if len(parts) != 3 {
		fail(fmt.Errorf("-serve-floor wants HTTP_ADDR,TLS_ADDR,CONFIG_FILE"))
	}
	fail(serveFloor(parts[0], parts[1], parts[2]))
}
