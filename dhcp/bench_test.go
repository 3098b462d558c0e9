package dhcp

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/internal/etcdtest"
	"github.com/flint-boot/flint/store"
)

// BenchmarkDORA measures full DORAs through the handler (no sockets), with
// every lease made durable before its ACK, 16 clients per CPU at a time.
// The etcd case (a one-member etcd on loopback) claims every offered
// address and binds every ACK there: run it with a small -benchtime (500x).
func BenchmarkDORA(b *testing.B) {
	for _, backend := range []string{"memory", "bolt", "etcd"} {
		b.Run(backend, func(b *testing.B) {
			var st store.Store = newMemStore()
			switch backend {
			case "bolt":
				bs, err := store.OpenBolt(b.TempDir(), false)
				if err != nil {
					b.Fatal(err)
				}
				defer bs.Close()
				st = bs
			case "etcd": // every offer claimed, every ACK bound, in a real etcd
				cl := etcdtest.Start(b, 1)
				es, err := store.OpenEtcd(store.EtcdConfig{Endpoints: cl.Endpoints(), TLS: cl.TLS, Prefix: "/flint/bench/"})
				if err != nil {
					b.Fatal(err)
				}
				defer es.Close()
				st = es
			}
			cfg, err := config.Parse("bench.yaml", []byte(`
server: {address: 198.18.0.1}
dhcp: {mode: full, subnet: 198.18.0.0/15, pool: {start: 198.18.1.0, end: 198.19.255.254}, lease_time: 1h}
cluster: {install_mode: live}
machines: [{mac: "02:00:c6:12:00:0a", hostname: nuc1, ip: 198.18.0.10, role: server}]
`))
			if err != nil {
				b.Fatal(err)
			}
			s, err := New(cfg, st, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			var next atomic.Uint32
			b.SetParallelism(16) // 16 clients per CPU
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1)
					mac := fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", byte(i>>24), byte(i>>16), byte(i>>8), byte(i))
					offer, _ := s.handle(packet(mac, dhcpv4.MessageTypeDiscover), clientPeer, viaDHCP)
					if offer == nil {
						b.Error("no offer")
						return
					}
					ack, _ := s.handle(packet(mac, dhcpv4.MessageTypeRequest, serverID(flintIP), requested(yiaddr(offer))), clientPeer, viaDHCP)
					if ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck {
						b.Error("no ack")
						return
					}
				}
			})
			b.StopTimer()
		})
	}
}
