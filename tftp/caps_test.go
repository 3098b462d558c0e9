package tftp

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawClient speaks TFTP from one UDP socket on a chosen loopback address,
// so tests can be several clients (127.0.0.2, 127.0.0.3, ...) at once.
type rawClient struct {
	t      *testing.T
	conn   *net.UDPConn
	server *net.UDPAddr
	peer   *net.UDPAddr // the transfer's port, once the server answered
}

func newRawClient(t *testing.T, f *fixture, ip string) *rawClient {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	server, err := net.ResolveUDPAddr("udp4", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	return &rawClient{t: t, conn: conn, server: server}
}

// packet is one TFTP packet a rawClient received.
type packet struct {
	op    uint16
	block uint16 // DATA
	msg   string // ERROR
	data  []byte // DATA payload
	size  int    // whole UDP payload
}

func (c *rawClient) read(timeout time.Duration) (packet, error) {
	buf := make([]byte, 65536)
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	n, from, err := c.conn.ReadFromUDP(buf)
	if err != nil {
		return packet{}, err
	}
	if n < 4 {
		return packet{}, fmt.Errorf("short packet %q", buf[:n])
	}
	c.peer = from
	p := packet{op: binary.BigEndian.Uint16(buf), size: n}
	switch p.op {
	case 3:
		p.block = binary.BigEndian.Uint16(buf[2:])
		p.data = append([]byte(nil), buf[4:n]...)
	case 5:
		p.msg = strings.TrimRight(string(buf[4:n]), "\x00")
	}
	return p, nil
}

// request sends an RRQ without options and returns the first answer.
func (c *rawClient) request(name string) packet {
	c.t.Helper()
	if _, err := c.conn.WriteToUDP(append([]byte{0, 1}, name+"\x00octet\x00"...), c.server); err != nil {
		c.t.Fatal(err)
	}
	p, err := c.read(2 * time.Second)
	if err != nil {
		c.t.Fatalf("%s: no answer to RRQ %s: %v", c.conn.LocalAddr(), name, err)
	}
	return p
}

// hold starts a transfer and leaves it unacknowledged: the server keeps it
// (and its slot) until end or its retries run out.
func (c *rawClient) hold(name string) {
	c.t.Helper()
	if p := c.request(name); p.op != 3 || p.block != 1 {
		c.t.Fatalf("%s: RRQ %s answered with opcode %d %q, want DATA block 1", c.conn.LocalAddr(), name, p.op, p.msg)
	}
}

// end aborts the held transfer with an ERROR packet, as a client that gives up would.
func (c *rawClient) end() {
	if c.peer != nil {
		c.conn.WriteToUDP(append([]byte{0, 5, 0, 0}, "test done\x00"...), c.peer)
		c.peer = nil
	}
}

// refused asserts that an RRQ is refused at once with "server busy".
func (c *rawClient) refused(name string) {
	c.t.Helper()
	begin := time.Now()
	p := c.request(name)
	if p.op != 5 || p.msg != "server busy" {
		c.t.Fatalf("%s: RRQ %s answered with opcode %d %q, want ERROR \"server busy\"", c.conn.LocalAddr(), name, p.op, p.msg)
	}
	if d := time.Since(begin); d > 500*time.Millisecond {
		c.t.Errorf("%s: refusal took %s, want it at once", c.conn.LocalAddr(), d)
	}
	// The ERROR is 4+11+1 bytes, less than an RRQ for ipxe.efi.
	if p.size > 16 {
		c.t.Errorf("refusal is %d bytes, want at most 16", p.size)
	}
}

// openFilesOn counts this process's descriptors open on path.
func openFilesOn(t *testing.T, path string) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	n := 0
	for _, fd := range fds {
		if target, err := os.Readlink("/proc/self/fd/" + fd.Name()); err == nil && target == path {
			n++
		}
	}
	return n
}

