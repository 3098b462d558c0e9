//go:build !linux

package tftp

import (
	"fmt"
	"syscall"
)

func bindToDevice(iface string) func(network, address string, c syscall.RawConn) error {
	return func(string, string, syscall.RawConn) error {
		return &ifaceError{fmt.Errorf("binding to interface %q needs Linux: leave server.interface empty and set server.listen to an address", iface)}
	}
}
