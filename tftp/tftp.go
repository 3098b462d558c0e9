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
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/flint-boot/flint/internal/sockbuf"
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
	// Named are files served by a name of their own instead of from root
	// (the Secure Boot chain: shimx64.efi, grubx64.efi, grub/grub.cfg), by
	// the request name without leading slashes. Bounded by the config.
	Named map[string]Named
	// Dirs serves names under a prefix ("assets/") from a directory of its
	// own, with the same lexical checks as root (Secure Boot machines' GRUB
	// loads kernel and initrd over TFTP).
	Dirs map[string]string
	// Generate, if set, answers names under GeneratePrefix with bytes made
	// for that request and client (a Secure Boot machine's GRUB config); its
	// error is sent to the client.
	GeneratePrefix string
	Generate       func(client netip.Addr, name string) ([]byte, error)
}

// Named is a file served by a fixed name: a file on disk (Path), or bytes
// flint made (Data) when Path is empty.
type Named struct {
	Path string
	Data []byte
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
	named      map[string]Named
	dirs       map[string]string
	genPrefix  string
	generate   func(client netip.Addr, name string) ([]byte, error)
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
		named:      opts.Named,
		dirs:       opts.Dirs,
		genPrefix:  opts.GeneratePrefix,
		generate:   opts.Generate,
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
	if uc, ok := conn.(*net.UDPConn); ok && sockbuf.Of(uc) < sockbuf.Receive {
		s.log.Warn("tftp: the kernel gave a smaller receive buffer than asked: a boot storm may lose requests (they are retried); run flint as root or raise net.core.rmem_max",
			"bytes", sockbuf.Of(uc), "wanted", sockbuf.Receive)
	}
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
