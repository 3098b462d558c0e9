package integration

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The wire-capture proof: tcpdump records everything on the lab bridge
// during a whole boot (DHCP, iPXE script, pointer config, the secret config
// over HTTPS, the installer's installed config, node reports, etcd), and the
// reassembled TCP streams and UDP payloads are searched for every secret
// flint holds, in every form a config carries it in.

// capture is a running tcpdump.
type capture struct {
	lab  *Lab
	proc *Proc
	file string
}

// startCapture records interface iface of namespace ns, whole packets.
func startCapture(t *testing.T, l *Lab, ns, iface string) *capture {
	t.Helper()
	if _, err := exec.LookPath("tcpdump"); err != nil {
		unavailable(t, "tcpdump: %v (Debian package tcpdump)", err)
	}
	c := &capture{lab: l, file: filepath.Join(l.Dir, "boot.pcap")}
	c.proc = l.Start(t, ns, "tcpdump", "tcpdump", "-i", iface, "-s", "0", "-U", "-n", "-w", c.file)
	// tcpdump says "listening on" once the capture runs.
	if err := eventually(10*time.Second, 50*time.Millisecond, func() error {
		if c.proc.Exited() {
			return fmt.Errorf("tcpdump exited: %s", c.proc.Stderr.String())
		}
		if !strings.Contains(c.proc.Stderr.String(), "listening on") {
			return fmt.Errorf("not listening yet")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return c
}

// stop ends the capture (SIGINT: tcpdump flushes) and returns the file.
func (c *capture) stop(t *testing.T) string {
	t.Helper()
	c.proc.Signal(syscall.SIGINT)
	if _, ok := c.proc.Wait(10 * time.Second); !ok {
		t.Fatal("tcpdump did not stop")
	}
	return c.file
}

// wire is what a capture holds: each TCP direction's bytes in sequence
// order, and every UDP payload.
type wire struct {
	tcp     map[string][]byte // "src:port>dst:port" -> stream
	udp     [][]byte
	packets int
}

type tcpSeg struct {
	seq  uint32
	data []byte
}

// readPcap parses a classic pcap file of Ethernet frames (what tcpdump -w
// writes) and reassembles TCP by sequence number (retransmissions and
// overlaps are dropped).
func readPcap(path string) (*wire, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 24 {
		return nil, fmt.Errorf("%s: no pcap header", path)
	}
	var bo binary.ByteOrder
	switch binary.LittleEndian.Uint32(b) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		bo = binary.LittleEndian
	default:
		bo = binary.BigEndian
	}
	if link := bo.Uint32(b[20:]); link != 1 {
		return nil, fmt.Errorf("%s: link type %d, want Ethernet (1)", path, link)
	}
	w := &wire{tcp: map[string][]byte{}}
	segs := map[string][]tcpSeg{}
	for off := 24; off+16 <= len(b); {
		incl := int(bo.Uint32(b[off+8:]))
		off += 16
		if off+incl > len(b) {
			break
		}
		frame := b[off : off+incl]
		off += incl
		w.packets++
		if len(frame) < 14+20 || binary.BigEndian.Uint16(frame[12:]) != 0x0800 {
			continue
		}
		ip := frame[14:]
		ihl := int(ip[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(ip[2:]))
		if ihl < 20 || total < ihl || total > len(ip) {
			continue
		}
		src, dst := fmt.Sprintf("%d.%d.%d.%d", ip[12], ip[13], ip[14], ip[15]), fmt.Sprintf("%d.%d.%d.%d", ip[16], ip[17], ip[18], ip[19])
		l4 := ip[ihl:total]
		switch ip[9] {
		case 6: // TCP
			if len(l4) < 20 {
				continue
			}
			doff := int(l4[12]>>4) * 4
			if doff < 20 || doff > len(l4) {
				continue
			}
			key := fmt.Sprintf("%s:%d>%s:%d", src, binary.BigEndian.Uint16(l4), dst, binary.BigEndian.Uint16(l4[2:]))
			if data := l4[doff:]; len(data) > 0 {
				segs[key] = append(segs[key], tcpSeg{seq: binary.BigEndian.Uint32(l4[4:]), data: append([]byte(nil), data...)})
			}
		case 17: // UDP
			if len(l4) >= 8 {
				w.udp = append(w.udp, append([]byte(nil), l4[8:]...))
			}
		}
	}
	for key, ss := range segs {
		sort.SliceStable(ss, func(i, j int) bool { return int32(ss[i].seq-ss[j].seq) < 0 })
		var stream []byte
		next := ss[0].seq
		for _, s := range ss {
			d := int32(next - s.seq)
			switch {
			case d < 0: // a hole (lost from the capture): keep what follows
				stream = append(stream, s.data...)
				next = s.seq + uint32(len(s.data))
			case int(d) < len(s.data):
				stream = append(stream, s.data[d:]...)
				next = s.seq + uint32(len(s.data))
			}
		}
		w.tcp[key] = stream
	}
	return w, nil
}

// secret is one value flint must never send in clear.
type secret struct {
	name    string
	needles []string
}

// needlesFor lists what a secret looks like on the wire in any config flint
// writes: the raw text (and its PEM body lines, which survive JSON escaping),
// and base64 at each of the three alignments it can have inside a data URL
// (the bytes next to it decide the first and last four characters: cut).
func needlesFor(v []byte) []string {
	v = bytes.TrimSpace(v)
	var out []string
	if len(v) >= 16 {
		out = append(out, string(v))
	}
	if bytes.HasPrefix(v, []byte("-----BEGIN")) {
		for _, ln := range strings.Split(string(v), "\n") {
			if len(ln) >= 40 && !strings.HasPrefix(ln, "-----") {
				out = append(out, ln)
			}
		}
	}
	for k := 0; k < 3; k++ {
		b64 := base64.StdEncoding.EncodeToString(append(make([]byte, k), v...))
		if len(b64) > 8+12 {
			out = append(out, b64[4:len(b64)-4])
		}
	}
	return out
}

// flintSecrets reads every secret of DATA/pki and the per-delivery tokens the
// nodes got (their report headers, installers' installed-config tokens).
func flintSecrets(t *testing.T, dataDir string, roots []string) []secret {
	t.Helper()
	var out []secret
	pkiDir := filepath.Join(dataDir, "pki")
	err := filepath.WalkDir(pkiDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(pkiDir, p)
		if strings.HasSuffix(rel, ".crt") {
			return nil // certificates are public
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out = append(out, secret{"DATA/pki/" + rel, needlesFor(b)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tokenRE := regexp.MustCompile(`(?:Bearer |token=|token%3D)([0-9a-f]{64})`)
	for _, root := range roots {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			if !strings.HasSuffix(p, "/etc/flint/report.header") && !strings.HasSuffix(p, "/opt/bin/flint-install") {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, m := range tokenRE.FindAllSubmatch(b, -1) {
				out = append(out, secret{"token in " + p, []string{string(m[1])}})
			}
			return nil
		})
	}
	if len(out) < 8 {
		t.Fatalf("found only %d secrets to look for: the search would prove little", len(out))
	}
	return out
}

// checkWire searches every stream and datagram for every secret; it returns
// what leaked, and a summary of what crossed in clear.
func checkWire(w *wire, secrets []secret) (leaks []string, summary string) {
	var clear, tls, plainBytes int
	for key, s := range w.tcp {
		isTLS := len(s) > 0 && s[0] == 0x16 // a TLS handshake record opens the stream
		if isTLS {
			tls++
		} else {
			clear++
			plainBytes += len(s)
		}
		for _, sec := range secrets {
			for _, n := range sec.needles {
				if bytes.Contains(s, []byte(n)) {
					leaks = append(leaks, fmt.Sprintf("%s crossed in TCP stream %s (TLS %v)", sec.name, key, isTLS))
					break
				}
			}
		}
	}
	for i, d := range w.udp {
		for _, sec := range secrets {
			for _, n := range sec.needles {
				if bytes.Contains(d, []byte(n)) {
					leaks = append(leaks, fmt.Sprintf("%s crossed in UDP datagram %d", sec.name, i))
					break
				}
			}
		}
	}
	needles := 0
	for _, s := range secrets {
		needles += len(s.needles)
	}
	summary = fmt.Sprintf("%d packets, %d TCP streams in clear (%d bytes), %d over TLS, %d UDP datagrams; %d secrets in %d forms searched",
		w.packets, clear, plainBytes, tls, len(w.udp), len(secrets), needles)
	return leaks, summary
}

// TestWireSearchFindsPlaintext: the search itself finds a secret sent in
// clear in each form (so "no leak" means something).
func TestWireSearchFindsPlaintext(t *testing.T) {
	pemKey := []byte("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkQ6nTC4dR8cBq2Y5mcZ4NHpqUwCvF0ss8CrXn1ZbS7oAoGCCqGSM49\nAwEHoUQDQgAE0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ\n-----END EC PRIVATE KEY-----\n")
	token := []byte("f00dfeedf00dfeedf00dfeedf00dfeedf00dfeedf00dfeedf00dfeedf00dfeed")
	secrets := []secret{{"key", needlesFor(pemKey)}, {"token", needlesFor(token)}}
	for name, payload := range map[string][]byte{
		"raw PEM":            pemKey,
		"JSON-escaped PEM":   []byte(strings.ReplaceAll(string(pemKey), "\n", `\n`)),
		"data URL of PEM":    []byte(`"source":"data:;base64,` + base64.StdEncoding.EncodeToString(pemKey) + `"`),
		"token in env file":  []byte("data:;base64," + base64.StdEncoding.EncodeToString(append([]byte("K3S_TOKEN="), token...))),
		"token, 1 byte in":   []byte(base64.StdEncoding.EncodeToString(append([]byte("AK3S_TOKEN="), token...))),
		"token as URL query": append([]byte("GET /ignition?token="), token...),
	} {
		w := &wire{tcp: map[string][]byte{"a:1>b:2": append([]byte("HTTP/1.1 200 OK\r\n\r\n"), payload...)}}
		if leaks, _ := checkWire(w, secrets); len(leaks) == 0 {
			t.Errorf("%s: not found", name)
		}
		w = &wire{tcp: map[string][]byte{"a:1>b:2": append([]byte{0x16, 3, 3}, bytes.Repeat([]byte{0x42}, 500)...)}}
		if leaks, _ := checkWire(w, secrets); len(leaks) != 0 {
			t.Errorf("false positive: %v", leaks)
		}
	}
}
