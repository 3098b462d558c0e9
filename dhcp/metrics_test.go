package dhcp

import (
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/flint-boot/flint/metrics"
)

// TestPacketsCounted: every packet read is counted once, by its message type
// and flint's reply; garbage and made-up types fold into two fixed labels.
func TestPacketsCounted(t *testing.T) {
	s, _ := newTestServer(t, testConfig(t, cfgOpts{}), newMemStore())
	s.metrics = metrics.New("test")
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	peer := client.LocalAddr().(*net.UDPAddr)

	s.serveOne(conn, packet("02:00:c6:12:00:0a", dhcpv4.MessageTypeDiscover, pxe(7)).ToBytes(), peer, viaDHCP)
	s.serveOne(conn, packet("02:00:c6:12:00:0a", dhcpv4.MessageTypeDiscover, pxe(7)).ToBytes(), peer, viaDHCP)
	s.serveOne(conn, packet("02:00:c6:12:00:0a", dhcpv4.MessageType(99)).ToBytes(), peer, viaDHCP)
	s.serveOne(conn, []byte("not a DHCP packet"), peer, viaDHCP)

	rec := httptest.NewRecorder()
	s.metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`flint_dhcp_packets_total{reply="offer",type="discover"} 2`,
		`flint_dhcp_packets_total{reply="none",type="other"} 1`,
		`flint_dhcp_packets_total{reply="none",type="malformed"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, ln := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(ln, "flint_dhcp_packets_total{") && strings.Contains(ln, "99") {
			t.Errorf("a made-up message type became a label: %s", ln)
		}
	}
}

// TestPoolStats: the pool's size leaves out nothing it need not, and bound
// leases, declined addresses and pending offers are counted as they change.
func TestPoolStats(t *testing.T) {
	s, c := newTestServer(t, testConfig(t, cfgOpts{poolStart: "198.18.0.100", poolEnd: "198.18.0.199"}), newMemStore())
	if got := s.PoolStats(); got != (PoolStats{Size: 100}) {
		t.Fatalf("empty pool: %+v", got)
	}
	for _, mac := range []string{"02:00:00:00:01:01", "02:00:00:00:01:02", "02:00:00:00:01:03"} {
		dora(t, s, mac)
	}
	exchange(t, s, packet("02:00:00:00:01:04", dhcpv4.MessageTypeDiscover))
	if got := s.PoolStats(); got != (PoolStats{Size: 100, Bound: 3, Offered: 1}) {
		t.Errorf("3 bound, 1 offered: %+v", got)
	}
	c.Advance(2 * time.Hour) // past lease_time and offer_hold
	if got := s.PoolStats(); got != (PoolStats{Size: 100}) {
		t.Errorf("after the leases expired: %+v", got)
	}
}
