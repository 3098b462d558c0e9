package tftp

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pintftp "github.com/pin/tftp/v3"
)

// transfer is one OnTransfer call.
type transfer struct {
	client netip.Addr
	file   string
	bytes  int64
	err    error
}

type fixture struct {
	dir    string // holds root/ and files outside it
	root   string
	addr   string
	server *Server

	mu        sync.Mutex
	transfers []transfer
}

func (f *fixture) lastTransfer(t *testing.T) transfer {
	t.Helper()
	// The hook runs on the server's transfer goroutine, which may finish a
	// moment after the client has its last packet.
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		n := len(f.transfers)
		f.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.transfers) == 0 {
		t.Fatal("OnTransfer was not called")
	}
	tr := f.transfers[len(f.transfers)-1]
	f.transfers = nil
	return tr
}

// start runs a server on a free loopback port with root DIR/root.
func start(t *testing.T) *fixture { return startOn(t, "127.0.0.1") }

// startOn runs a server on host:<free port> ("" for all addresses).
func startOn(t *testing.T, host string) *fixture {
	return startWith(t, host, Options{}, nil, nil)
}

// startWith runs a server on host:<free port> with opts (OnTransfer is the
// fixture's), logging to log (nil: discarded); tweak, if set, may change
// the server before it serves.
func startWith(t *testing.T, host string, opts Options, log *slog.Logger, tweak func(*Server)) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, root: filepath.Join(dir, "root")}
	if err := os.Mkdir(f.root, 0o755); err != nil {
		t.Fatal(err)
	}
	opts.OnTransfer = func(client netip.Addr, file string, n int64, _ time.Duration, err error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.transfers = append(f.transfers, transfer{client, file, n, err})
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	f.server = New(f.root, opts, log)
	if tweak != nil {
		tweak(f.server)
	}
	// Find a free port, then let Serve bind it (a tiny race other tests could lose).
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = pc.LocalAddr().String()
	pc.Close()
	listen := f.addr
	if host == "" {
		listen = ":" + strings.TrimPrefix(f.addr, "127.0.0.1:")
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.server.Serve(ctx, listen) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	// Wait until the server answers (a missing file is an answer).
	deadline := time.Now().Add(5 * time.Second)
	probe := f.client(t, 0, false)
	probe.SetTimeout(50 * time.Millisecond)
	for {
		_, err := probe.Receive("probe", "octet")
		if err != nil && strings.Contains(err.Error(), "file not found") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not come up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.mu.Lock()
	f.transfers = nil
	f.mu.Unlock()
	return f
}

func (f *fixture) client(t *testing.T, blksize int, tsize bool) *pintftp.Client {
	t.Helper()
	c, err := pintftp.NewClient(f.addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetTimeout(500 * time.Millisecond)
	c.SetRetries(2)
	c.SetBackoff(func(int) time.Duration { return 10 * time.Millisecond })
	if blksize > 0 {
		c.SetBlockSize(blksize)
	}
	c.RequestTSize(tsize)
	return c
}

// fetch downloads name; the size is the tsize the server announced (-1 if none).
func (f *fixture) fetch(t *testing.T, name string, blksize int, tsize bool) ([]byte, int64, error) {
	t.Helper()
	wt, err := f.client(t, blksize, tsize).Receive(name, "octet")
	if err != nil {
		return nil, -1, err
	}
	size := int64(-1)
	if it, ok := wt.(pintftp.IncomingTransfer); ok {
		if n, ok := it.Size(); ok {
			size = n
		}
	}
	var buf bytes.Buffer
	_, err = wt.WriteTo(&buf)
	return buf.Bytes(), size, err
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFetchBlksizeTsize(t *testing.T) {
	f := start(t)
	// Not a multiple of 1468, so the last block is short.
	want := randomBytes(t, 1468*700+123)
	writeFile(t, filepath.Join(f.root, "ipxe.efi"), want)

	got, size, err := f.fetch(t, "ipxe.efi", 1468, true)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want %d identical bytes", len(got), len(want))
	}
	if size != int64(len(want)) {
		t.Errorf("tsize = %d, want %d", size, len(want))
	}
	tr := f.lastTransfer(t)
	if tr.err != nil || tr.bytes != int64(len(want)) || tr.file != "ipxe.efi" || tr.client != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("OnTransfer got %+v", tr)
	}
}

// ":port" (all addresses) is how flint runs by default.
func TestServeAllAddresses(t *testing.T) {
	f := startOn(t, "")
	want := randomBytes(t, 4000)
	writeFile(t, filepath.Join(f.root, "ipxe.efi"), want)
	got, size, err := f.fetch(t, "ipxe.efi", 1468, true)
	if err != nil || !bytes.Equal(got, want) || size != int64(len(want)) {
		t.Fatalf("fetch via :port: %v, %d bytes, tsize %d", err, len(got), size)
	}
	if tr := f.lastTransfer(t); tr.client != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("client address %v, want 127.0.0.1 (not v4-mapped)", tr.client)
	}
}

func TestNetwork(t *testing.T) {
	for addr, want := range map[string]string{":69": "udp4", "198.18.0.1:69": "udp4", "[::1]:69": "udp", "[::ffff:198.18.0.1]:69": "udp4", "localhost:69": "udp4"} {
		if got := network(addr); got != want {
			t.Errorf("network(%q) = %s, want %s", addr, got, want)
		}
	}
}

// Ignition sends a leading slash and no options; an exact multiple of 512
// needs the empty final block.
func TestFetchLeadingSlashNoOptions(t *testing.T) {
	f := start(t)
	want := randomBytes(t, 512*8)
	writeFile(t, filepath.Join(f.root, "sub", "undionly.kpxe"), want)
	got, _, err := f.fetch(t, "/sub/undionly.kpxe", 0, false)
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want %d identical bytes", len(got), len(want))
	}
}

