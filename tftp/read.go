// Read requests: caps, the file a name may reach, and what a transfer
// reports.

package tftp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	pintftp "github.com/pin/tftp/v3"
)

// handleRead serves one read request within the caps, from memory or disk.
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

	f, from, err := s.open(client, name)
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
func (s *Server) open(client netip.Addr, name string) (f file, from string, err error) {
	rel, err := cleanName(name)
	if err != nil {
		return nil, "", err
	}
	p := filepath.Join(s.root, filepath.FromSlash(rel))
	if nf, ok := s.named[rel]; ok {
		if nf.Path == "" {
			return memFile{bytes.NewReader(nf.Data), "flint:" + rel, func() {}}, "memory", nil
		}
		p = nf.Path
	} else if s.generate != nil && strings.HasPrefix(rel, s.genPrefix) {
		data, err := s.generate(client, rel)
		if err != nil {
			return nil, "", err
		}
		return memFile{bytes.NewReader(data), "flint:" + rel, func() {}}, "flint", nil
	} else {
		for prefix, dir := range s.dirs { // one or two entries, from the config
			if sub, ok := strings.CutPrefix(rel, prefix); ok && sub != "" {
				p = filepath.Join(dir, filepath.FromSlash(sub))
				rel = "dir:" + rel // its own cache key: never a root file's
				break
			}
		}
	}
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
