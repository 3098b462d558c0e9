// Package tftp is flint's read-only TFTP server for the first-stage iPXE
// binaries (undionly.kpxe, ipxe.efi, snponly.efi).
//
// Files come from one root directory, normally Debian's /usr/lib/ipxe. A
// request name is checked lexically (no "..", no backslash, no NUL) and then
// opened with symlinks followed: the operator owns root, and Debian's
// ipxe.efi there is a symlink to /boot/ipxe.efi, which must keep working.
// A client can therefore reach exactly the files root names, no others.
//
// Files are sent from memory: the bytes of the files served last are kept,
// bounded (Options.CacheFiles, Options.CacheBytes), and checked against the
// file on disk (inode, size, mtime, ctime) on every request, so a replaced
// or rewritten file is read again and a deleted one is not served.
//
// Every request from the network is treated as hostile. TFTP has no
// handshake, so anyone who can send a UDP packet with a forged source address
// can make the server send to a victim (a reflector). Three things bound that:
//
//   - Concurrent transfers are capped in total and per client address
//     (Options.MaxTransfers, Options.MaxPerClient). A request over a cap is
//     refused at once with one short ERROR packet ("server busy", about
//     the size of a request): no file is opened, nothing is retransmitted.
//   - A client that never answers gets each packet at most packetRetries+1
//     times, packetTimeout apart, then one ERROR (see packetRetries for the
//     bytes that costs, before and after the caps).
//   - By default the request socket only receives on the provisioning
//     interface (Options.Interface, SO_BINDTODEVICE).
//
// pin/tftp serves each transfer from a socket of its own (multi-port mode):
// it is opened by the library for every request, bound to the address the
// request was sent to and a random port, and it only accepts packets from
// the requesting client's address and port. A refused request holds that
// socket only while its ERROR is sent.
package tftp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	pintftp "github.com/pin/tftp/v3"
)

const (
	// packetTimeout is how long the server waits for each ACK. Firmware
	// TFTP clients are slow but answer within a second when they answer at all.
	packetTimeout = 3 * time.Second
	// packetRetries is how often an unanswered packet is sent again before
	// the transfer is given up; there is no pause beyond packetTimeout.
	//
	// pin/tftp v3.2.0 has one retry count for every packet of every
	// transfer (Server.SetRetries is copied into each transfer when it
	// starts), so the first DATA/OACK, the one a forged request reflects,
	// cannot get fewer retries than later blocks without forking the
	// library. 2 is the compromise: a transfer survives two losses in a row
	// of the same block or its ACK, and a client that never answers costs
	// 3 packets and an ERROR over 9 s.
	//
	// Measured on loopback, one RRQ for ipxe.efi that is never answered
	// (payload bytes; "wire" adds 28 bytes of IPv4/UDP headers per packet):
	//
	//   request                     before (5 retries,    after (2 retries,
	//                               ~0.5 s backoff)       no backoff)
	//   "ipxe.efi" octet, 17 B      3138 B, x185 (wire    1590 B, x94 (wire
	//                               x74), held 20 s       x37), held 9 s
	//   "ipxe.efi" empty mode, 12 B 3138 B, x262 (x83)    1590 B, x133 (x42)
	//   blksize+tsize, 38 B         216 B, x5.7 (x6.2)    126 B, x3.3 (x3.6)
	//
	// Per request the reflection stays large: a TFTP server cannot tell a
	// forged request from a real one. What bounds it is the cap: at most
	// MaxTransfers such requests are served at a time and each lasts 9 s,
	// so with the default 512 the server sends at most 512*1590 B per 9 s
	// (about 90 kB/s) to forged addresses however fast requests arrive;
	// every request beyond that is answered with one 16-byte ERROR and no
	// retransmission (44 bytes on the wire for a request of at least 32).
	// Before the caps every request was served.
	packetRetries = 2
)

// Default caps, the same as package config's defaults (limits.tftp_transfers
// and limits.tftp_transfers_per_client).
const (
	DefaultMaxTransfers = 512
	DefaultMaxPerClient = 4
)

// errBusy is what a client over a cap gets: short, so that the refusal
// sent to a forged address is about the size of the request that caused it.
var errBusy = errors.New("server busy")