// Debian's /usr/lib/ipxe/ipxe.efi is an absolute symlink to /boot/ipxe.efi.
func TestSymlinkInsideRoot(t *testing.T) {
	f := start(t)
	want := randomBytes(t, 5000)
	target := filepath.Join(f.dir, "boot", "ipxe.efi")
	writeFile(t, target, want)
	if err := os.Symlink(target, filepath.Join(f.root, "ipxe.efi")); err != nil {
		t.Fatal(err)
	}
	got, size, err := f.fetch(t, "ipxe.efi", 1468, true)
	if err != nil {
		t.Fatalf("fetch through symlink: %v", err)
	}
	if !bytes.Equal(got, want) || size != int64(len(want)) {
		t.Fatalf("got %d bytes (tsize %d), want %d", len(got), size, len(want))
	}
}

func TestEscapesRefused(t *testing.T) {
	f := start(t)
	// A secret next to root, reachable if any escape worked, and a
	// directory inside root so a/../.. resolves lexically to the secret.
	writeFile(t, filepath.Join(f.dir, "secret"), []byte("secret"))
	if err := os.Mkdir(filepath.Join(f.root, "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"../etc/passwd", "/../../etc/passwd", "a/../../x",
		"../secret", "/../secret", "a/../../secret", "a/../a/../../secret",
		`..\secret`, `a\..\..\secret`,
		"a",  // a directory
		"/",  // the root itself
		"//", // likewise
	} {
		_, _, err := f.fetch(t, name, 1468, true)
		if err == nil {
			t.Errorf("%q: fetched, want a refusal", name)
			continue
		}
		tr := f.lastTransfer(t)
		if tr.err == nil || tr.bytes != 0 || tr.file != name {
			t.Errorf("%q: OnTransfer got %+v, want the refusal", name, tr)
		}
		if strings.Contains(err.Error(), "timeout") {
			t.Errorf("%q: client timed out instead of getting an error packet: %v", name, err)
		}
	}
}

func TestMissingFile(t *testing.T) {
	f := start(t)
	begin := time.Now()
	_, _, err := f.fetch(t, "snponly.efi", 1468, true)
	if err == nil || !strings.Contains(err.Error(), "file not found") {
		t.Fatalf("err = %v, want a file-not-found error", err)
	}
	if d := time.Since(begin); d > 400*time.Millisecond {
		t.Errorf("took %s: the error must come at once, not after client retries", d)
	}
	if tr := f.lastTransfer(t); tr.err == nil {
		t.Errorf("OnTransfer got no error for a missing file")
	}
}

func TestWriteRefused(t *testing.T) {
	f := start(t)
	rf, err := f.client(t, 0, false).Send("upload.bin", "octet")
	if err == nil {
		_, err = rf.ReadFrom(bytes.NewReader(randomBytes(t, 2000)))
	}
	if err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("err = %v, want the read-only refusal", err)
	}
	if _, err := os.Stat(filepath.Join(f.root, "upload.bin")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("upload.bin exists after a refused write: %v", err)
	}
}