// logRecords is a JSON slog handler's output, decoded.
type logRecords struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logRecords) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logRecords) with(t *testing.T, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

func waitActive(t *testing.T, s *Server, want int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for s.Stats().Active != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d transfers active, want %d", s.Stats().Active, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTransferCaps: real UDP clients from several loopback addresses open
// more transfers than the caps allow. Those over a cap get "server busy" at
// once and no file is opened for them; once earlier transfers end, new ones
// (a real pin/tftp download among them) go through again. Files are read
// from disk here (CacheFiles -1), where an admitted transfer holds a
// descriptor, so the descriptors show which requests opened the file.
func TestTransferCaps(t *testing.T) {
	logs := &logRecords{}
	f := startWith(t, "127.0.0.1", Options{MaxTransfers: 4, MaxPerClient: 2, CacheFiles: -1},
		slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		func(s *Server) {
			s.timeout = 20 * time.Second // held transfers must outlive the test
			s.warn.every = time.Hour     // one window: the flood below is summarised by flush
		})
	held := filepath.Join(f.root, "held.bin")
	writeFile(t, held, randomBytes(t, 4096))
	want := randomBytes(t, 3000)
	writeFile(t, filepath.Join(f.root, "ipxe.efi"), want)

	var holders []*rawClient
	holdFrom := func(ip string) *rawClient {
		c := newRawClient(t, f, ip)
		c.hold("held.bin")
		holders = append(holders, c)
		return c
	}
	t.Cleanup(func() { // before the server's cleanup, which waits for transfers
		for _, c := range holders {
			c.end()
		}
	})

	// Per client: 127.0.0.2 gets two transfers, not a third.
	a1, a2 := holdFrom("127.0.0.2"), holdFrom("127.0.0.2")
	newRawClient(t, f, "127.0.0.2").refused("held.bin")
	// Global: 127.0.0.3 fills the last two slots; 127.0.0.4 and the real
	// client (127.0.0.1) are refused although each has nothing running.
	holdFrom("127.0.0.3")
	holdFrom("127.0.0.3")
	newRawClient(t, f, "127.0.0.4").refused("held.bin")
	if _, _, err := f.fetch(t, "ipxe.efi", 1468, true); err == nil || !strings.Contains(err.Error(), "server busy") {
		t.Fatalf("fetch with every slot taken: %v, want a \"server busy\" error", err)
	}
	if st := f.server.Stats(); st.Active != 4 || st.Refused != 3 {
		t.Errorf("Stats %+v, want 4 active and 3 refused", st)
	}
	if n := openFilesOn(t, held); n != 4 {
		t.Errorf("%d descriptors open on held.bin, want 4: one per admitted transfer, none for refused ones", n)
	}
	if n := f.server.limit.entries(); n != 2 {
		t.Errorf("per-client table has %d entries, want 2 (127.0.0.2, 127.0.0.3)", n)
	}
	caps := map[string]int{}
	for _, rec := range logs.with(t, "tftp: refused, server busy") {
		caps[fmt.Sprint(rec["cap"])]++
	}
	if caps["per-client"] != 1 || caps["global"] != 2 {
		t.Errorf("refusals logged by cap %v, want per-client 1 and global 2", caps)
	}
	f.mu.Lock()
	if len(f.transfers) != 0 {
		t.Errorf("OnTransfer called for refusals over a cap: %+v", f.transfers)
	}
	f.mu.Unlock()

	// A flood while full: every request refused, the log gets at most
	// logBurst lines in all plus one summary line with the count.
	flood := newRawClient(t, f, "127.0.0.5")
	for range 200 {
		flood.refused("held.bin")
	}
	f.server.warn.flush()
	busy := logs.with(t, "tftp: refused, server busy")
	logged := 0
	for _, rec := range busy {
		if n, ok := rec["suppressed"].(float64); ok {
			logged += int(n)
		} else {
			logged++
		}
	}
	if len(busy) > logBurst+1 || logged != 203 {
		t.Errorf("203 refusals gave %d log lines accounting for %d; want at most %d lines accounting for all", len(busy), logged, logBurst+1)
	}
	if st := f.server.Stats(); st.Refused != 203 {
		t.Errorf("Stats().Refused = %d, want 203", st.Refused)
	}

	// Transfers resume once earlier ones end: one of 127.0.0.2's frees a
	// global slot, which the real client gets, byte for byte.
	a1.end()
	waitActive(t, f.server, 3)
	f.mu.Lock()
	f.transfers = nil // a1's end
	f.mu.Unlock()
	got, size, err := f.fetch(t, "ipxe.efi", 1468, true)
	if err != nil || !bytes.Equal(got, want) || size != int64(len(want)) {
		t.Fatalf("fetch after a slot freed: %v, %d bytes, tsize %d; want %d identical bytes", err, len(got), size, len(want))
	}
	if tr := f.lastTransfer(t); tr.err != nil || tr.file != "ipxe.efi" || tr.bytes != int64(len(want)) {
		t.Errorf("OnTransfer got %+v", tr)
	}
	waitActive(t, f.server, 3)
	// 127.0.0.2 has one transfer left, so it may start another.
	holdFrom("127.0.0.2")
	a2.end()
	for _, c := range holders {
		c.end()
	}
	waitActive(t, f.server, 0)
	if n := f.server.limit.entries(); n != 0 {
		t.Errorf("per-client table has %d entries with no transfers running, want 0", n)
	}
	if n := openFilesOn(t, held); n != 0 {
		t.Errorf("%d descriptors still open on held.bin after every transfer ended", n)
	}
}

// TestLimiterTableBounded: however many addresses ask, the per-client
// table never has more entries than there are live transfers, and so
// never more than the global cap; it is empty once all have ended.
func TestLimiterTableBounded(t *testing.T) {
	const max, perClient = 16, 3
	l := newLimiter(max, perClient)
	r := rand.New(rand.NewPCG(1, 2))
	var live []netip.Addr
	count := map[netip.Addr]int{}
	for i := range 100_000 {
		if len(live) > 0 && r.IntN(3) == 0 {
			j := r.IntN(len(live))
			a := live[j]
			live = append(live[:j], live[j+1:]...)
			l.release(a)
			count[a]--
		} else {
			// Mostly fresh addresses (a forged flood), some repeats.
			a := netip.AddrFrom4([4]byte{198, 18, byte(r.IntN(4)), byte(r.IntN(256))})
			if r.IntN(4) == 0 && len(live) > 0 {
				a = live[r.IntN(len(live))]
			}
			which := l.acquire(a)
			switch {
			case len(live) >= max:
				if which != "global" {
					t.Fatalf("op %d: acquire with %d live = %q, want global", i, len(live), which)
				}
			case count[a] >= perClient:
				if which != "per-client" {
					t.Fatalf("op %d: acquire for %v with %d live = %q, want per-client", i, a, count[a], which)
				}
			case which != "":
				t.Fatalf("op %d: acquire refused (%s) with %d live, %d for %v", i, which, len(live), count[a], a)
			default:
				live = append(live, a)
				count[a]++
			}
		}
		if e, n := l.entries(), l.active(); n != len(live) || e > n || e > max {
			t.Fatalf("op %d: %d entries, %d active, %d live: want entries <= active = live <= %d", i, e, n, len(live), max)
		}
	}
	for _, a := range live {
		l.release(a)
	}
	if e, n := l.entries(), l.active(); e != 0 || n != 0 {
		t.Fatalf("after releasing all: %d entries, %d active; want 0, 0", e, n)
	}
}

// TestOptionsDefaults: a zero Options never means "no cap".
func TestOptionsDefaults(t *testing.T) {
	for _, c := range []struct {
		in             Options
		max, perClient int
	}{
		{Options{}, DefaultMaxTransfers, DefaultMaxPerClient},
		{Options{MaxTransfers: -1, MaxPerClient: -1}, DefaultMaxTransfers, DefaultMaxPerClient},
		{Options{MaxTransfers: 2}, 2, 2},
		{Options{MaxTransfers: 10, MaxPerClient: 1}, 10, 1},
	} {
		max, perClient := New(t.TempDir(), c.in, nil).limit.caps()
		if max != c.max || perClient != c.perClient {
			t.Errorf("New(%+v): caps %d, %d; want %d, %d", c.in, max, perClient, c.max, c.perClient)
		}
	}
}

// TestUnansweredRRQCost: a forged request (nobody ever ACKs) gets the first
// DATA or OACK 3 times, then one ERROR, and nothing more: at most about
// 1.6 kB for a 17-byte request. With the real timings that takes 9 s; before
// the caps it was 6*516 bytes+ERROR over ~20 s (see packetRetries).
func TestUnansweredRRQCost(t *testing.T) {
	f := startWith(t, "127.0.0.1", Options{}, nil, func(s *Server) { s.timeout = 150 * time.Millisecond })
	writeFile(t, filepath.Join(f.root, "ipxe.efi"), randomBytes(t, 100_000))
	for _, c := range []struct {
		name     string
		rrq      string
		first    uint16 // opcode of the packet repeated
		maxBytes int    // bytes of the repeats and the ERROR together
	}{
		{"no options", "ipxe.efi\x00octet\x00", 3, 3*516 + 100},
		{"empty mode", "ipxe.efi\x00\x00", 3, 3*516 + 100},
		{"blksize and tsize", "ipxe.efi\x00octet\x00blksize\x001468\x00tsize\x000\x00", 6, 3*30 + 100},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl := newRawClient(t, f, "127.0.0.1")
			if _, err := cl.conn.WriteToUDP(append([]byte{0, 1}, c.rrq...), cl.server); err != nil {
				t.Fatal(err)
			}
			repeats, total := 0, 0
			for {
				p, err := cl.read(3 * time.Second)
				if err != nil {
					t.Fatalf("after %d packets: %v (want an ERROR at the end)", repeats, err)
				}
				total += p.size
				if p.op == 5 {
					break
				}
				if p.op != c.first {
					t.Fatalf("opcode %d, want %d", p.op, c.first)
				}
				repeats++
			}
			if repeats != 3 {
				t.Errorf("first packet sent %d times, want 3", repeats)
			}
			if total > c.maxBytes {
				t.Errorf("%d bytes sent for a %d-byte request, want at most %d", total, len(c.rrq)+2, c.maxBytes)
			}
			if _, err := cl.read(500 * time.Millisecond); err == nil {
				t.Errorf("a packet after the ERROR")
			}
			t.Logf("%d-byte RRQ: %d packets, %d bytes back (x%.0f)", len(c.rrq)+2, repeats+1, total, float64(total)/float64(len(c.rrq)+2))
		})
	}
	waitActive(t, f.server, 0)
}
