package dhcp

import (
	"os"
	"testing"

	"github.com/flint-boot/flint/internal/testenv"

	"github.com/flint-boot/flint/internal/sockbuf"
)

// A boot storm arrives faster than one reader drains it; what the kernel
// buffers meanwhile is what survives. flint runs as root, so the request
// socket must get the full sockbuf.Receive, past net.core.rmem_max.
func TestListenGrowsReceiveBuffer(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "run as root", "SO_RCVBUFFORCE needs root")
	}
	conn, err := listenUDP("", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := sockbuf.Of(conn); got < sockbuf.Receive {
		t.Fatalf("receive buffer %d bytes, want at least %d", got, sockbuf.Receive)
	}
}
