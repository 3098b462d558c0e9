package dhcp

import "github.com/insomniacslk/dhcp/dhcpv4"

// What the DHCP service tells flint's metrics.

// typeLabel is a DHCP message type as a metric label: one of RFC 2132's
// eight, "none" without option 53, "other" for any other value (a client
// chooses it: it must not add series). Constants: no allocation per packet.
func typeLabel(t dhcpv4.MessageType) string {
	switch t {
	case dhcpv4.MessageTypeDiscover:
		return "discover"
	case dhcpv4.MessageTypeOffer:
		return "offer"
	case dhcpv4.MessageTypeRequest:
		return "request"
	case dhcpv4.MessageTypeDecline:
		return "decline"
	case dhcpv4.MessageTypeAck:
		return "ack"
	case dhcpv4.MessageTypeNak:
		return "nak"
	case dhcpv4.MessageTypeRelease:
		return "release"
	case dhcpv4.MessageTypeInform:
		return "inform"
	case dhcpv4.MessageTypeNone:
		return "none"
	}
	return "other"
}

// PoolStats counts the address pools of all subnets (full mode with a pool;
// zero otherwise).
func (s *Server) PoolStats() PoolStats {
	var sum PoolStats
	now := s.now()
	for _, a := range s.allocs {
		st := a.stats(now)
		sum.Size += st.Size
		sum.Bound += st.Bound
		sum.Declined += st.Declined
		sum.Offered += st.Offered
	}
	return sum
}
