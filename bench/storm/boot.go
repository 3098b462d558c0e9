package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"
)

// The phases of one NUC's boot, in order.
const (
	phDHCPPXE = iota
	phTFTP
	phDHCPIPXE
	phScript
	phKernel
	phInitrd
	phPointer
	phConfig
	phFiles
	phReports
	nPhases
)

var phaseNames = [nPhases]string{
	"1 DHCP (PXE firmware)", "2 TFTP ipxe.efi", "3 DHCP (iPXE)", "4 scripts (boot.ipxe + machine)",
	"5 kernel", "6 initrd", "7 pointer config (HTTP)", "8 config (HTTPS)",
	"9 Ignition files (k3s, etcd)", "10 reports (HTTPS)",
}

// retry is how a real client repeats a failed HTTP request.
type retry struct {
	attempts int
	delay    func(try int) time.Duration
	// again: whether a response status is retried (errors always are).
	again func(status int) bool
}

var (
	// iPXE, as flint's scripts drive it: 5 attempts, 5 s apart, any failure.
	ipxeRetry = retry{attempts: 5, delay: func(int) time.Duration { return 5 * time.Second }, again: func(int) bool { return true }}
	// Ignition: exponential back-off from 100 ms to 5 s on errors and 5xx.
	ignitionRetry = retry{attempts: 12, delay: func(try int) time.Duration {
		return min(100*time.Millisecond<<min(try, 6), 5*time.Second)
	}, again: func(s int) bool { return s >= 500 }}
	// flint-report: curl --retry 5 --retry-delay 2 (timeouts, 408, 429, 5xx).
	curlRetry = retry{attempts: 6, delay: func(int) time.Duration { return 2 * time.Second }, again: func(s int) bool {
		return s == 408 || s == 429 || s >= 500
	}}
)

type statusError struct {
	url    string
	status int
	body   string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("HTTP %d from %s: %s", e.status, e.url, strings.TrimSpace(e.body))
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// sink is io.Discard without a ReadFrom (io.Discard's reads 8 KiB at a time):
// the copy reads into the large pooled buffer.
type sink struct{ h hash.Hash }

func (s sink) Write(p []byte) (int, error) {
	if s.h != nil {
		s.h.Write(p)
	}
	return len(p), nil
}

// transport is one HTTP client's connection pool, bound to the node's own
// address (the one flint leased to its MAC).
func transport(local netip.Addr, roots *x509.CertPool) *http.Transport {
	d := &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(local, 0)), Timeout: 10 * time.Second}
	t := &http.Transport{
		DialContext:           d.DialContext,
		MaxIdleConnsPerHost:   1,
		DisableCompression:    true,
		ResponseHeaderTimeout: 30 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
	}
	if roots != nil {
		t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	return t
}

// fetch performs one request with the client's retry policy. With want >= 0
// the body must be exactly that long. small: the body is returned (capped),
// else it is counted and discarded (hashed into h if set).
func fetch(c *http.Client, method, u string, hdr http.Header, body []byte, r retry, st *phaseStat, small bool, want int64, h hash.Hash) ([]byte, error) {
	var lastErr error
	for try := 0; try < r.attempts; try++ {
		if try > 0 {
			st.retries.Add(1)
			time.Sleep(r.delay(try - 1))
		}
		if h != nil {
			h.Reset()
		}
		out, status, err := fetchOnce(c, method, u, hdr, body, st, small, want, h)
		if err == nil {
			return out, nil
		}
		lastErr = err
		if status != 0 && !r.again(status) {
			break
		}
	}
	return nil, lastErr
}

func fetchOnce(c *http.Client, method, u string, hdr http.Header, body []byte, st *phaseStat, small bool, want int64, h hash.Hash) ([]byte, int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, u, rd)
	if err != nil {
		return nil, 0, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, resp.StatusCode, &statusError{url: redact(u), status: resp.StatusCode, body: string(b)}
	}
	if small {
		b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		st.bytes.Add(int64(len(b)))
		if err != nil {
			return nil, 0, err
		}
		return b, resp.StatusCode, nil
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	n, err := io.CopyBuffer(sink{h}, resp.Body, *bp)
	st.bytes.Add(n)
	if err != nil {
		return nil, 0, fmt.Errorf("after %d bytes: %w", n, err)
	}
	if want >= 0 && n != want {
		return nil, 0, fmt.Errorf("%s: %d bytes, want %d", redact(u), n, want)
	}
	if resp.ContentLength != n {
		return nil, 0, fmt.Errorf("%s: Content-Length %d, got %d bytes", redact(u), resp.ContentLength, n)
	}
	return nil, resp.StatusCode, nil
}

