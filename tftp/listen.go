package tftp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/flint-boot/flint/internal/sockbuf"
)

// listen opens the request socket. With no host in addr and iface set, the
// socket is bound to the interface as well as the port; where says which
// for logs and errors.
func listen(addr, iface string) (conn net.PacketConn, where string, err error) {
	where = addr
	// A storm's read requests arrive in one burst: a large receive buffer
	// keeps them until the server reads them.
	lc := net.ListenConfig{Control: sockbuf.Control}
	if host, _, err := net.SplitHostPort(addr); err == nil && host == "" && iface != "" {
		bind := bindToDevice(iface)
		lc.Control = func(network, address string, c syscall.RawConn) error {
			sockbuf.Control(network, address, c)
			return bind(network, address, c)
		}
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