// Options configure a Server. The zero value is usable and safe: the caps
// then take their defaults, never "unlimited".
type Options struct {
	// MaxTransfers caps concurrent transfers from all clients
	// (limits.tftp_transfers). 0 or less: DefaultMaxTransfers.
	MaxTransfers int
	// MaxPerClient caps concurrent transfers from one client IP address
	// (limits.tftp_transfers_per_client). 0 or less: DefaultMaxPerClient;
	// more than MaxTransfers: MaxTransfers.
	MaxPerClient int
	// Interface, if set, is the only interface the request socket receives
	// on (SO_BINDTODEVICE), used when Serve's address has no host (":69").
	// An address with a host (server.listen) is bound as given instead.
	// Transfer sockets are opened by pin/tftp, bound to the address the
	// request arrived at, and accept only the requesting client's packets.
	Interface string
	// CacheFiles and CacheBytes bound the files kept in memory: at most
	// CacheFiles files and CacheBytes bytes in all; a larger file is read
	// from disk for each transfer. 0: DefaultCacheFiles, DefaultCacheBytes;
	// less than 0 (either): nothing is kept, every transfer reads from disk.
	CacheFiles int
	CacheBytes int64
	// OnTransfer, if set, is called after every read request that was
	// admitted, refused ones included (then err says why and bytes is 0).
	// Requests over a cap are not reported: a flood would turn into one
	// call per packet; Stats counts them. It runs on the transfer's
	// goroutine, so it must be safe for concurrent use.
	OnTransfer func(client netip.Addr, file string, bytes int64, dur time.Duration, err error)
}

// Stats are the server's counters.
type Stats struct {
	Active  int    // transfers running now
	Refused uint64 // requests refused because a cap was reached, since New

	CachedFiles int   // files kept in memory now
	CachedBytes int64 // their bytes (files still being read in included)
}

// Server serves the files under one directory over TFTP.
type Server struct {
	root       string
	log        *slog.Logger
	iface      string
	onTransfer func(client netip.Addr, file string, bytes int64, dur time.Duration, err error)
	limit      *limiter
	refused    atomic.Uint64
	warn       *rateLog
	cache      *fileCache // nil: files are read from disk for every transfer

	// Per-packet timing; tests shorten them.
	timeout time.Duration
	retries int
}

// New returns a server for the files under root. A nil log discards messages.
func New(root string, opts Options, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	maxAll, perClient := opts.MaxTransfers, opts.MaxPerClient
	if maxAll <= 0 {
		maxAll = DefaultMaxTransfers
	}
	if perClient <= 0 {
		perClient = DefaultMaxPerClient
	}
	perClient = min(perClient, maxAll)
	var cache *fileCache
	if opts.CacheFiles >= 0 && opts.CacheBytes >= 0 {
		files, bytes := opts.CacheFiles, opts.CacheBytes
		if files == 0 {
			files = DefaultCacheFiles
		}
		if bytes == 0 {
			bytes = DefaultCacheBytes
		}
		cache = newFileCache(files, bytes)
	}
	return &Server{
		root:       filepath.Clean(root),
		log:        log,
		iface:      opts.Interface,
		onTransfer: opts.OnTransfer,
		limit:      newLimiter(maxAll, perClient),
		warn:       newRateLog(log, logInterval, logBurst),
		cache:      cache,
		timeout:    packetTimeout,
		retries:    packetRetries,
	}
}

// Stats returns the server's counters; safe to call at any time.
func (s *Server) Stats() Stats {
	files, bytes := s.cache.stats()
	return Stats{Active: s.limit.active(), Refused: s.refused.Load(), CachedFiles: files, CachedBytes: bytes}
}

// Serve listens on addr (":69", "198.18.0.1:69") until ctx is done. With no
// host in addr and Options.Interface set, it receives only on that
// interface. A bind error is returned at once; on ctx done it waits for
// running transfers, each bounded by the packet timeout and retries.
func (s *Server) Serve(ctx context.Context, addr string) error {
	conn, where, err := listen(addr, s.iface)
	if err != nil {
		return err
	}
	defer conn.Close() // also when Shutdown raced ahead of the library's Serve and never saw conn

	if fi, err := os.Stat(s.root); err != nil || !fi.IsDir() {
		s.log.Warn("tftp: root is not a directory: every request will fail (install Debian's ipxe package or set ipxe.directory)", "root", s.root)
	}

	srv := pintftp.NewServer(s.handleRead, s.handleWrite)
	srv.SetBlockSizeNegotiation(true) // honour blksize, clamped to the interface MTU
	srv.SetTimeout(s.timeout)
	srv.SetRetries(s.retries)
	// No random pause before a retransmission (the library's default is up
	// to 1 s): the timeout is the wait, and an unanswered transfer ends sooner.
	srv.SetBackoff(func(int) time.Duration { return 0 })
	srv.SetHook(badPacketLogger{s.warn})
	// Multi-port mode (the library's default) on purpose: single-port is
	// about 10x slower and caps blksize at 512.

	done := make(chan error, 1)
	go func() { done <- srv.Serve(conn) }()
	stopFlush := s.warn.flushEvery()
	defer stopFlush()
	max, perClient := s.limit.caps()
	s.log.Info("tftp: serving", "addr", conn.LocalAddr().String(), "on", where, "root", s.root,
		"max_transfers", max, "max_per_client", perClient)

	select {
	case err := <-done:
		if err == nil {
			return errors.New("tftp: server stopped unexpectedly")
		}
		return fmt.Errorf("tftp: serve on %s: %w", where, err)
	case <-ctx.Done():
		// pin/tftp's Shutdown waits for every transfer, and a client that
		// stopped answering holds one for its retries: flint stops within a
		// second instead, leaving such transfers to end on their own.
		stopped := make(chan struct{})
		go func() { srv.Shutdown(); <-done; close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(shutdownWait):
			s.log.Warn("tftp: stopped without waiting for transfers whose clients stopped answering", "active", s.Stats().Active)
		}
		return nil
	}
}

