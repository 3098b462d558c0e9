package sockbuf

import "golang.org/x/sys/unix"

// Grow asks for Receive bytes: SO_RCVBUFFORCE (root or CAP_NET_ADMIN) passes
// the system's net.core.rmem_max, SO_RCVBUF stops there.
func Grow(fd int) {
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, Receive) != nil {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, Receive)
	}
}

// size is what the kernel keeps for data: it reports twice that.
func size(fd int) int {
	n, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
	if err != nil {
		return 0
	}
	return n / 2
}