var tokenRE = regexp.MustCompile(`token=[0-9a-fA-F]+`)

func redact(u string) string { return tokenRE.ReplaceAllString(u, "token=REDACTED") }

// ipxeScript is what the simulated iPXE takes from the machine's script.
type ipxeScript struct {
	kernel, initrd, ignitionURL string
}

func parseChain(script []byte) (string, error) {
	for _, l := range strings.Split(string(script), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "chain" {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("no chain line in /boot.ipxe: %.200q", script)
}

func parseMachineScript(script []byte) (ipxeScript, error) {
	var s ipxeScript
	if !bytes.HasPrefix(script, []byte("#!ipxe")) {
		return s, fmt.Errorf("not an iPXE script: %.100q", script)
	}
	for _, l := range strings.Split(string(script), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "kernel":
			s.kernel = f[1]
			for _, a := range f[2:] {
				if a == "&&" || a == "||" {
					break
				}
				if v, ok := strings.CutPrefix(a, "ignition.config.url="); ok {
					s.ignitionURL = v
				}
			}
		case "initrd":
			s.initrd = f[1]
		}
	}
	if s.kernel == "" || s.initrd == "" || s.ignitionURL == "" {
		return s, fmt.Errorf("script without kernel, initrd or ignition.config.url: %+v", s)
	}
	if !strings.Contains(s.ignitionURL, "&token=") {
		return s, fmt.Errorf("ignition.config.url without a boot token: %s", redact(s.ignitionURL))
	}
	return s, nil
}

// The parts of an Ignition config the simulated node reads.
type ignConfig struct {
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
	Storage struct {
		Files []struct {
			Path     string `json:"path"`
			Contents struct {
				Source       *string `json:"source"`
				Verification struct {
					Hash *string `json:"hash"`
				} `json:"verification"`
			} `json:"contents"`
		} `json:"files"`
	} `json:"storage"`
}

// dataURL decodes an RFC 2397 data URL as Ignition does.
func dataURL(s string) ([]byte, error) {
	rest, ok := strings.CutPrefix(s, "data:")
	if !ok {
		return nil, fmt.Errorf("not a data URL: %.40q", s)
	}
	meta, data, ok := strings.Cut(rest, ",")
	if !ok {
		return nil, errors.New("data URL without a comma")
	}
	if strings.HasSuffix(meta, ";base64") {
		return base64.StdEncoding.DecodeString(data)
	}
	v, err := url.PathUnescape(data)
	return []byte(v), err
}

func certPool(pemData []byte) (*x509.CertPool, error) {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pemData) {
		return nil, errors.New("no certificate in the CA")
	}
	return p, nil
}

var eventsURLRE = regexp.MustCompile(`https://[^'" ]+/api/v1/events`)