// shutdownWait bounds how long Serve waits for running transfers once its
// context is done.
const shutdownWait = 800 * time.Millisecond

// listen opens the request socket. With no host in addr and iface set, the
// socket is bound to the interface as well as the port; where says which
// for logs and errors.
func listen(addr, iface string) (conn net.PacketConn, where string, err error) {
	where = addr
	var lc net.ListenConfig
	if host, _, err := net.SplitHostPort(addr); err == nil && host == "" && iface != "" {
		lc.Control = bindToDevice(iface)
		where = addr + " on interface " + iface
	}
	conn, err = lc.ListenPacket(context.Background(), network(addr), addr)
	var ie *ifaceError
	if errors.As(err, &ie) {
		return nil, where, fmt.Errorf("tftp: listen on %s: %w", where, ie)
	}
	if err != nil {
		return nil, where, fmt.Errorf("tftp: listen on %s: %w (port 69 needs root or CAP_NET_BIND_SERVICE; is another TFTP server running?)", where, err)
	}
	return conn, where, nil
}

// ifaceError is a failure to bind to server.interface; it carries its own hint.
type ifaceError struct{ error }

func (e *ifaceError) Unwrap() error { return e.error }

// network picks udp4 unless addr names an IPv6 address: PXE TFTP is IPv4,
// and an IPv4 socket spares pin/tftp the v4-mapped addresses and IPv6
// packet info of a dual-stack one (":69" would otherwise be dual-stack).
func network(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return "udp4"
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() && !ip.Is4In6() {
		return "udp"
	}
	return "udp4"
}

func (s *Server) handleRead(name string, rf io.ReaderFrom) error {
	start := time.Now()
	client := clientOf(rf)
	if which := s.limit.acquire(client); which != "" {
		s.refused.Add(1)
		s.warn.Warn("tftp: refused, server busy", "client", client, "file", clip(name), "cap", which,
			"hint", "normal for a flood of forged requests; if these are your machines, raise limits.tftp_transfers or limits.tftp_transfers_per_client")
		return errBusy // one ERROR packet, sent by the library; no file opened
	}
	defer s.limit.release(client)

	f, from, err := s.open(name)
	if err != nil {
		s.warn.Warn("tftp: refused", "client", client, "file", clip(name), "reason", err.Error())
		s.report(client, name, 0, time.Since(start), err)
		return err // sent to the client as a TFTP ERROR packet
	}
	defer f.Close()

	// f is an io.Seeker, so the library answers tsize itself.
	n, err := rf.ReadFrom(f)
	dur := time.Since(start)
	if isSizeProbe(n, err) {
		// UEFI PXE (EDK2) first asks only for tsize and aborts with error 8
		// once it has the option reply; the real download follows.
		s.log.Debug("tftp: size probe", "client", client, "file", name)
		return nil
	}
	if err != nil {
		err = errors.New(strings.ReplaceAll(err.Error(), "\x00", ""))
		s.warn.Warn("tftp: transfer failed", "client", client, "file", name, "bytes", n, "duration", dur, "err", err.Error())
	} else {
		s.log.Info("tftp: sent", "client", client, "file", name, "bytes", n, "duration", dur, "from", from)
	}
	s.report(client, name, n, dur, err)
	return err
}

// isSizeProbe: nothing sent and the client ended the transfer with TFTP error
// 8 ("option negotiation", what EDK2 sends after reading tsize).
func isSizeProbe(n int64, err error) bool {
	return n == 0 && err != nil && strings.Contains(err.Error(), "code=8")
}

func (s *Server) handleWrite(name string, wt io.WriterTo) error {
	client := netip.Addr{}
	if t, ok := wt.(pintftp.IncomingTransfer); ok {
		a := t.RemoteAddr()
		client = addrOf(&a)
	}
	s.warn.Warn("tftp: refused", "client", client, "file", clip(name), "reason", "write request")
	return errors.New("flint's TFTP server is read-only")
}

