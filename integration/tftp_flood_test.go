package integration

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flint-boot/flint/internal/netns"
	"golang.org/x/sys/unix"
)

// The caps TestTFTPFlood configures (limits.tftp_transfers,
// limits.tftp_transfers_per_client), and what flint may cost under them.
const (
	floodMaxTransfers = 16
	floodMaxPerClient = 2
	// Each running transfer holds a socket, and the file it sends unless
	// it is sent from memory (ipxe.efi is, after its first transfer).
	fdsPerTransfer = 2
	// pin/tftp opens a transfer socket for every request before flint can
	// refuse it; a refused one lives only while its ERROR is sent, so a few
	// may be open at any moment of a flood.
	fdSlack = 40
	// Unanswered transfers end within 3 sends x 3 s; this is with margin.
	floodHold = 15 * time.Second
)

// TestTFTPFlood: a stranger on the provisioning network fires forged and
// unanswered read requests at flint. The caps must keep flint's open files
// and the traffic it reflects bounded, a real client must still fetch
// ipxe.efi byte for byte while the flood comes from a few addresses, and
// once a flood from many addresses has passed, fetching works again.
//
// NOTE: `flint serve` must pass limits.tftp_transfers(_per_client) to
// tftp.New for this to pass; an uncapped flint fails the open-file bound.
func TestTFTPFlood(t *testing.T) {
	needRoot(t)
	needBinaries(t)
	needTools(t, "atftp")
	want, err := os.ReadFile("/usr/lib/ipxe/ipxe.efi")
	if err != nil {
		unavailable(t, "%v (Debian package ipxe)", err)
	}
	l := NewLab(t)
	ipxeDir := filepath.Join(l.Dir, "ipxe")
	ipxeCopy(t, ipxeDir)
	yaml := siteConfig{Mode: "off", IPXEDir: ipxeDir, Machines: []machine{node1}}.yaml() +
		fmt.Sprintf("limits:\n  tftp_transfers: %d\n  tftp_transfers_per_client: %d\n", floodMaxTransfers, floodMaxPerClient)
	cfg := l.writeFile(t, "flint.yaml", yaml, 0o644)
	fl := l.StartFlint(t, cfg, filepath.Join(l.Dir, "data"))
	pid := flintPID(t, fl)

	client := l.AddHost(t, "c1", "52:54:00:ee:00:01")
	client.SetAddress(t, "198.18.0.20/24")
	stranger := l.AddHost(t, "stranger", "52:54:00:ee:00:66")
	stranger.SetAddress(t, "198.18.0.66/24")
	// The victims whose addresses the stranger forges: one namespace with
	// 32 addresses, so what flint sends them can be counted on one link.
	victim := l.AddHost(t, "victim", "52:54:00:ee:00:77")
	var victims []netip.Addr
	for i := range 32 {
		a := netip.AddrFrom4([4]byte{198, 18, 0, byte(200 + i)})
		victims = append(victims, a)
		victim.SetAddress(t, a.String()+"/24")
	}
	raw := rawSocketIn(t, stranger.NS)
	self := netip.MustParseAddr("198.18.0.66")

	baseFDs := eventuallyFDs(t, pid, -1) // settled count before any TFTP
	bound := baseFDs + fdsPerTransfer*floodMaxTransfers + fdSlack
	t.Logf("flint pid %d: %d descriptors before the flood; bound %d", pid, baseFDs, bound)

	fetch := func(t *testing.T, what string) {
		t.Helper()
		dst := filepath.Join(l.Dir, "got-"+strings.ReplaceAll(what, " ", "-"))
		os.Remove(dst)
		r := l.Run(client.NS, 60*time.Second, "atftp", "--option", "blksize 1468", "--option", "tsize 0", "-g", "-r", "ipxe.efi", "-l", dst, flintIP)
		if r.Err != nil {
			t.Fatalf("%s: atftp failed\n%s", what, r)
		}
		sameFile(t, what, dst, want)
	}

	// A few sources (the stranger itself and three forged victims) flood
	// without pause while the client downloads: the per-client cap keeps
	// them to 4x2 of the 16 slots, so the client gets one.
	t.Run("few-sources", func(t *testing.T) {
		fds := watchFDs(pid, ipxeDir)
		stop := make(chan struct{})
		var sent atomic.Int64
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			srcs := append([]netip.Addr{self}, victims[:3]...)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				sendRRQ(t, raw, srcs[i%len(srcs)], "ipxe.efi")
				sent.Add(1)
				if i%20 == 19 {
					time.Sleep(10 * time.Millisecond) // ~2000 requests/s
				}
			}
		}()
		time.Sleep(500 * time.Millisecond) // the flood is under way
		fetch(t, "ipxe.efi during a flood from 4 addresses")
		close(stop)
		wg.Wait()
		max, files := fds.stop()
		socks := fds.transferSockets()
		t.Logf("%d requests sent; flint's descriptors peaked at %d (bound %d), files open at %d, transfer sockets at %d", sent.Load(), max, bound, files, socks)
		// 4 sources x 2 transfers, and the client's: no file for refused
		// requests. flint sends ipxe.efi from memory, so usually no file at
		// all; the held transfers' sockets show the flood got its slots.
		if files > 4*floodMaxPerClient+1 {
			t.Errorf("flint had up to %d files open during the flood, want at most %d: 2 per address and the client's, none for refused requests",
				files, 4*floodMaxPerClient+1)
		}
		if socks < floodMaxPerClient {
			t.Errorf("flint had at most %d transfer sockets during the flood, want at least %d: the flood's transfers were never admitted, so this checked nothing", socks, floodMaxPerClient)
		}
		if max > bound {
			t.Errorf("flint had %d open descriptors during the flood, want at most %d (%d before + %d per transfer x %d transfers + %d)",
				max, bound, baseFDs, fdsPerTransfer, floodMaxTransfers, fdSlack)
		}
	})
	eventuallyFDs(t, pid, baseFDs+4) // the flood's transfers ended

	// 4000 forged requests from 32 addresses: more than the global cap
	// can hold. Flint's descriptors stay bounded, and what reaches the
	// victims is about what the stranger sent, not a multiple of it.
	t.Run("many-sources", func(t *testing.T) {
		const n = 4000
		rx0, tx0 := linkBytes(t, l, victim.NS, "rx"), linkBytes(t, l, stranger.NS, "tx")
		fds := watchFDs(pid, ipxeDir)
		for i := range n {
			sendRRQ(t, raw, victims[i%len(victims)], "ipxe.efi")
			if i%20 == 19 {
				time.Sleep(10 * time.Millisecond)
			}
		}
		floodEnd := time.Now()
		eventuallyFDs(t, pid, baseFDs+4) // every admitted transfer gave up
		max, files := fds.stop()
		if d := time.Since(floodEnd); d > floodHold {
			t.Errorf("unanswered transfers took %s to end after the flood, want at most %s", d.Round(time.Second), floodHold)
		}
		time.Sleep(time.Second) // the last ERRORs and ICMP settle
		rx, tx := linkBytes(t, l, victim.NS, "rx")-rx0, linkBytes(t, l, stranger.NS, "tx")-tx0
		factor := float64(rx) / float64(tx)
		t.Logf("%d requests, %d bytes on the stranger's link; %d bytes reached the victims (x%.2f); descriptors peaked at %d (bound %d), files open at %d",
			n, tx, rx, factor, max, bound, files)
		if files > floodMaxTransfers {
			t.Errorf("flint had up to %d files open during the flood, want at most %d (limits.tftp_transfers)", files, floodMaxTransfers)
		}
		if max > bound {
			t.Errorf("flint had %d open descriptors during the flood, want at most %d", max, bound)
		}
		// Admitted: at most 16 transfers x (3 DATA of 558 bytes on the
		// wire + an ERROR); everything else one 58-byte ERROR per 59-byte
		// request. Uncapped, every request costs about 3.3 kB.
		if limit := tx + floodMaxTransfers*(3*558+120) + 16*1024; rx > limit || factor > 1.5 {
			t.Errorf("flint sent the forged addresses %d bytes for %d requested (x%.1f), want at most %d (x1.5)", rx, tx, factor, limit)
		}
	})

	t.Run("after-the-flood", func(t *testing.T) {
		fetch(t, "ipxe.efi after the flood")
	})

	// Refusals are logged in summary, not one line each.
	suppressed := regexp.MustCompile(`\bsuppressed=(\d+)\b`)
	lines, counted := 0, 0
	for _, line := range strings.Split(fl.Stdout.String()+fl.Stderr.String(), "\n") {
		if !strings.Contains(line, `msg="tftp: refused, server busy"`) {
			continue
		}
		lines++
		if m := suppressed.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			counted += n
		} else {
			counted++
		}
	}
	t.Logf("%d log lines for %d refusals", lines, counted)
	if counted == 0 {
		t.Errorf("no refusal logged: the caps never refused anything")
	}
	if lines > 40 {
		t.Errorf("%d log lines about refusals: a flood must not flood the log", lines)
	}
}