// bootNode runs one simulated NUC from power-on to its last report.
func (s *storm) bootNode(nd *node) {
	var err error
	phase := func(ph int, f func(st *phaseStat) error) bool {
		st := &s.ph[ph]
		t := time.Now()
		if err := f(st); err != nil {
			st.fail(err)
			s.failed.Add(1)
			return false
		}
		now := time.Now()
		st.ok(now.Sub(t), now.Sub(s.t0))
		return true
	}

	// 1. The firmware's DHCP: address and first-stage file.
	var tftpServer netip.Addr
	var bootFile string
	if !phase(phDHCPPXE, func(st *phaseStat) error {
		ack, err := s.dhcp.dora(nd, client{timeouts: pxeTimeouts}, st)
		if err != nil {
			return err
		}
		if ack.BootFileName != "ipxe.efi" {
			return fmt.Errorf("boot file %q, want ipxe.efi (UEFI x86-64)", ack.BootFileName)
		}
		var ok bool
		if tftpServer, ok = netip.AddrFromSlice(ack.ServerIPAddr.To4()); !ok || tftpServer.IsUnspecified() {
			return fmt.Errorf("no next-server in the ACK (siaddr %v)", ack.ServerIPAddr)
		}
		bootFile = ack.BootFileName
		return nil
	}) {
		return
	}

	// 2. TFTP of the first stage, from the leased address.
	if !phase(phTFTP, func(st *phaseStat) error {
		n, err := tftpGet(nd.ip, tftpServer, bootFile, s.opt.tftp, st)
		st.bytes.Add(n)
		if err != nil {
			return err
		}
		if s.opt.ipxeSize > 0 && n != s.opt.ipxeSize {
			return fmt.Errorf("%d bytes of %s, want %d", n, bootFile, s.opt.ipxeSize)
		}
		return nil
	}) {
		return
	}

	// 3. iPXE's DHCP: the HTTP script.
	var scriptURL string
	if !phase(phDHCPIPXE, func(st *phaseStat) error {
		ack, err := s.dhcp.dora(nd, client{ipxe: true, timeouts: ipxeTimeouts}, st)
		if err != nil {
			return err
		}
		scriptURL = ack.BootFileName
		if !strings.HasPrefix(scriptURL, "http://") || !strings.HasSuffix(scriptURL, "/boot.ipxe") {
			return fmt.Errorf("iPXE got boot file %q, want http://FLINT/boot.ipxe", scriptURL)
		}
		return nil
	}) {
		return
	}

	// 4-6. iPXE over HTTP, one keep-alive connection pool as iPXE has.
	ipxeTr := transport(nd.ip, nil)
	ipxe := &http.Client{Transport: ipxeTr, Timeout: 10 * time.Minute}
	var sc ipxeScript
	if !phase(phScript, func(st *phaseStat) error {
		b, err := fetch(ipxe, "GET", scriptURL, nil, nil, ipxeRetry, st, true, -1, nil)
		if err != nil {
			return err
		}
		chain, err := parseChain(b)
		if err != nil {
			return err
		}
		chain = strings.NewReplacer("${mac:hexhyp}", hexhyp(nd.mac), "${buildarch}", "x86_64").Replace(chain)
		if b, err = fetch(ipxe, "GET", chain, nil, nil, ipxeRetry, st, true, -1, nil); err != nil {
			return err
		}
		sc, err = parseMachineScript(b)
		return err
	}) {
		return
	}
	var kh, ih hash.Hash
	if nd.i == 0 && s.opt.kernelSum != "" { // one node checks the bytes, all check the sizes
		kh, ih = sha256.New(), sha256.New()
	}
	if !phase(phKernel, func(st *phaseStat) error {
		_, err := fetch(ipxe, "GET", sc.kernel, nil, nil, ipxeRetry, st, false, s.opt.kernelSize, kh)
		if err == nil && kh != nil && hex.EncodeToString(kh.Sum(nil)) != s.opt.kernelSum {
			err = errors.New("kernel: other bytes than the file (sha256)")
		}
		return err
	}) {
		return
	}
	if !phase(phInitrd, func(st *phaseStat) error {
		_, err := fetch(ipxe, "GET", sc.initrd, nil, nil, ipxeRetry, st, false, s.opt.initrdSize, ih)
		if err == nil && ih != nil && hex.EncodeToString(ih.Sum(nil)) != s.opt.initrdSum {
			err = errors.New("initrd: other bytes than the file (sha256)")
		}
		return err
	}) {
		return
	}
	ipxeTr.CloseIdleConnections() // `boot`: iPXE hands over to the kernel

	// 7-8. Ignition: the pointer over HTTP, then the config over HTTPS,
	// trusting only the CA the pointer names.
	accept := http.Header{"Accept": {"application/vnd.coreos.ignition+json;version=3.4.0, */*;q=0.1"}}
	var ignTr *http.Transport
	var cfg ignConfig
	var replace string
	if !phase(phPointer, func(st *phaseStat) error {
		tr := transport(nd.ip, nil)
		defer tr.CloseIdleConnections()
		b, err := fetch(&http.Client{Transport: tr, Timeout: time.Minute}, "GET", sc.ignitionURL, accept, nil, ignitionRetry, st, true, -1, nil)
		if err != nil {
			return err
		}
		var p ignConfig
		if err := json.Unmarshal(b, &p); err != nil {
			return fmt.Errorf("pointer config: %w", err)
		}
		replace = p.Ignition.Config.Replace.Source
		if !strings.HasPrefix(replace, "https://") {
			return fmt.Errorf("pointer config names %q, want an https:// config", redact(replace))
		}
		if len(p.Ignition.Security.TLS.CertificateAuthorities) != 1 {
			return fmt.Errorf("pointer config has %d CAs, want 1", len(p.Ignition.Security.TLS.CertificateAuthorities))
		}
		ca, err := dataURL(p.Ignition.Security.TLS.CertificateAuthorities[0].Source)
		if err != nil {
			return fmt.Errorf("pointer CA: %w", err)
		}
		roots, err := certPool(ca)
		if err != nil {
			return err
		}
		ignTr = transport(nd.ip, roots)
		return nil
	}) {
		return
	}
	defer ignTr.CloseIdleConnections()
	ign := &http.Client{Transport: ignTr, Timeout: 5 * time.Minute}
	var reportHeader, eventsURL string
	var reportRoots *x509.CertPool
	if !phase(phConfig, func(st *phaseStat) error {
		b, err := fetch(ign, "GET", replace, accept, nil, ignitionRetry, st, true, -1, nil)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &cfg); err != nil {
			return fmt.Errorf("config: %w", err)
		}
		files := map[string][]byte{}
		for _, f := range cfg.Storage.Files {
			if src := f.Contents.Source; src != nil && strings.HasPrefix(*src, "data:") {
				if files[f.Path], err = dataURL(*src); err != nil {
					return fmt.Errorf("%s: %w", f.Path, err)
				}
			}
		}
		if got := strings.TrimSpace(string(files["/etc/hostname"])); got != nd.hostname {
			return fmt.Errorf("config for %q, this is %s", got, nd.hostname)
		}
		h := strings.TrimSpace(string(files["/etc/flint/report.header"]))
		if !strings.HasPrefix(h, "Authorization: Bearer ") {
			return fmt.Errorf("no report token in /etc/flint/report.header (%d bytes)", len(h))
		}
		reportHeader = strings.TrimPrefix(h, "Authorization: ")
		if reportRoots, err = certPool(files["/etc/flint/ca.crt"]); err != nil {
			return fmt.Errorf("/etc/flint/ca.crt: %w", err)
		}
		if eventsURL = eventsURLRE.FindString(string(files["/opt/bin/flint-report"])); eventsURL == "" {
			return errors.New("no events URL in /opt/bin/flint-report")
		}
		return nil
	}) {
		return
	}
	s.configAt[nd.i].Store(int64(time.Since(s.t0)))

	// 9. Ignition's files stage: the remote files the config names, with their sha512.
	if !phase(phFiles, func(st *phaseStat) error {
		for _, f := range cfg.Storage.Files {
			src := f.Contents.Source
			if src == nil || !(strings.HasPrefix(*src, "http://") || strings.HasPrefix(*src, "https://")) {
				continue
			}
			want, ok := "", false
			if hv := f.Contents.Verification.Hash; hv != nil {
				want, ok = strings.CutPrefix(*hv, "sha512-")
			}
			if !ok {
				return fmt.Errorf("%s: remote file without a sha512", f.Path)
			}
			// Ignition hashes every file; here node 1 does (hashing every
			// copy would take CPU from flint on the shared cores), the others
			// check the length against Content-Length.
			var h hash.Hash
			if nd.i == 0 {
				h = sha512.New()
			}
			if _, err := fetch(ign, "GET", *src, nil, nil, ignitionRetry, st, false, -1, h); err != nil {
				return err
			}
			if h != nil && hex.EncodeToString(h.Sum(nil)) != want {
				return fmt.Errorf("%s: sha512 mismatch", f.Path)
			}
		}
		return nil
	}) {
		return
	}

	// 10. flint-report config-applied, then k3s-up: one curl (new TLS
	// connection) each, trusting /etc/flint/ca.crt.
	if !phase(phReports, func(st *phaseStat) error {
		hdr := http.Header{"Authorization": {reportHeader}, "Content-Type": {"application/json"}}
		for _, ev := range [][2]string{
			{"config-applied", nd.hostname + " booted with its " + nd.role + " config"},
			{"k3s-up", nd.role},
		} {
			body, _ := json.Marshal(map[string]string{"mac": nd.mac.String(), "event": ev[0], "detail": ev[1]})
			tr := transport(nd.ip, reportRoots)
			_, err = fetch(&http.Client{Transport: tr, Timeout: 10 * time.Second}, "POST", eventsURL, hdr, body, curlRetry, st, true, -1, nil)
			tr.CloseIdleConnections()
			if err != nil {
				return fmt.Errorf("%s: %w", ev[0], err)
			}
		}
		return nil
	}) {
		return
	}
	s.doneAt[nd.i].Store(int64(time.Since(s.t0)))
}
