// Command dhcpload drives a DHCPv4 server with full DORAs (DISCOVER, OFFER,
// REQUEST, ACK) from many simulated clients at once, for bench/dhcp.sh.
//
// Every DORA uses a MAC of its own (02:<run>:<4 bytes mixed from its index>), so the server's
// lease table grows by one entry per DORA, as in a boot storm; with -macs
// (bench/scale.sh) DORAs cycle over those MACs instead, machines the server
// knows, each getting its reserved address. All messages
// carry the BROADCAST flag, so every server answers to 255.255.255.255:68
// (no unicast to an address the simulated client does not have). One UDP
// socket bound to :68 on -iface receives every reply; a read loop hands each
// one to the DORA waiting for its xid.
//
// It prints one line of key=value pairs: DORAs completed per second, latency
// percentiles per DORA (first DISCOVER sent to ACK received), NAKs, lost
// DORAs (no answer after the retries), retransmissions, duplicates (one
// address ACKed to two MACs: must be 0) and, with -pid, the server's CPU time
// per DORA from /proc/PID/stat (utime+stime of all its threads), and how many
// ACKs each server (option 54) gave.
//
// With -restarts a client whose DORA got no answer (its server died between
// OFFER and ACK) starts over with a new DISCOVER, as RFC 2131 clients do
// after their REQUEST times out; -acks writes every client's final ACK
// ("MAC ADDRESS SERVER" per line) for a test to check against the server's
// lease records.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"
)

