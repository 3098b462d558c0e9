package integration

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"
)

// rawDHCP sends hand-made DHCP packets as whole Ethernet frames from one
// host's eth0 (an AF_PACKET socket): any chaddr, any IP source (0.0.0.0, the
// host's own, or another host's), broadcast or unicast. The frames leave with
// the host's own Ethernet source address, so the bridge never learns a
// victim's MAC on the sender's port; flint reads only what is inside the
// packet. Nothing is received.
type rawDHCP struct {
	fd      int
	ifindex int
	src     net.HardwareAddr
	sent    int
}

// rawDHCPIn opens the sender in namespace ns on its eth0.
func rawDHCPIn(t *testing.T, ns string) *rawDHCP {
	t.Helper()
	r := &rawDHCP{fd: -1}
	inNamespace(t, ns, func() error {
		ifc, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		r.ifindex, r.src = ifc.Index, ifc.HardwareAddr
		r.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP)))
		return err
	})
	t.Cleanup(func() { unix.Close(r.fd) })
	return r
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// send puts one DHCP message on the wire: UDP 68 -> 67 from src to dst
// (dstMAC: the frame's destination).
func (r *rawDHCP) send(msg *dhcpv4.DHCPv4, src, dst netip.Addr, dstMAC net.HardwareAddr) error {
	payload := msg.ToBytes()
	frame := make([]byte, 14+20+8+len(payload))
	copy(frame[0:6], dstMAC)
	copy(frame[6:12], r.src)
	binary.BigEndian.PutUint16(frame[12:], unix.ETH_P_IP)
	ip := frame[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	binary.BigEndian.PutUint16(ip[4:], uint16(rand.IntN(1<<16)))
	ip[8] = 64
	ip[9] = unix.IPPROTO_UDP
	s4, d4 := src.As4(), dst.As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
	udp := frame[34:42]
	binary.BigEndian.PutUint16(udp[0:], 68)
	binary.BigEndian.PutUint16(udp[2:], 67)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload))) // checksum 0: none (IPv4)
	copy(frame[42:], payload)
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: r.ifindex, Halen: 6}
	copy(sa.Addr[:], dstMAC)
	for {
		err := unix.Sendto(r.fd, frame, 0, sa)
		if err == unix.ENOBUFS || err == unix.EAGAIN {
			time.Sleep(time.Millisecond) // the veth queue is full: the flood waits for it
			continue
		}
		if err == nil {
			r.sent++
		}
		return err
	}
}

func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// dhcpMsg builds a client message of type typ for chaddr mac with the given
// options; ciaddr may be invalid (0.0.0.0).
func dhcpMsg(typ dhcpv4.MessageType, mac net.HardwareAddr, ciaddr netip.Addr, opts ...dhcpv4.Option) *dhcpv4.DHCPv4 {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithHwAddr(mac),
		dhcpv4.WithTransactionID(dhcpv4.TransactionID{byte(rand.IntN(256)), byte(rand.IntN(256)), byte(rand.IntN(256)), byte(rand.IntN(256))}),
	}
	if ciaddr.IsValid() {
		mods = append(mods, dhcpv4.WithClientIP(net.IP(ciaddr.AsSlice())))
	}
	for _, o := range opts {
		mods = append(mods, dhcpv4.WithOption(o))
	}
	m, err := dhcpv4.New(mods...)
	if err != nil {
		panic(fmt.Sprintf("test bug: build a DHCP message: %v", err))
	}
	return m
}

func ipOpt(a netip.Addr) net.IP { return net.IP(a.AsSlice()) }

// pxeVendor makes a message look like PXE firmware (option 60): in proxy mode
// flint only looks at netboot clients.
var pxeVendor = dhcpv4.OptClassIdentifier(vendorUEFI)

// randomMAC is a locally administered unicast MAC (never one of the config's).
func randomMAC() net.HardwareAddr {
	return net.HardwareAddr{0x02, 0xfe, byte(rand.IntN(256)), byte(rand.IntN(256)), byte(rand.IntN(256)), byte(rand.IntN(256))}
}
