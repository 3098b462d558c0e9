// Package sockbuf sizes the receive buffers of flint's request sockets
// (DHCP, TFTP): a rack or a bench switched on at once sends its requests in
// one burst, and what the kernel buffers until flint reads them is what
// survives. The kernel's default (~200 KiB) drops most of a 2,000-machine
// burst.
package sockbuf

import "syscall"

// Receive is the receive buffer a request socket asks for.
const Receive = 4 << 20

// Control is a net.ListenConfig.Control that grows the socket's receive
// buffer to Receive. It never fails: a smaller buffer still works; Of tells
// what the kernel granted.
func Control(_, _ string, c syscall.RawConn) error {
	return c.Control(func(fd uintptr) { Grow(int(fd)) })
}

// Of is the socket's receive buffer as the kernel granted it, or 0 if it
// cannot tell.
func Of(conn syscall.Conn) int {
	raw, err := conn.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	raw.Control(func(fd uintptr) { n = size(int(fd)) })
	return n
}