func main() {
	iface := flag.String("iface", "", "interface to send on and receive from (required)")
	n := flag.Int("n", 20000, "DORAs to run")
	conc := flag.Int("c", 16, "concurrent clients")
	timeout := flag.Duration("timeout", time.Second, "wait per message before retransmitting")
	retries := flag.Int("retries", 3, "transmissions per message before a DORA counts as lost")
	maxDur := flag.Duration("max", 120*time.Second, "stop starting DORAs after this long")
	pids := flag.String("pid", "", "comma-separated server PIDs whose CPU time is measured")
	run := flag.Int("run", 0, "run number, part of every MAC (0-255)")
	label := flag.String("label", "", "printed as server=LABEL")
	macsFile := flag.String("macs", "", "file of MACs, one per line, used in turn (known machines with reservations) instead of a new MAC per DORA")
	restarts := flag.Int("restarts", 0, "times a client whose DORA got no answer starts over with a new DISCOVER")
	acksFile := flag.String("acks", "", "write each client's ACK (MAC ADDRESS SERVER per line) to this file")
	flag.Parse()
	if *iface == "" || *n <= 0 || *conc <= 0 {
		flag.Usage()
		os.Exit(2)
	}

	var known []net.HardwareAddr
	if *macsFile != "" {
		b, err := os.ReadFile(*macsFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "dhcpload:", err)
			os.Exit(2)
		}
		for i, line := range strings.Fields(string(b)) {
			m, err := net.ParseMAC(line)
			if err != nil {
				fmt.Fprintf(os.Stderr, "dhcpload: %s word %d: %v\n", *macsFile, i+1, err)
				os.Exit(2)
			}
			known = append(known, m)
		}
		if len(known) < *conc {
			fmt.Fprintf(os.Stderr, "dhcpload: -c %d is more than the %d MACs in %s\n", *conc, len(known), *macsFile)
			os.Exit(2)
		}
	}

	conn, err := listen(*iface)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dhcpload:", err)
		os.Exit(1)
	}
	defer conn.Close()

	l := &loader{
		conn:    conn,
		dst:     &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort},
		pending: map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4{},
		timeout: *timeout,
		retries: *retries,
		acked:   map[[4]byte]string{},
		byMAC:   map[string]ackRecord{},
		servers: map[string]int{},
	}
	go l.readLoop()

	var pidList []int
	for _, p := range strings.Split(*pids, ",") {
		if p = strings.TrimSpace(p); p != "" {
			v, err := strconv.Atoi(p)
			if err != nil {
				fmt.Fprintln(os.Stderr, "dhcpload: bad -pid:", p)
				os.Exit(2)
			}
			pidList = append(pidList, v)
		}
	}

	cpu0 := cpuTicks(pidList)
	start := time.Now()
	deadline := start.Add(*maxDur)
	var next atomic.Int64
	var wg sync.WaitGroup
	lats := make([][]time.Duration, *conc)
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(*n) || time.Now().After(deadline) {
					return
				}
				h := mix32(uint32(i))
				mac := net.HardwareAddr{0x02, byte(*run), byte(h >> 24), byte(h >> 16), byte(h >> 8), byte(h)}
				if known != nil {
					mac = known[i%int64(len(known))]
				}
				t0 := time.Now()
				for try := 0; try <= *restarts; try++ {
					if try > 0 {
						l.restarts.Add(1)
					}
					if ok, answered := l.dora(mac); ok {
						lats[w] = append(lats[w], time.Since(t0))
						break
					} else if answered {
						break // a NAK: the server said no; not a lost packet
					}
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1 := cpuTicks(pidList)

	var all []time.Duration
	for _, s := range lats {
		all = append(all, s...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		k := int(p*float64(len(all))+0.5) - 1
		k = max(0, min(k, len(all)-1))
		return float64(all[k].Microseconds()) / 1000
	}
	ok := len(all)
	cpuMs := "na"
	if len(pidList) > 0 && ok > 0 {
		hz := 100.0 // USER_HZ; Linux reports /proc/PID/stat in these units
		cpuMs = fmt.Sprintf("%.3f", float64(cpu1-cpu0)/hz*1000/float64(ok))
	}
	l.mu.Lock()
	dups := l.dups
	var by []string
	for s, n := range l.servers {
		by = append(by, fmt.Sprintf("%s:%d", s, n))
	}
	sort.Strings(by)
	l.mu.Unlock()
	if *acksFile != "" {
		if err := l.writeAcks(*acksFile); err != nil {
			fmt.Fprintln(os.Stderr, "dhcpload:", err)
			os.Exit(1)
		}
	}
	fmt.Printf("server=%s conc=%d n=%d ok=%d secs=%.2f dora_s=%.0f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f cpu_ms_per_dora=%s naks=%d lost=%d retrans=%d restarts=%d dups=%d stray=%d acks_by=%s\n",
		*label, *conc, *n, ok, elapsed.Seconds(), float64(ok)/elapsed.Seconds(), pct(0.50), pct(0.99), pct(1.0),
		cpuMs, l.naks.Load(), l.lost.Load(), l.retrans.Load(), l.restarts.Load(), dups, l.stray.Load(), strings.Join(by, ","))
	for _, d := range l.dupNotes {
		fmt.Fprintln(os.Stderr, "dhcpload: duplicate:", d)
	}
}

// listen opens the clients' socket: 0.0.0.0:68 on iface, allowed to broadcast,
// with a large receive buffer so a burst of replies is not dropped.
func listen(iface string) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			for _, o := range []struct{ opt, v int }{{unix.SO_BROADCAST, 1}, {unix.SO_REUSEADDR, 1}, {unix.SO_RCVBUF, 8 << 20}, {unix.SO_SNDBUF, 8 << 20}} {
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o.opt, o.v); serr != nil {
					return
				}
			}
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, iface)
		})
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", "0.0.0.0:68")
	if err != nil {
		return nil, fmt.Errorf("listen on :68 (%s): %w", iface, err)
	}
	return pc.(*net.UDPConn), nil
}

type loader struct {
	conn    *net.UDPConn
	dst     *net.UDPAddr
	timeout time.Duration
	retries int

	mu       sync.Mutex
	pending  map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4
	acked    map[[4]byte]string   // address -> MAC it was ACKed to
	byMAC    map[string]ackRecord // MAC -> its last ACK
	servers  map[string]int       // server identifier -> ACKs
	dups     int
	dupNotes []string

	naks, lost, retrans, stray, restarts atomic.Int64
}

// ackRecord is one client's ACK: its address and the server that gave it.
type ackRecord struct{ ip, server string }

