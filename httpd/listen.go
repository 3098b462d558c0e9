package httpd

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// listenTCP listens on addr and caps open connections: in all (max) and per
// client address (perClient). A connection over a cap is closed at once,
// before any byte is read; the table of addresses holds only open
// connections, so it never exceeds max entries.
func listenTCP(addr string, max, perClient int) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if max <= 0 {
		return ln, nil
	}
	if perClient <= 0 || perClient > max {
		perClient = max
	}
	return &capListener{Listener: ln, max: max, perClient: perClient, open: map[netip.Addr]int{}}, nil
}

type capListener struct {
	net.Listener
	max, perClient int

	mu       sync.Mutex
	total    int
	open     map[netip.Addr]int
	refused  uint64
	lastWarn time.Time
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := addrOf(c.RemoteAddr())
		l.mu.Lock()
		if l.total >= l.max || l.open[ip] >= l.perClient {
			l.refused++
			l.mu.Unlock()
			c.Close()
			continue
		}
		l.total++
		l.open[ip]++
		l.mu.Unlock()
		return &cappedConn{Conn: c, l: l, ip: ip}, nil
	}
}

// Refused counts connections closed for being over a cap.
func (l *capListener) Refused() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.refused
}

func (l *capListener) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.open[ip]--; l.open[ip] <= 0 {
		delete(l.open, ip)
	}
}

type cappedConn struct {
	net.Conn
	l    *capListener
	ip   netip.Addr
	once sync.Once
}

// ReadFrom hands the copy to the TCP connection, so net/http's file
// responses still go out with sendfile (the wrapper would otherwise hide it
// and every asset byte would pass through user space).
func (c *cappedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

func (c *cappedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.ip) })
	return err
}

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// listenSocket creates the admin socket, readable and writable by flint's
// own user only (0600 in a directory flint owns). A socket left by a flint
// that died is replaced; one that answers belongs to a running flint.
func listenSocket(path string) (net.Listener, error) {
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin socket %s: another flint serve answers there; stop it or pick another data directory", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("admin socket %s: remove the stale socket: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	old := syscall.Umask(0o177) // the socket is created 0600, never wider for a moment
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	return ln, nil
}