func (s *Server) report(client netip.Addr, name string, n int64, dur time.Duration, err error) {
	if s.onTransfer != nil {
		s.onTransfer(client, name, n, dur, err)
	}
}

// file is what a transfer sends: a copy in memory or the open file.
type file interface {
	io.ReadSeeker
	io.Closer
	Name() string // the path on disk
}

// memFile is a file's bytes in memory; closing it tells the cache the
// transfer is done with them.
type memFile struct {
	*bytes.Reader
	path    string
	release func()
}

func (m memFile) Close() error {
	m.release()
	return nil
}
func (m memFile) Name() string { return m.path }

// open opens the regular file a request names, or says why not; from says
// where its bytes come from ("memory" or "disk"). Its errors are sent to the
// client, so they name the request, never a host path.
func (s *Server) open(name string) (f file, from string, err error) {
	rel, err := cleanName(name)
	if err != nil {
		return nil, "", err
	}
	p := filepath.Join(s.root, filepath.FromSlash(rel))
	// Stat before open: opening a FIFO or device could block or have effects.
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		s.cache.forget(rel)
		return nil, "", fmt.Errorf("file not found: %s", clip(name))
	}
	if err != nil {
		s.cache.forget(rel)
		return nil, "", fmt.Errorf("cannot read %s", clip(name))
	}
	if !fi.Mode().IsRegular() {
		s.cache.forget(rel)
		return nil, "", fmt.Errorf("not a regular file: %s", clip(name))
	}
	if data, release, ok := s.cache.get(rel, p, fi); ok {
		return memFile{bytes.NewReader(data), p, sync.OnceFunc(release)}, "memory", nil
	}
	osf, err := os.Open(p)
	if err != nil {
		return nil, "", fmt.Errorf("cannot read %s", clip(name))
	}
	// Check again on the open file: it may have been replaced since the Stat.
	if fi, err := osf.Stat(); err != nil || !fi.Mode().IsRegular() {
		osf.Close()
		return nil, "", fmt.Errorf("not a regular file: %s", clip(name))
	}
	return osf, "disk", nil
}

// cleanName turns a TFTP request name into a slash-separated path relative
// to the root, or refuses it. Leading slashes are dropped (Ignition and some
// firmware send "/ipxe.efi"); "..", a backslash, a control character or
// bytes that are not UTF-8 anywhere in the name are refused, so no name can
// leave the root lexically. (No iPXE file name has "..", even inside a name.)
func cleanName(name string) (string, error) {
	if !utf8.ValidString(name) {
		return "", errors.New("refused: file name is not UTF-8")
	}
	for _, r := range name {
		switch {
		case r == 0:
			return "", errors.New("refused: NUL byte in file name")
		case r == '\\':
			return "", errors.New("refused: backslash in file name")
		case unicode.IsControl(r):
			return "", errors.New("refused: control character in file name")
		}
	}
	if strings.Contains(name, "..") {
		return "", fmt.Errorf("refused: %q leaves the TFTP root", clip(name))
	}
	rel := strings.TrimLeft(name, "/")
	rel = filepath.ToSlash(filepath.Clean(filepath.FromSlash(rel)))
	if rel == "." || !filepath.IsLocal(rel) {
		return "", fmt.Errorf("refused: %q is not a file name", clip(name))
	}
	return rel, nil
}

// clip shortens a name from the network for logs and error packets.
func clip(name string) string {
	const max = 128
	if len(name) <= max {
		return name
	}
	return strings.ToValidUTF8(name[:max], "") + "..."
}

func clientOf(rf io.ReaderFrom) netip.Addr {
	if t, ok := rf.(pintftp.OutgoingTransfer); ok {
		a := t.RemoteAddr()
		return addrOf(&a)
	}
	return netip.Addr{}
}

func addrOf(a *net.UDPAddr) netip.Addr {
	ip, _ := netip.AddrFromSlice(a.IP)
	return ip.Unmap()
}

// badPacketLogger reports what pin/tftp cannot hand to a transfer (malformed
// packets, failed sockets), rate-limited. Finished and failed transfers are
// logged by the handlers, which know the bytes sent; the library calls
// OnFailure for those too, with the client's address set, so those calls
// are skipped here.
type badPacketLogger struct{ warn *rateLog }

func (badPacketLogger) OnSuccess(pintftp.TransferStats) {}

func (h badPacketLogger) OnFailure(st pintftp.TransferStats, err error) {
	if st.RemoteAddr == nil {
		h.warn.Debug("tftp: bad request packet", "err", err.Error())
	}
}
