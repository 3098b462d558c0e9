package dhcp

import (
	"os"
	"testing"
)

// A boot storm arrives faster than one reader drains it; what the kernel
// buffers meanwhile is what survives. flint runs as root, so the request
// socket must get the full receiveBuffer, past net.core.rmem_max.
func TestListenGrowsReceiveBuffer(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true: this test needs root (SO_RCVBUFFORCE)")
		}
		t.Skip("needs root (SO_RCVBUFFORCE)")
	}
	conn, err := listenUDP("", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := receiveBufferOf(conn); got < receiveBuffer {
		t.Fatalf("receive buffer %d bytes, want at least %d", got, receiveBuffer)
	}
}
