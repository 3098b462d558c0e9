//go:build linux

package tftp

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flint-boot/flint/internal/sockbuf"
	"github.com/flint-boot/flint/internal/testenv"
)

// serveBackground runs s.Serve(addr) until the test ends and returns the
// channel Serve's result arrives on (at once for a bind error).
func serveBackground(t *testing.T, s *Server, addr string) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() { done <- s.Serve(ctx, addr); close(finished) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(20 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return done
}

func freeUDPPort(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return strings.TrimPrefix(pc.LocalAddr().String(), "127.0.0.1:")
}

// TestInterfaceBinding: with server.interface set and no server.listen, the
// request socket only receives on that interface. Locally sent packets
// arrive on lo, so a server bound to another interface must not answer
// them, while one bound to lo does.
func TestInterfaceBinding(t *testing.T) {
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	other := ""
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagLoopback == 0 {
			other = ifc.Name
			break
		}
	}

	t.Run("lo", func(t *testing.T) {
		f := startWith(t, "", Options{Interface: "lo"}, nil, nil) // waits until it answers on 127.0.0.1
		want := randomBytes(t, 3000)
		writeFile(t, filepath.Join(f.root, "ipxe.efi"), want)
		if got, _, err := f.fetch(t, "ipxe.efi", 1468, true); err != nil || len(got) != len(want) {
			t.Fatalf("fetch from a server bound to lo: %v, %d bytes", err, len(got))
		}
	})

	t.Run("other-interface", func(t *testing.T) {
		if other == "" {
			testenv.Unavailable(t, "run on a host or namespace with a non-loopback interface", "no non-loopback interface to bind to")
		}
		s := New(t.TempDir(), Options{Interface: other}, nil)
		port := freeUDPPort(t)
		done := serveBackground(t, s, ":"+port)
		conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		server, _ := net.ResolveUDPAddr("udp4", "127.0.0.1:"+port)
		buf := make([]byte, 1500)
		for range 3 { // the server may still be starting
			conn.WriteTo(append([]byte{0, 1}, "ipxe.efi\x00octet\x00"...), server)
			conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if n, from, err := conn.ReadFrom(buf); err == nil {
				t.Fatalf("server bound to %s answered a request that arrived on lo: %q from %v", other, buf[:n], from)
			}
		}
		select {
		case err := <-done:
			t.Fatalf("Serve bound to %s: %v", other, err)
		default:
		}
	})

	t.Run("no-such-interface", func(t *testing.T) {
		done := serveBackground(t, New(t.TempDir(), Options{Interface: "flintnosuch0"}, nil), ":"+freeUDPPort(t))
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), `no interface "flintnosuch0"`) || !strings.Contains(err.Error(), "server.interface") {
				t.Fatalf("Serve: %v; want an error naming the interface and server.interface", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("Serve with a missing interface did not fail")
		}
	})

	// An explicit address (server.listen) is bound as given; the interface
	// is then not used, so a wrong one does not matter.
	t.Run("listen-address-wins", func(t *testing.T) {
		f := startWith(t, "127.0.0.1", Options{Interface: "flintnosuch0"}, nil, nil)
		if _, _, err := f.fetch(t, "missing.efi", 0, false); err == nil || !strings.Contains(err.Error(), "file not found") {
			t.Fatalf("fetch: %v, want file not found from a server on 127.0.0.1", err)
		}
	})
}

// TestStopWithinASecond: a client that asks for a file and never answers
// holds a transfer for its retries; flint still stops within a second.
func TestStopWithinASecond(t *testing.T) {
	root := t.TempDir()
	if err := writeFileErr(filepath.Join(root, "ipxe.efi"), make([]byte, 100_000)); err != nil {
		t.Fatal(err)
	}
	s := New(root, Options{}, nil)
	addr := "127.0.0.1:" + freeUDPPort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, addr) }()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	server, _ := net.ResolveUDPAddr("udp4", addr)
	buf := make([]byte, 2048)
	for deadline := time.Now().Add(5 * time.Second); ; {
		conn.WriteTo(append([]byte{0, 1}, "ipxe.efi\x00octet\x00"...), server)
		conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, _, err := conn.ReadFrom(buf); err == nil && n > 4 && buf[1] == 3 {
			break // DATA 1 came; it is never acknowledged
		}
		if time.Now().After(deadline) {
			t.Fatal("no DATA from the server")
		}
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Serve took %v to stop with an unanswered transfer, want at most 1 s", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
}

func writeFileErr(p string, b []byte) error { return os.WriteFile(p, b, 0o644) }

// The request socket asks for a large receive buffer, with and without the
// interface binding: a storm's read requests arrive in one burst.
func TestListenGrowsReceiveBuffer(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "run as root", "SO_RCVBUFFORCE needs root")
	}
	for _, iface := range []string{"", "lo"} {
		conn, where, err := listen(":0", iface)
		if err != nil {
			t.Fatal(err)
		}
		got := sockbuf.Of(conn.(*net.UDPConn))
		conn.Close()
		if got < sockbuf.Receive {
			t.Errorf("%s: receive buffer %d bytes, want at least %d", where, got, sockbuf.Receive)
		}
	}
}
