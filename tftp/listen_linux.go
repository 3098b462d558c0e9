package tftp

import (
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// bindToDevice makes a socket receive (and send) only on iface.
func bindToDevice(iface string) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var err error
		if cerr := c.Control(func(fd uintptr) { err = unix.BindToDevice(int(fd), iface) }); cerr != nil {
			return cerr
		}
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.ENODEV):
			return &ifaceError{fmt.Errorf("no interface %q: %w (fix server.interface, see `ip link`, or set server.listen to an address)", iface, err)}
		case errors.Is(err, unix.EPERM):
			return &ifaceError{fmt.Errorf("bind to interface %q: %w (run flint as root or with CAP_NET_RAW)", iface, err)}
		default:
			return &ifaceError{fmt.Errorf("bind to interface %q: %w", iface, err)}
		}
	}
}