func TestServeBindError(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	done := make(chan error, 1)
	go func() { done <- New(t.TempDir(), Options{}, nil).Serve(context.Background(), pc.LocalAddr().String()) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Serve on a taken port returned nil")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Serve on a taken port did not return")
	}
}

func TestCleanName(t *testing.T) {
	ok := map[string]string{
		"ipxe.efi":          "ipxe.efi",
		"/ipxe.efi":         "ipxe.efi",
		"//ipxe.efi":        "ipxe.efi",
		"efi/./snponly.efi": "efi/snponly.efi",
		"efi//snponly.efi":  "efi/snponly.efi",
	}
	for in, want := range ok {
		got, err := cleanName(in)
		if err != nil || got != want {
			t.Errorf("cleanName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "/", ".", "..", "../x", "/../x", "a/../../x", "a/..", `a\b`, "a\x00b", "a\nb", "x/../../../etc/passwd", "ipxe..efi", "ipxe\u0085efi", "ipxe\xff.efi"} {
		if got, err := cleanName(in); err == nil {
			t.Errorf("cleanName(%q) = %q, want an error", in, got)
		}
	}
}

// TestOACK speaks raw TFTP to see the negotiation firmware sees: blksize
// 1468 honoured, tsize announced, and the transfer on a new port (multi-port
// mode; single-port would answer from the listening port).
func TestOACK(t *testing.T) {
	f := start(t)
	data := randomBytes(t, 5000)
	writeFile(t, filepath.Join(f.root, "undionly.kpxe"), data)

	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	server, err := net.ResolveUDPAddr("udp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	rrq := append([]byte{0, 1}, "undionly.kpxe\x00octet\x00blksize\x001468\x00tsize\x000\x00"...)
	if _, err := conn.WriteTo(rrq, server); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, from, err := conn.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no answer to RRQ: %v", err)
	}
	if buf[1] != 6 {
		t.Fatalf("answer opcode %d, want 6 (OACK): %q", buf[1], buf[:n])
	}
	fields := strings.Split(strings.TrimSuffix(string(buf[2:n]), "\x00"), "\x00")
	opts := map[string]string{}
	for i := 0; i+1 < len(fields); i += 2 {
		opts[strings.ToLower(fields[i])] = fields[i+1]
	}
	if opts["blksize"] != "1468" || opts["tsize"] != "5000" {
		t.Errorf("OACK options %v, want blksize 1468 and tsize 5000", opts)
	}
	if from.(*net.UDPAddr).Port == server.Port {
		t.Errorf("transfer answered from the listening port %d: want a new port per transfer", server.Port)
	}

	if _, err := conn.WriteTo([]byte{0, 4, 0, 0}, from); err != nil { // ACK 0 accepts the options
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _, err = conn.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no first block: %v", err)
	}
	if buf[1] != 3 || buf[3] != 1 || n-4 != 1468 || !bytes.Equal(buf[4:n], data[:1468]) {
		t.Errorf("first DATA: opcode %d block %d, %d bytes; want block 1 with the first 1468 bytes", buf[1], buf[3], n-4)
	}
	conn.WriteTo(append([]byte{0, 5, 0, 0}, "test done\x00"...), from) // end the transfer
}

// TestSizeProbeIsNotAFailure: EDK2's PXE asks for tsize, then aborts with
// error 8 before the real download. That is not a failed transfer.
func TestSizeProbeIsNotAFailure(t *testing.T) {
	f := start(t)
	writeFile(t, filepath.Join(f.root, "ipxe.efi"), randomBytes(t, 5000))
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	server, _ := net.ResolveUDPAddr("udp", f.addr)
	conn.WriteTo(append([]byte{0, 1}, "ipxe.efi\x00octet\x00tsize\x000\x00"...), server)
	buf := make([]byte, 2048)
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, from, err := conn.ReadFrom(buf)
	if err != nil || n < 2 || buf[1] != 6 {
		t.Fatalf("want an OACK, got %q %v", buf[:n], err)
	}
	conn.WriteTo(append([]byte{0, 5, 0, 8}, "User aborted the transfer\x00"...), from)

	// A real fetch afterwards, so there is something to wait for.
	if _, _, err := f.fetch(t, "ipxe.efi", 512, false); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		f.mu.Lock()
		got := append([]transfer(nil), f.transfers...)
		f.mu.Unlock()
		if len(got) >= 1 || time.Now().After(deadline) {
			if len(got) != 1 || got[0].err != nil || got[0].bytes != 5000 {
				t.Fatalf("transfers %+v: want only the real download, the probe is not a failure", got)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
