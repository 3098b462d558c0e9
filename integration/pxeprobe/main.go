// Command pxeprobe sends one PXE DHCP request the way a NIC's firmware does and
// prints every reply it hears as one JSON object per line. The integration tests
// run it inside a client network namespace (ip netns exec) to see exactly what
// flint and a neighbouring DHCP server put on the wire.
//
// It encodes and decodes DHCP itself (RFC 2131/2132), so it checks flint's
// packets with code that shares nothing with flint's DHCP library.
//
//	pxeprobe -iface eth0 -arch 7 -wait 3s                 # broadcast DISCOVER to :67
//	pxeprobe -iface eth0 -type request -server 198.18.0.1 -port 4011 -ciaddr 198.18.0.60
package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"
)

// DHCP message types (option 53).
var msgTypes = map[byte]string{1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE", 8: "INFORM"}

var magicCookie = []byte{99, 130, 83, 99}

// Reply is what the probe prints for every DHCP reply that matches its xid.
type Reply struct {
	From        string            `json:"from"`
	Type        string            `json:"type"`
	XID         string            `json:"xid"`
	CHAddr      string            `json:"chaddr"`
	CIAddr      string            `json:"ciaddr"`
	YIAddr      string            `json:"yiaddr"`
	SIAddr      string            `json:"siaddr"`
	GIAddr      string            `json:"giaddr"`
	Flags       uint16            `json:"flags"`
	SName       string            `json:"sname"`
	File        string            `json:"file"`
	ServerID    string            `json:"server_id,omitempty"`
	VendorClass string            `json:"vendor_class,omitempty"`
	Options     map[string]string `json:"options"` // option code (decimal) -> value (hex)
	// Option43 is option 43 (vendor-specific, PXE) split into sub-options: code -> hex.
	Option43 map[string]string `json:"option43,omitempty"`
}

type probe struct {
	iface     string
	mac       net.HardwareAddr
	msgType   byte
	arch      int
	vendor    string
	userClass string
	uuid      bool
	broadcast bool
	ciaddr    net.IP
	reqIP     net.IP
	serverID  net.IP
	dst       *net.UDPAddr
	srcPort   int
	wait      time.Duration
	resend    time.Duration
}

func main() {
	var (
		p                    probe
		mac, typ, dst        string
		ciaddr, reqIP, srvID string
		dstPort              int
	)
	flag.StringVar(&p.iface, "iface", "", "interface to send on (required)")
	flag.StringVar(&mac, "mac", "", "client hardware address (default: the interface's)")
	flag.StringVar(&typ, "type", "discover", "message type: discover, request or inform")
	flag.IntVar(&p.arch, "arch", 7, "option 93 client architecture (0 BIOS, 7 x86-64 UEFI); -1 omits options 93/94/97")
	flag.StringVar(&p.vendor, "vendor", "", "option 60 (default PXEClient:Arch:<arch>:UNDI:003016; \"none\" omits it)")
	flag.StringVar(&p.userClass, "user-class", "", "option 77 raw bytes, e.g. iPXE")
	flag.BoolVar(&p.uuid, "uuid", true, "send option 97 (client machine UUID)")
	flag.BoolVar(&p.broadcast, "broadcast", true, "set the BOOTP broadcast flag")
	flag.StringVar(&ciaddr, "ciaddr", "", "ciaddr (the client's own address)")
	flag.StringVar(&reqIP, "requested-ip", "", "option 50")
	flag.StringVar(&srvID, "server-id", "", "option 54")
	flag.StringVar(&dst, "server", "255.255.255.255", "destination address")
	flag.IntVar(&dstPort, "port", 67, "destination UDP port (67, or 4011 for a PXE boot server)")
	flag.IntVar(&p.srcPort, "src-port", 68, "local UDP port")
	flag.DurationVar(&p.wait, "wait", 3*time.Second, "how long to collect replies")
	flag.DurationVar(&p.resend, "resend", time.Second, "resend the request this often while waiting (0: send once)")
	flag.Parse()

	if err := p.setup(mac, typ, dst, dstPort, ciaddr, reqIP, srvID); err != nil {
		fmt.Fprintln(os.Stderr, "pxeprobe:", err)
		os.Exit(2)
	}
	n, err := p.run(os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pxeprobe:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "pxeprobe: %d replies\n", n)
}

func (p *probe) setup(mac, typ, dst string, dstPort int, ciaddr, reqIP, srvID string) error {
	if p.iface == "" {
		return errors.New("-iface is required")
	}
	ifc, err := net.InterfaceByName(p.iface)
	if err != nil {
		return err
	}
	p.mac = ifc.HardwareAddr
	if mac != "" {
		if p.mac, err = net.ParseMAC(mac); err != nil {
			return err
		}
	}
	if len(p.mac) != 6 {
		return fmt.Errorf("interface %s has no Ethernet address; pass -mac", p.iface)
	}
	switch typ {
	case "discover":
		p.msgType = 1
	case "request":
		p.msgType = 3
	case "inform":
		p.msgType = 8
	default:
		return fmt.Errorf("unknown -type %q", typ)
	}
	if p.vendor == "" {
		p.vendor = fmt.Sprintf("PXEClient:Arch:%05d:UNDI:003016", max(p.arch, 0))
	}
	ip := func(name, s string) (net.IP, error) {
		if s == "" {
			return nil, nil
		}
		v := net.ParseIP(s).To4()
		if v == nil {
			return nil, fmt.Errorf("%s %q is not an IPv4 address", name, s)
		}
		return v, nil
	}
	if p.ciaddr, err = ip("-ciaddr", ciaddr); err != nil {
		return err
	}
	if p.reqIP, err = ip("-requested-ip", reqIP); err != nil {
		return err
	}
	if p.serverID, err = ip("-server-id", srvID); err != nil {
		return err
	}
	d, err := ip("-server", dst)
	if err != nil || d == nil {
		return fmt.Errorf("bad -server %q", dst)
	}
	p.dst = &net.UDPAddr{IP: d, Port: dstPort}
	return nil
}

// request builds the BOOTP/DHCP packet a PXE ROM sends.
func (p *probe) request(xid uint32) []byte {
	b := make([]byte, 240, 576)
	b[0], b[1], b[2] = 1, 1, 6 // BOOTREQUEST, Ethernet, hlen 6
	binary.BigEndian.PutUint32(b[4:], xid)
	if p.broadcast {
		binary.BigEndian.PutUint16(b[10:], 0x8000)
	}
	if p.ciaddr != nil {
		copy(b[12:16], p.ciaddr)
	}
	copy(b[28:34], p.mac)
	copy(b[236:240], magicCookie)
	opt := func(code byte, v []byte) { b = append(b, code, byte(len(v))); b = append(b, v...) }
	opt(53, []byte{p.msgType})
	opt(57, []byte{0x05, 0xc0}) // max message size 1472
	if p.reqIP != nil {
		opt(50, p.reqIP)
	}
	if p.serverID != nil {
		opt(54, p.serverID)
	}
	opt(55, []byte{1, 2, 3, 4, 5, 6, 12, 13, 15, 17, 18, 22, 23, 28, 40, 41, 42, 43, 50, 51, 54, 58, 59, 60, 66, 67, 97, 128, 129, 130, 131, 132, 133, 134, 135})
	if p.arch >= 0 {
		opt(93, []byte{byte(p.arch >> 8), byte(p.arch)})
		opt(94, []byte{1, 3, 16}) // UNDI 3.16
		if p.uuid {
			u := make([]byte, 17)
			copy(u[1:], []byte{0x8a, 0x1f, 0x3b, 0x52, 0x00, 0x00, 0x4c, 0x11, 0x9e, 0x00})
			copy(u[11:], p.mac)
			opt(97, u)
		}
	}
	if p.vendor != "none" {
		opt(60, []byte(p.vendor))
	}
	if p.userClass != "" {
		opt(77, []byte(p.userClass))
	}
	b = append(b, 255)
	for len(b) < 300 { // BOOTP minimum size, as firmware pads
		b = append(b, 0)
	}
	return b
}

func (p *probe) run(out *os.File) (int, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			for _, o := range []int{syscall.SO_REUSEADDR, syscall.SO_BROADCAST} {
				if serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, o, 1); serr != nil {
					return
				}
			}
			serr = syscall.SetsockoptString(int(fd), syscall.SOL_SOCKET, syscall.SO_BINDTODEVICE, p.iface)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", ":"+strconv.Itoa(p.srcPort))
	if err != nil {
		return 0, fmt.Errorf("listen on %s port %d: %w", p.iface, p.srcPort, err)
	}
	defer pc.Close()

	var x [4]byte
	if _, err := rand.Read(x[:]); err != nil {
		return 0, err
	}
	xid := binary.BigEndian.Uint32(x[:])
	pkt := p.request(xid)
	send := func() error {
		_, err := pc.WriteTo(pkt, p.dst)
		if err == nil {
			fmt.Fprintf(os.Stderr, "pxeprobe: sent %s xid %08x from %s to %s on %s\n", msgTypes[p.msgType], xid, p.mac, p.dst, p.iface)
		}
		return err
	}
	if err := send(); err != nil {
		return 0, fmt.Errorf("send to %s: %w", p.dst, err)
	}

	deadline := time.Now().Add(p.wait)
	nextSend := time.Now().Add(p.resend)
	enc := json.NewEncoder(out)
	n := 0
	buf := make([]byte, 4096)
	for {
		now := time.Now()
		if !now.Before(deadline) {
			return n, nil
		}
		until := deadline
		if p.resend > 0 && nextSend.Before(until) {
			until = nextSend
		}
		_ = pc.SetReadDeadline(until)
		k, from, err := pc.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if p.resend > 0 && !time.Now().Before(nextSend) {
					if err := send(); err != nil {
						return n, err
					}
					nextSend = time.Now().Add(p.resend)
				}
				continue
			}
			return n, err
		}
		r, err := decode(buf[:k])
		if err != nil {
			fmt.Fprintf(os.Stderr, "pxeprobe: ignoring %d bytes from %s: %v\n", k, from, err)
			continue
		}
		if r.XID != fmt.Sprintf("%08x", xid) || r.CHAddr != p.mac.String() {
			continue // someone else's reply
		}
		r.From = from.String()
		if err := enc.Encode(r); err != nil {
			return n, err
		}
		n++
	}
}

