package sockbuf

import (
	"context"
	"net"
	"os"
	"testing"

	"github.com/flint-boot/flint/internal/testenv"
)

// flint runs as root, so a request socket gets the whole Receive buffer,
// past net.core.rmem_max.
func TestControlGrowsReceiveBuffer(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "run as root", "SO_RCVBUFFORCE needs root")
	}
	plain, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	lc := net.ListenConfig{Control: Control}
	grown, err := lc.ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer grown.Close()
	if got := Of(grown.(*net.UDPConn)); got < Receive {
		t.Fatalf("receive buffer %d bytes, want at least %d (a plain socket has %d)", got, Receive, Of(plain.(*net.UDPConn)))
	}
}
