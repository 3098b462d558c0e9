package dhcp

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/flint-boot/flint/internal/sockbuf"
)

// listenUDP opens a UDP socket on 0.0.0.0:port that can send broadcasts and,
// if iface is set, only sees (and sends on) that interface (SO_BINDTODEVICE).
//
// Unlike server4.NewIPv4UDPConn it sets neither SO_REUSEADDR nor
// SO_REUSEPORT: with them a second DHCP server on the same port (another
// flint, dnsmasq) binds silently and both answer every broadcast, handing out
// addresses from two lease tables. Without them that is a bind error.
func listenUDP(iface string, port int) (*net.UDPConn, error) {
	where := fmt.Sprintf("UDP :%d", port)
	if iface != "" {
		where += " on interface " + iface
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("dhcp: create socket for %s: %w", where, err)
	}
	f := os.NewFile(uintptr(fd), "dhcp")
	defer f.Close() // net.FilePacketConn dups the descriptor

	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BROADCAST, 1); err != nil {
		return nil, fmt.Errorf("dhcp: allow broadcasts on %s: %w", where, err)
	}
	sockbuf.Grow(fd)
	if iface != "" {
		if err := dhcpv4.BindToInterface(fd, iface); err != nil {
			return nil, bindError(where, err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: port}); err != nil {
		return nil, bindError(where, err)
	}
	pc, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("dhcp: %s: %w", where, err)
	}
	conn, ok := pc.(*net.UDPConn)
	if !ok {
		pc.Close()
		return nil, fmt.Errorf("dhcp: %s: not a UDP socket", where)
	}
	return conn, nil
}

// bindError says what to do about a failed bind.
func bindError(where string, err error) error {
	var hint string
	switch {
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		hint = "run flint as root (or give it CAP_NET_BIND_SERVICE and CAP_NET_RAW)"
	case errors.Is(err, unix.EADDRINUSE):
		hint = "another program (dnsmasq, isc-dhcp-server, kea, another flint) already uses this port on this host: stop it, or set dhcp.mode to off and point that DHCP server at flint"
	case errors.Is(err, unix.ENODEV):
		hint = "no such interface: fix server.interface (see `ip link`)"
	default:
		hint = "check server.interface and server.dhcp_port/proxy_port"
	}
	return fmt.Errorf("dhcp: listen on %s: %w: %s", where, err, hint)
}