// writeAcks writes every client's last ACK, one "MAC ADDRESS SERVER" line each.
func (l *loader) writeAcks(path string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	macs := make([]string, 0, len(l.byMAC))
	for m := range l.byMAC {
		macs = append(macs, m)
	}
	sort.Strings(macs)
	var b strings.Builder
	for _, m := range macs {
		fmt.Fprintf(&b, "%s %s %s\n", m, l.byMAC[m].ip, l.byMAC[m].server)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func (l *loader) readLoop() {
	buf := make([]byte, 4096)
	for {
		n, _, err := l.conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		m, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || m.OpCode != dhcpv4.OpcodeBootReply {
			continue
		}
		l.mu.Lock()
		ch := l.pending[m.TransactionID]
		l.mu.Unlock()
		if ch == nil {
			l.stray.Add(1) // late answer to a retransmission, or not ours
			continue
		}
		select {
		case ch <- m:
		default:
		}
	}
}

// exchange sends msg and waits for a reply from the same client of one of
// the wanted types, retransmitting up to l.retries times.
func (l *loader) exchange(msg *dhcpv4.DHCPv4, ch chan *dhcpv4.DHCPv4, want ...dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	b := msg.ToBytes()
	for try := 0; try < l.retries; try++ {
		if try > 0 {
			l.retrans.Add(1)
		}
		if _, err := l.conn.WriteToUDP(b, l.dst); err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		t := time.NewTimer(l.timeout)
	wait:
		for {
			select {
			case r := <-ch:
				if string(r.ClientHWAddr) != string(msg.ClientHWAddr) {
					continue
				}
				for _, w := range want {
					if r.MessageType() == w {
						t.Stop()
						return r
					}
				}
			case <-t.C:
				break wait
			}
		}
	}
	return nil
}

// dora runs one DISCOVER-OFFER-REQUEST-ACK for mac; ok if it ended in an
// ACK, answered if a server said something final (ACK or NAK).
func (l *loader) dora(mac net.HardwareAddr) (ok, answered bool) {
	disc, err := dhcpv4.NewDiscovery(mac, dhcpv4.WithBroadcast(true))
	if err != nil {
		l.lost.Add(1)
		return false, false
	}
	ch := make(chan *dhcpv4.DHCPv4, 8)
	xid := disc.TransactionID
	l.mu.Lock()
	if l.pending[xid] != nil { // 1 in 4 billion: draw again next time
		l.mu.Unlock()
		l.lost.Add(1)
		return false, false
	}
	l.pending[xid] = ch
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.pending, xid)
		l.mu.Unlock()
	}()

	offer := l.exchange(disc, ch, dhcpv4.MessageTypeOffer)
	if offer == nil {
		l.lost.Add(1)
		return false, false
	}
	req, err := dhcpv4.NewRequestFromOffer(offer, dhcpv4.WithBroadcast(true))
	if err != nil {
		l.lost.Add(1)
		return false, false
	}
	req.TransactionID = xid
	ack := l.exchange(req, ch, dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak)
	switch {
	case ack == nil:
		l.lost.Add(1)
		return false, false
	case ack.MessageType() == dhcpv4.MessageTypeNak:
		if l.naks.Add(1) <= 3 {
			fmt.Fprintf(os.Stderr, "dhcpload: NAK for %s (offered %s): %q\n", mac, offer.YourIPAddr, ack.Message())
		}
		return false, true
	}
	ip4 := ack.YourIPAddr.To4()
	if ip4 == nil {
		l.lost.Add(1)
		return false, true
	}
	key := [4]byte(ip4)
	l.mu.Lock()
	if other, ok := l.acked[key]; ok && other != mac.String() {
		l.dups++
		if len(l.dupNotes) < 5 {
			l.dupNotes = append(l.dupNotes, fmt.Sprintf("%s acked to %s and %s", ip4, other, mac))
		}
	} else {
		l.acked[key] = mac.String()
	}
	server := ack.ServerIdentifier().String()
	l.byMAC[mac.String()] = ackRecord{ip: ip4.String(), server: server}
	l.servers[server]++
	l.mu.Unlock()
	return true, true
}

// mix32 is a bijection on uint32 (a MurmurHash3 finalizer): distinct
// indexes give distinct MACs that look random. Sequential MACs would all fall
// into the same bucket of dnsmasq's MAC hash, which picks the first address
// it tries, and make it offer one address to many concurrent clients.
func mix32(x uint32) uint32 {
	x ^= x >> 16
	x *= 0x85ebca6b
	x ^= x >> 13
	x *= 0xc2b2ae35
	x ^= x >> 16
	return x
}

// cpuTicks sums utime+stime (clock ticks) of the given processes.
func cpuTicks(pids []int) int64 {
	var total int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		// After ")": state is field 3 of stat(5), so utime (14) is f[11], stime (15) f[12].
		if len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			total += u + st
		}
	}
	return total
}
