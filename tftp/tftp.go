// Package tftp is flint's read-only TFTP server for the first-stage iPXE
// binaries (undionly.kpxe, ipxe.efi, snponly.efi).
//
// Files come from one root directory, normally Debian's /usr/lib/ipxe. A
// request name is checked lexically (no "..", no backslash, no NUL) and then
// opened with symlinks followed: the operator owns root, and Debian's
// ipxe.efi there is a symlink to /boot/ipxe.efi, which must keep working.
// A client can therefore reach exactly the files root names, no others.
package tftp

import (
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
	"time"

	pintftp "github.com/pin/tftp/v3"
)

const (
	// packetTimeout is how long the server waits for each ACK. Firmware
	// TFTP clients are slow but answer within a second when they answer at all.
	packetTimeout = 3 * time.Second
	// packetRetries is how often an unanswered packet is sent before the
	// transfer is given up (so a vanished client costs at most ~15 s).
	packetRetries = 5
)

// Server serves the files under one directory over TFTP.
type Server struct {
	root string
	log  *slog.Logger

	// OnTransfer, if set, is called after every read request, refused ones
	// included (then err says why and bytes is 0). It runs on the transfer's
	// goroutine, so it must be safe for concurrent use.
	OnTransfer func(client netip.Addr, file string, bytes int64, dur time.Duration, err error)
}

// New returns a server for the files under root. A nil log discards messages.
func New(root string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{root: filepath.Clean(root), log: log}
}

// Serve listens on addr (":69", "198.18.0.1:69") until ctx is done. A bind
// error is returned at once; on ctx done it waits for running transfers,
// each bounded by the packet timeout and retries.
func (s *Server) Serve(ctx context.Context, addr string) error {
	conn, err := net.ListenPacket(network(addr), addr)
	if err != nil {
		return fmt.Errorf("tftp: listen on %s: %w (port 69 needs root or CAP_NET_BIND_SERVICE; is another TFTP server running?)", addr, err)
	}
	defer conn.Close() // also when Shutdown raced ahead of the library's Serve and never saw conn

	if fi, err := os.Stat(s.root); err != nil || !fi.IsDir() {
		s.log.Warn("tftp: root is not a directory: every request will fail (install Debian's ipxe package or set ipxe.directory)", "root", s.root)
	}

	srv := pintftp.NewServer(s.handleRead, s.handleWrite)
	srv.SetBlockSizeNegotiation(true) // honour blksize, clamped to the interface MTU
	srv.SetTimeout(packetTimeout)
	srv.SetRetries(packetRetries)
	srv.SetHook(badPacketLogger{s.log})
	// Multi-port mode (the library's default) on purpose: single-port is
	// about 10x slower and caps blksize at 512.

	done := make(chan error, 1)
	go func() { done <- srv.Serve(conn) }()
	s.log.Info("tftp: serving", "addr", conn.LocalAddr().String(), "root", s.root)

	select {
	case err := <-done:
		if err == nil {
			return errors.New("tftp: server stopped unexpectedly")
		}
		return fmt.Errorf("tftp: serve on %s: %w", addr, err)
	case <-ctx.Done():
		srv.Shutdown()
		<-done
		return nil
	}
}

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
	f, err := s.open(name)
	if err != nil {
		s.log.Warn("tftp: refused", "client", client, "file", name, "reason", err.Error())
		s.report(client, name, 0, time.Since(start), err)
		return err // sent to the client as a TFTP ERROR packet
	}
	defer f.Close()

	// *os.File is an io.Seeker, so the library answers tsize itself.
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
		s.log.Warn("tftp: transfer failed", "client", client, "file", name, "bytes", n, "duration", dur, "err", err.Error())
	} else {
		s.log.Info("tftp: sent", "client", client, "file", name, "bytes", n, "duration", dur)
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
	s.log.Warn("tftp: refused", "client", client, "file", name, "reason", "write request")
	return errors.New("flint's TFTP server is read-only")
}

func (s *Server) report(client netip.Addr, name string, n int64, dur time.Duration, err error) {
	if s.OnTransfer != nil {
		s.OnTransfer(client, name, n, dur, err)
	}
}

// open opens the regular file a request names, or says why not. Its errors
// are sent to the client, so they name the request, never a host path.
func (s *Server) open(name string) (*os.File, error) {
	rel, err := cleanName(name)
	if err != nil {
		return nil, err
	}
	p := filepath.Join(s.root, filepath.FromSlash(rel))
	// Stat before open: opening a FIFO or device could block or have effects.
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("file not found: %s", name)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read %s", name)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file: %s", name)
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s", name)
	}
	// Check again on the open file: it may have been replaced since the Stat.
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("not a regular file: %s", name)
	}
	return f, nil
}

// cleanName turns a TFTP request name into a slash-separated path relative
// to the root, or refuses it. Leading slashes are dropped (Ignition and some
// firmware send "/ipxe.efi"); any ".." component, backslash or control byte
// is refused, so no name can leave the root lexically.
func cleanName(name string) (string, error) {
	for _, r := range name {
		switch {
		case r == 0:
			return "", errors.New("refused: NUL byte in file name")
		case r == '\\':
			return "", errors.New("refused: backslash in file name")
		case r < ' ' || r == 0x7f:
			return "", errors.New("refused: control character in file name")
		}
	}
	rel := strings.TrimLeft(name, "/")
	for _, part := range strings.Split(rel, "/") {
		if part == ".." {
			return "", fmt.Errorf("refused: %q leaves the TFTP root", name)
		}
	}
	rel = filepath.ToSlash(filepath.Clean(filepath.FromSlash(rel)))
	if rel == "." || !filepath.IsLocal(rel) {
		return "", fmt.Errorf("refused: %q is not a file name", name)
	}
	return rel, nil
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
// packets, failed sockets). Finished and failed transfers are logged by the
// handlers, which know the bytes sent; the library calls OnFailure for those
// too, with the client's address set, so those calls are skipped here.
type badPacketLogger struct{ log *slog.Logger }

func (badPacketLogger) OnSuccess(pintftp.TransferStats) {}

func (h badPacketLogger) OnFailure(st pintftp.TransferStats, err error) {
	if st.RemoteAddr == nil {
		h.log.Debug("tftp: bad request packet", "err", err.Error())
	}
}
