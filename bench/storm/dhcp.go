package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"
)

// dhcpNet is the simulated NUCs' shared DHCP client socket: 0.0.0.0:68 on the
// client interface, like bench/dhcpload. Every message carries the BROADCAST
// flag (the NUC has no address yet), so flint answers to 255.255.255.255 and
// one read loop hands each reply to the exchange waiting for its xid.
type dhcpNet struct {
	conn *net.UDPConn
	dst  *net.UDPAddr

	mu      sync.Mutex
	pending map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4

	stray, sent atomic.Int64
}

func newDHCPNet(iface string) (*dhcpNet, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			for _, o := range []struct{ opt, v int }{{unix.SO_BROADCAST, 1}, {unix.SO_REUSEADDR, 1}, {unix.SO_RCVBUF, 8 << 20}, {unix.SO_SNDBUF, 8 << 20}} {
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o.opt, o.v); serr != nil {
					return
				}
			}
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, iface)
		})
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", "0.0.0.0:68")
	if err != nil {
		return nil, fmt.Errorf("listen on :68 (%s): %w", iface, err)
	}
	d := &dhcpNet{
		conn:    pc.(*net.UDPConn),
		dst:     &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort},
		pending: map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4{},
	}
	go d.readLoop()
	return d, nil
}

func (d *dhcpNet) readLoop() {
	buf := make([]byte, 4096)
	for {
		n, _, err := d.conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		m, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || m.OpCode != dhcpv4.OpcodeBootReply {
			continue
		}
		d.mu.Lock()
		ch := d.pending[m.TransactionID]
		d.mu.Unlock()
		if ch == nil {
			d.stray.Add(1)
			continue
		}
		select {
		case ch <- m:
		default:
		}
	}
}

// client is what a NUC's DHCP client sends besides the message type: the
// firmware's PXE options, or iPXE's.
type client struct {
	ipxe     bool
	timeouts []time.Duration // wait after each transmission; len = transmissions
}

// Retransmission timers. PXE firmware (PXE 2.1 spec, EDK2): 4, 8, 16, 32 s.
// iPXE: starts at 1 s and doubles up to 10 s per message.
var (
	pxeTimeouts  = []time.Duration{4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second}
	ipxeTimeouts = []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second}
)

// options: UEFI x86-64 PXE (arch 7), like an Intel NUC's firmware; iPXE adds
// user class "iPXE" (raw, no RFC 3004 framing) and its client identifier.
func (c client) modifiers(nd *node) []dhcpv4.Modifier {
	uuid := sha256.Sum256(nd.mac) // stable per machine, like an SMBIOS UUID
	vc := "PXEClient:Arch:00007:UNDI:003016"
	prl := []dhcpv4.OptionCode{
		dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer, dhcpv4.OptionHostName,
		dhcpv4.OptionDomainName, dhcpv4.OptionBroadcastAddress, dhcpv4.OptionVendorSpecificInformation,
		dhcpv4.OptionClassIdentifier, dhcpv4.OptionTFTPServerName, dhcpv4.OptionBootfileName,
		dhcpv4.OptionClientSystemArchitectureType, dhcpv4.OptionClientNetworkInterfaceIdentifier,
		dhcpv4.OptionClientMachineIdentifier,
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithBroadcast(true),
		dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(1472)),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientSystemArchitectureType, binary.BigEndian.AppendUint16(nil, 7))),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 3, 16})),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, append([]byte{0}, uuid[:16]...))),
	}
	if c.ipxe {
		vc = "PXEClient:Arch:00007:UNDI:003010"
		prl = append(prl, dhcpv4.GenericOptionCode(175)) // iPXE's encapsulated options
		mods = append(mods,
			dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionUserClassInformation, []byte("iPXE"))),
			dhcpv4.WithOption(dhcpv4.OptClientIdentifier(append([]byte{1}, nd.mac...))),
		)
	}
	return append(mods,
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vc)),
		dhcpv4.WithOption(dhcpv4.OptParameterRequestList(prl...)))
}

// dora runs DISCOVER, OFFER, REQUEST, ACK for nd and returns the ACK. It
// checks what a NUC relies on: the reserved address and a boot file.
func (d *dhcpNet) dora(nd *node, c client, st *phaseStat) (*dhcpv4.DHCPv4, error) {
	disc, err := dhcpv4.NewDiscovery(nd.mac, c.modifiers(nd)...)
	if err != nil {
		return nil, err
	}
	xid := disc.TransactionID
	ch := make(chan *dhcpv4.DHCPv4, 8)
	d.mu.Lock()
	if d.pending[xid] != nil {
		d.mu.Unlock()
		return nil, errors.New("xid collision (draw again)")
	}
	d.pending[xid] = ch
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.pending, xid)
		d.mu.Unlock()
	}()

	offer := d.exchange(disc, ch, c.timeouts, st, dhcpv4.MessageTypeOffer)
	if offer == nil {
		return nil, errors.New("no OFFER")
	}
	if got := offer.YourIPAddr.To4(); got == nil || !got.Equal(net.IP(nd.ip.AsSlice())) {
		return nil, fmt.Errorf("OFFER of %v, reservation is %v", offer.YourIPAddr, nd.ip)
	}
	mods := append(c.modifiers(nd),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(offer.YourIPAddr)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(offer.ServerIdentifier())),
		dhcpv4.WithTransactionID(xid),
	)
	req, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(nd.mac)}, mods...)...)
	if err != nil {
		return nil, err
	}
	ack := d.exchange(req, ch, c.timeouts, st, dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak)
	switch {
	case ack == nil:
		return nil, errors.New("no ACK")
	case ack.MessageType() == dhcpv4.MessageTypeNak:
		return nil, fmt.Errorf("NAK: %q", ack.Message())
	}
	if got := ack.YourIPAddr.To4(); got == nil || !got.Equal(net.IP(nd.ip.AsSlice())) {
		return nil, fmt.Errorf("ACK of %v, reservation is %v", ack.YourIPAddr, nd.ip)
	}
	if ack.BootFileName == "" {
		return nil, errors.New("ACK without a boot file")
	}
	return ack, nil
}

func (d *dhcpNet) exchange(msg *dhcpv4.DHCPv4, ch chan *dhcpv4.DHCPv4, timeouts []time.Duration, st *phaseStat, want ...dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	b := msg.ToBytes()
	for try, wait := range timeouts {
		if try > 0 {
			st.retries.Add(1)
		}
		d.sent.Add(1)
		if _, err := d.conn.WriteToUDP(b, d.dst); err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		t := time.NewTimer(wait)
	recv:
		for {
			select {
			case r := <-ch:
				if string(r.ClientHWAddr) != string(msg.ClientHWAddr) {
					continue
				}
				for _, w := range want {
					if r.MessageType() == w {
						t.Stop()
						return r
					}
				}
			case <-t.C:
				break recv
			}
		}
	}
	return nil
}
