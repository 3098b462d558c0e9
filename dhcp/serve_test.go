package dhcp

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/flint-boot/flint/store"
)

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// TestServeProxyPortOverUDP runs the real sockets (unprivileged ports): a PXE
// REQUEST to the boot-server port is answered back to the sender.
func TestServeProxyPortOverUDP(t *testing.T) {
	dhcpPort, proxyPort := freeUDPPort(t), freeUDPPort(t)
	cfg := testConfig(t, cfgOpts{mode: "proxy", dhcpPort: dhcpPort, proxyPort: proxyPort})
	s, _ := newTestServer(t, cfg, newMemStore())
	if got := strings.Join(s.Listening(), "; "); !strings.Contains(got, "dhcp proxy on :"+strconv.Itoa(dhcpPort)+" (all interfaces)") || !strings.Contains(got, ":"+strconv.Itoa(proxyPort)) {
		t.Errorf("Listening() = %q", got)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()

	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	req := packet(nuc1MAC, dhcpv4.MessageTypeRequest, pxe(7))
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: proxyPort}
	buf := make([]byte, 1500)
	var reply *dhcpv4.DHCPv4
	for deadline := time.Now().Add(5 * time.Second); reply == nil && time.Now().Before(deadline); {
		select {
		case err := <-done:
			t.Fatalf("Serve returned early: %v", err)
		default:
		}
		if _, err := client.WriteToUDP(req.ToBytes(), to); err != nil {
			t.Fatal(err)
		}
		client.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, _, err := client.ReadFromUDP(buf)
		if err != nil {
			continue // not bound yet
		}
		if reply, err = dhcpv4.FromBytes(buf[:n]); err != nil {
			t.Fatal(err)
		}
	}
	if reply == nil {
		t.Fatal("no reply from the boot-server port")
	}
	checkProxyReply(t, reply, dhcpv4.MessageTypeAck, "ipxe.efi", "PXEClient")
	if reply.TransactionID != req.TransactionID {
		t.Errorf("xid %s, want %s", reply.TransactionID, req.TransactionID)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

func TestServeReportsBindErrors(t *testing.T) {
	busy, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := busy.LocalAddr().(*net.UDPAddr).Port
	cfg := testConfig(t, cfgOpts{poolStart: "198.18.0.100", poolEnd: "198.18.0.199", dhcpPort: port, proxyPort: freeUDPPort(t)})
	s, _ := newTestServer(t, cfg, newMemStore())

	errc := make(chan error, 1)
	go func() { errc <- s.Serve(context.Background()) }()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "already uses this port") || !strings.Contains(err.Error(), ":"+strconv.Itoa(port)) {
			t.Errorf("Serve = %v, want an address-in-use error naming the port and what to do", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return the bind error")
	}

	cfg.Server.Interface = "flint-no-such-if0"
	err = s.Serve(context.Background())
	if err == nil || !strings.Contains(err.Error(), "server.interface") {
		t.Errorf("Serve on a missing interface = %v", err)
	}
}

func TestServeOffMode(t *testing.T) {
	cfg := testConfig(t, cfgOpts{mode: "off"})
	s, err := New(cfg, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if l := s.Listening(); len(l) != 0 {
		t.Errorf("Listening() = %q in off mode", l)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Serve(ctx); err != nil || ctx.Err() != nil {
		t.Errorf("Serve in off mode = %v after %v", err, ctx.Err())
	}
	if r, _ := s.handle(packet(nuc1MAC, dhcpv4.MessageTypeDiscover, pxe(7)), clientPeer, viaDHCP); r != nil {
		t.Error("off mode answered")
	}
}

func TestNewChecksItsInputs(t *testing.T) {
	cfg := testConfig(t, cfgOpts{})
	if _, err := New(cfg, nil, nil, nil); err == nil {
		t.Error("full mode without a store accepted")
	}
	bad := *cfg
	bad.Server.AddressIP = ipFrom(nil)
	if _, err := New(&bad, newMemStore(), nil, nil); err == nil {
		t.Error("unresolved server address accepted")
	}
	loadErr := &failingLeases{memStore: newMemStore()}
	if _, err := New(cfg, loadErr, nil, nil); err == nil || !errors.Is(err, errLeases) {
		t.Errorf("lease load error = %v", err)
	}
}

var errLeases = errors.New("leases unreadable")

type failingLeases struct{ *memStore }

func (f *failingLeases) Leases() ([]store.Lease, error) { return nil, errLeases }