func decode(b []byte) (*Reply, error) {
	if len(b) < 240 {
		return nil, fmt.Errorf("short packet")
	}
	if b[0] != 2 {
		return nil, fmt.Errorf("op %d is not BOOTREPLY", b[0])
	}
	if string(b[236:240]) != string(magicCookie) {
		return nil, fmt.Errorf("no DHCP magic cookie")
	}
	ip := func(o int) string { return net.IP(b[o : o+4]).String() }
	cstr := func(f []byte) string {
		for i, c := range f {
			if c == 0 {
				return string(f[:i])
			}
		}
		return string(f)
	}
	r := &Reply{
		XID:     fmt.Sprintf("%08x", binary.BigEndian.Uint32(b[4:])),
		Flags:   binary.BigEndian.Uint16(b[10:]),
		CIAddr:  ip(12),
		YIAddr:  ip(16),
		SIAddr:  ip(20),
		GIAddr:  ip(24),
		CHAddr:  net.HardwareAddr(b[28:34]).String(),
		SName:   cstr(b[44:108]),
		File:    cstr(b[108:236]),
		Options: map[string]string{},
	}
	opts := b[240:]
	for i := 0; i < len(opts); {
		code := opts[i]
		if code == 0 {
			i++
			continue
		}
		if code == 255 {
			break
		}
		if i+1 >= len(opts) || i+2+int(opts[i+1]) > len(opts) {
			return nil, fmt.Errorf("option %d runs past the packet", code)
		}
		v := opts[i+2 : i+2+int(opts[i+1])]
		key := strconv.Itoa(int(code))
		r.Options[key] += hex.EncodeToString(v) // RFC 3396: repeated options concatenate
		i += 2 + len(v)
	}
	if v, ok := r.Options["53"]; ok {
		if t, err := hex.DecodeString(v); err == nil && len(t) == 1 {
			r.Type = msgTypes[t[0]]
		}
	}
	if r.Type == "" {
		r.Type = "BOOTREPLY"
	}
	if v, ok := r.Options["54"]; ok {
		if t, err := hex.DecodeString(v); err == nil && len(t) == 4 {
			r.ServerID = net.IP(t).String()
		}
	}
	if v, ok := r.Options["60"]; ok {
		if t, err := hex.DecodeString(v); err == nil {
			r.VendorClass = string(t)
		}
	}
	if v, ok := r.Options["43"]; ok {
		t, _ := hex.DecodeString(v)
		r.Option43 = map[string]string{}
		for i := 0; i < len(t); {
			c := t[i]
			if c == 0 {
				i++
				continue
			}
			if c == 255 || i+1 >= len(t) || i+2+int(t[i+1]) > len(t) {
				break
			}
			r.Option43[strconv.Itoa(int(c))] = hex.EncodeToString(t[i+2 : i+2+int(t[i+1])])
			i += 2 + int(t[i+1])
		}
	}
	return r, nil
}
