package dhcp

import (
	"net"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/flint-boot/flint/config"
)

// rawOption is an option already encoded. Replies share the value: it is
// only ever read (serialised), never changed in place.
type rawOption struct {
	code  uint8
	value []byte
}

func encoded(o dhcpv4.Option) rawOption { return rawOption{o.Code.Code(), o.Value.ToBytes()} }

// replyOptions are what every full-mode lease reply of one subnet carries,
// encoded once from the config instead of once per packet.
type replyOptions struct {
	common []rawOption // server identifier, netmask, router, DNS, domain
	times  []rawOption // lease time, T1 (50%) and T2 (87.5%): replies with an address
	offer  rawOption   // message types
	ack    rawOption
}

func newReplyOptions(cfg *config.Config, n *config.Subnet) replyOptions {
	d := &cfg.DHCP
	r := replyOptions{
		offer: encoded(dhcpv4.OptMessageType(dhcpv4.MessageTypeOffer)),
		ack:   encoded(dhcpv4.OptMessageType(dhcpv4.MessageTypeAck)),
	}
	r.common = append(r.common, encoded(dhcpv4.OptServerIdentifier(ipOf(cfg.Server.AddressIP))))
	if n.Prefix.IsValid() {
		r.common = append(r.common, encoded(dhcpv4.OptSubnetMask(net.CIDRMask(n.Prefix.Bits(), 32))))
	}
	if n.RouterIP.IsValid() {
		r.common = append(r.common, encoded(dhcpv4.OptRouter(ipOf(n.RouterIP))))
	}
	if len(n.DNSIPs) > 0 {
		dns := make([]net.IP, len(n.DNSIPs))
		for i, a := range n.DNSIPs {
			dns[i] = ipOf(a)
		}
		r.common = append(r.common, encoded(dhcpv4.OptDNS(dns...)))
	}
	if d.Domain != "" {
		r.common = append(r.common, encoded(dhcpv4.OptDomainName(d.Domain)))
	}
	lease := d.LeaseTime.Duration
	r.times = []rawOption{
		encoded(dhcpv4.OptIPAddressLeaseTime(lease)),
		encoded(dhcpv4.OptRenewTimeValue(lease / 2)),
		encoded(dhcpv4.OptRebindingTimeValue(lease * 7 / 8)),
	}
	return r
}

func setOptions(p *dhcpv4.DHCPv4, opts ...rawOption) {
	for _, o := range opts {
		p.Options[o.code] = o.value
	}
}

// withLeaseTime sets a reply's lease time to d, with T1 and T2 at 50% and
// 87.5% of it as for every lease (a renewal answered from memory gets only
// what is left of the lease the store holds).
func withLeaseTime(p *dhcpv4.DHCPv4, d time.Duration) {
	d = d.Truncate(time.Second)
	p.UpdateOption(dhcpv4.OptIPAddressLeaseTime(d))
	p.UpdateOption(dhcpv4.OptRenewTimeValue(d / 2))
	p.UpdateOption(dhcpv4.OptRebindingTimeValue(d * 7 / 8))
}