// TestTFTPInterface: with server.interface br0 and no server.listen, flint's
// TFTP answers on br0 only. A host on another link of the server namespace,
// which reaches flint's HTTP there, gets no TFTP answer at either address.
//
// NOTE: `flint serve` must pass server.interface to tftp.New for this to pass.
func TestTFTPInterface(t *testing.T) {
	needRoot(t)
	needBinaries(t)
	needTools(t, "atftp", "curl")
	want, err := os.ReadFile("/usr/lib/ipxe/ipxe.efi")
	if err != nil {
		unavailable(t, "%v (Debian package ipxe)", err)
	}
	l := NewLab(t)
	ipxeDir := filepath.Join(l.Dir, "ipxe")
	ipxeCopy(t, ipxeDir)
	cfg := l.WriteConfig(t, siteConfig{Mode: "off", IPXEDir: ipxeDir, Machines: []machine{node1}})

	// A second link into the server namespace, not on the bridge.
	outside := "flt-" + l.ID + "-outside"
	l.addNS(t, outside)
	l.mustIP(t, "-n", l.Srv, "link", "add", "out0", "type", "veth", "peer", "name", "eth0", "netns", outside)
	l.mustIP(t, "-n", l.Srv, "addr", "add", "198.18.1.1/24", "dev", "out0")
	l.mustIP(t, "-n", l.Srv, "link", "set", "out0", "up")
	l.mustIP(t, "-n", outside, "addr", "add", "198.18.1.2/24", "dev", "eth0")
	l.mustIP(t, "-n", outside, "link", "set", "eth0", "up")
	l.mustIP(t, "-n", outside, "route", "add", "198.18.0.0/24", "via", "198.18.1.1")

	l.StartFlint(t, cfg, filepath.Join(l.Dir, "data"))
	client := l.AddHost(t, "c1", "52:54:00:ee:00:01")
	client.SetAddress(t, "198.18.0.20/24")

	dst := filepath.Join(l.Dir, "got-ipxe.efi")
	if r := l.Run(client.NS, 60*time.Second, "atftp", "-g", "-r", "ipxe.efi", "-l", dst, flintIP); r.Err != nil {
		t.Fatalf("atftp on br0 failed\n%s", r)
	}
	sameFile(t, "ipxe.efi on br0", dst, want)

	// The outside host does reach flint (HTTP listens everywhere)...
	for _, ip := range []string{"198.18.1.1", flintIP} {
		r := l.Run(outside, 10*time.Second, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5", fmt.Sprintf("http://%s:%d/healthz", ip, httpPort))
		if strings.TrimSpace(r.Stdout) != "200" {
			t.Fatalf("the outside host cannot reach flint's HTTP at %s, so the TFTP check below would prove nothing\n%s", ip, r)
		}
	}
	// ...but not its TFTP, at its own address or at br0's.
	conn := udpSocketIn(t, outside)
	defer conn.Close()
	for _, ip := range []string{"198.18.1.1", flintIP} {
		server := &net.UDPAddr{IP: net.ParseIP(ip), Port: 69}
		buf := make([]byte, 2048)
		for range 3 {
			if _, err := conn.WriteTo(append([]byte{0, 1}, "ipxe.efi\x00octet\x00"...), server); err != nil {
				t.Fatal(err)
			}
			conn.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
			if n, from, err := conn.ReadFrom(buf); err == nil {
				t.Fatalf("TFTP request to %s from outside br0 was answered from %v (%d bytes, opcode %d): flint must only serve TFTP on server.interface", ip, from, n, buf[1])
			}
		}
	}
}

// flintPID is the PID of the flint process itself (`ip netns exec` execs it).
func flintPID(t *testing.T, f *Flint) int {
	t.Helper()
	pid := f.Cmd.Process.Pid
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || exe != flintBin {
		t.Fatalf("pid %d runs %q (%v), not %s", pid, exe, err, flintBin)
	}
	return pid
}

func countFDs(pid int) (int, error) {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(fds), err
}

// eventuallyFDs waits until flint has at most max descriptors open (max < 0:
// until the count is the same for a second) and returns the count.
func eventuallyFDs(t *testing.T, pid, max int) int {
	t.Helper()
	last, same := -1, 0
	var n int
	err := eventually(floodHold+10*time.Second, 100*time.Millisecond, func() error {
		var err error
		if n, err = countFDs(pid); err != nil {
			return err
		}
		if max >= 0 {
			if n > max {
				return fmt.Errorf("%d descriptors open, waiting for at most %d", n, max)
			}
			return nil
		}
		if n == last {
			same++
		} else {
			last, same = n, 0
		}
		if same < 10 {
			return errNotYet
		}
		return nil
	})
	if err != nil {
		t.Fatalf("flint's descriptors: %v", err)
	}
	return n
}

// fdWatch samples flint's descriptors every 10 ms and keeps the peaks of
// all of them, of those open on files under dir, and of its UDP sockets
// other than the request socket on :69 (transfer sockets).
type fdWatch struct {
	stopc chan struct{}
	done  chan [3]int
	socks int
}

func watchFDs(pid int, dir string) *fdWatch {
	w := &fdWatch{stopc: make(chan struct{}), done: make(chan [3]int, 1)}
	go func() {
		var max [3]int
		for {
			fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
			files := 0
			sockets := map[string]bool{}
			for _, fd := range fds {
				target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
				switch {
				case err != nil:
				case strings.HasPrefix(target, dir+"/"):
					files++
				case strings.HasPrefix(target, "socket:["):
					sockets[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
				}
			}
			max[0], max[1], max[2] = maxInt(max[0], len(fds)), maxInt(max[1], files), maxInt(max[2], udpTransferSockets(pid, sockets))
			select {
			case <-w.stopc:
				w.done <- max
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return w
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// stop ends the sampling and returns the peaks: all descriptors, and files under dir.
func (w *fdWatch) stop() (fds, files int) {
	close(w.stopc)
	m := <-w.done
	w.socks = m[2]
	return m[0], m[1]
}

// transferSockets is the peak of UDP sockets other than :69, after stop.
func (w *fdWatch) transferSockets() int { return w.socks }

// udpTransferSockets counts the UDP sockets in pid's network namespace that
// are among its descriptors (inodes) and not bound to port 69.
func udpTransferSockets(pid int, inodes map[string]bool) int {
	n := 0
	for _, table := range []string{"udp", "udp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || !inodes[f[9]] || strings.HasSuffix(f[1], ":0045") {
				continue
			}
			n++
		}
	}
	return n
}

// linkBytes reads eth0's rx or tx byte counter in a namespace.
func linkBytes(t *testing.T, l *Lab, ns, dir string) int64 {
	t.Helper()
	r := l.Run(ns, 5*time.Second, "cat", "/sys/class/net/eth0/statistics/"+dir+"_bytes")
	n, err := strconv.ParseInt(strings.TrimSpace(r.Stdout), 10, 64)
	if r.Err != nil || err != nil {
		t.Fatalf("read %s bytes in %s: %v %v\n%s", dir, ns, r.Err, err, r)
	}
	return n
}

// inNamespace runs f in lab namespace ns (see netns.Do).
func inNamespace(t *testing.T, ns string, f func() error) {
	t.Helper()
	if err := netns.Do(netns.Path(ns), f); err != nil {
		t.Fatal(err)
	}
}

// rawSocketIn opens a raw IPv4 socket (IP_HDRINCL) in namespace ns: it can
// send UDP with any source address.
func rawSocketIn(t *testing.T, ns string) int {
	t.Helper()
	fd := -1
	inNamespace(t, ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		return err
	})
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// udpSocketIn opens a UDP socket on any address in namespace ns.
func udpSocketIn(t *testing.T, ns string) net.PacketConn {
	t.Helper()
	var conn net.PacketConn
	inNamespace(t, ns, func() error {
		var err error
		conn, err = net.ListenPacket("udp4", "0.0.0.0:0")
		return err
	})
	return conn
}

// sendRRQ sends one option-less read request for name to flint from src
// (forged or not) and a random port, and never answers what comes back.
func sendRRQ(t *testing.T, fd int, src netip.Addr, name string) {
	payload := append([]byte{0, 1}, name+"\x00octet\x00"...)
	pkt := make([]byte, 20+8+len(payload))
	pkt[0] = 0x45 // IPv4, 20-byte header; the kernel fills length, id and checksum
	pkt[8] = 64   // TTL
	pkt[9] = unix.IPPROTO_UDP
	s4 := src.As4()
	copy(pkt[12:16], s4[:])
	dst := netip.MustParseAddr(flintIP).As4()
	copy(pkt[16:20], dst[:])
	udp := pkt[20:]
	binary.BigEndian.PutUint16(udp[0:], uint16(1024+rand.IntN(60000)))
	binary.BigEndian.PutUint16(udp[2:], 69)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload))) // checksum 0: none (IPv4)
	copy(udp[8:], payload)
	if err := unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: dst}); err != nil && err != unix.ENOBUFS {
		t.Errorf("send forged RRQ from %v: %v", src, err)
	}
}
