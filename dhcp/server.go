package dhcp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/internal/sockbuf"
	"github.com/flint-boot/flint/metrics"
	"github.com/flint-boot/flint/store"
)

// Which socket a request came in on.
const (
	viaDHCP  = "dhcp"  // server.dhcp_port (67)
	viaProxy = "proxy" // server.proxy_port (4011), proxy mode only
)

const (
	// maxInFlight bounds the packets handled at once; the read loop waits
	// beyond that, so a flood queues in the socket buffer instead of memory.
	maxInFlight = 1024
	// maxPendingRecords bounds sightings waiting for the store; beyond that
	// those of unknown MACs are dropped (they are informational; leases never
	// are), and those of the config's machines are written by the packet's
	// handler itself (bounded by maxInFlight).
	maxPendingRecords = 4096
)

// Server is flint's DHCP service.
type Server struct {
	cfg *config.Config
	st  store.Store
	// claims are st's address claims (store.ClaimsOf): real transactions
	// when several flint instances share st (shared), granted at once for
	// a bolt store.
	claims store.Claims
	shared bool
	log    *slog.Logger
	addr   netip.Addr // flint's address: option 54, siaddr
	// httpBase is cfg.HTTPBaseURL() and replyOpts the options every lease
	// reply of each subnet carries, encoded once (the config does not change
	// while it serves).
	httpBase  string
	replyOpts []replyOptions
	// allocs are the address books of the subnets (cfg.DHCP.Networks, same
	// index), in full mode.
	allocs []*allocator
	now    func() time.Time

	quiet quietLog
	// tamper limits what spoofed packets about machines of the config put in
	// the log and on their timelines: once a minute per machine and kind,
	// with a budget of its own, so a flood of made-up MACs cannot hide them.
	tamper quietLog
	// notes takes informational sightings off the reply path (the
	// events.Recorder flint serves with); nil writes them at once.
	notes noter

	// unknownEvents admits sightings of MACs that are not in the config:
	// limits.unknown_events_per_minute for DHCP as a whole (spoofed DISCOVERs
	// all come from 0.0.0.0, so there is no per-source limit to speak of).
	unknownMu     sync.Mutex
	unknownEvents tokenBucket
	dropped       atomic.Uint64 // sightings not recorded, see DroppedSightings

	metrics *metrics.Metrics
	onClaim func(ClaimResult) // tests: sees every claim's result
}

// New builds the DHCP service; in full mode it loads the persisted leases
// from st (expired ones are dropped).
// m counts the packets it handles (nil: nothing is counted).
func New(cfg *config.Config, st store.Store, log *slog.Logger, m *metrics.Metrics) (*Server, error) {
	s, err := newServer(cfg, st, log, time.Now)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	return s, nil
}

// newServer is New with a clock (tests set the time).
func newServer(cfg *config.Config, st store.Store, log *slog.Logger, now func() time.Time) (*Server, error) {
	if cfg == nil {
		return nil, errors.New("dhcp: no config")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mode := cfg.DHCP.Mode
	switch mode {
	case config.ModeOff:
	case config.ModeFull, config.ModeProxy:
		if st == nil {
			return nil, errors.New("dhcp: no state store")
		}
		if !cfg.Server.AddressIP.Is4() {
			return nil, errors.New("dhcp: server.address is not resolved to an IPv4 address (call ResolveAddress first)")
		}
		if mode == config.ModeFull && len(cfg.DHCP.Networks) == 0 {
			return nil, errors.New("dhcp: full mode needs dhcp.subnet or dhcp.subnets")
		}
		if _, ok := cfg.LocalSubnet(); mode == config.ModeFull && !ok {
			return nil, fmt.Errorf("dhcp: server.address %s is in none of dhcp.subnets: flint could not tell which subnet serves its own segment; add it to dhcp.subnets or set server.address", cfg.Server.AddressIP)
		}
	default:
		return nil, fmt.Errorf("dhcp: unknown mode %q: use full, proxy or off", mode)
	}

	perMinute := cfg.Limits.UnknownEventsPerMinute
	if perMinute <= 0 { // a config that did not go through config.Parse
		perMinute = config.DefaultUnknownEventsPerMinute
	}
	s := &Server{
		cfg:           cfg,
		st:            st,
		log:           log.With("component", "dhcp"),
		addr:          cfg.Server.AddressIP,
		httpBase:      cfg.HTTPBaseURL(),
		now:           now,
		unknownEvents: tokenBucket{perPeriod: perMinute, period: time.Minute},
	}
	if n, ok := st.(noter); ok {
		s.notes = n
	}
	if mode == config.ModeFull {
		s.claims = store.ClaimsOf(st)
		s.shared = s.claims.Shared()
		for i := range cfg.DHCP.Networks {
			n := &cfg.DHCP.Networks[i]
			a := newAllocator(cfg, n)
			if s.shared {
				a.spread(s.addr)
			}
			s.allocs = append(s.allocs, a)
			s.replyOpts = append(s.replyOpts, newReplyOptions(cfg, n))
		}
		leases, err := st.Leases()
		if err != nil {
			return nil, fmt.Errorf("dhcp: load leases: %w", err)
		}
		// Each lease goes to the book of its subnet; one in no subnet (the
		// config changed) is left alone in the store.
		bySubnet := make([][]store.Lease, len(s.allocs))
		outside := 0
		for _, l := range leases {
			if i, ok := cfg.SubnetIndexOf(l.IP); ok {
				bySubnet[i] = append(bySubnet[i], l)
			} else {
				outside++
			}
		}
		kept := 0
		for i, a := range s.allocs {
			kept += a.load(bySubnet[i], s.now())
		}
		s.log.Debug("leases loaded", "kept", kept, "expired", len(leases)-kept-outside, "outside_subnets", outside)
	}
	return s, nil
}

// Listening describes the sockets Serve binds, for the startup banner. It is
// empty in off mode.
func (s *Server) Listening() []string {
	on := "all interfaces"
	if s.cfg.Server.Interface != "" {
		on = "interface " + s.cfg.Server.Interface
	}
	switch s.cfg.DHCP.Mode {
	case config.ModeFull:
		var nets []string
		local, _ := s.cfg.LocalSubnet() // server.address may have been resolved after Parse
		for i, n := range s.cfg.DHCP.Networks {
			if i == local {
				nets = append(nets, n.Prefix.String()+" (own segment)")
			} else {
				nets = append(nets, n.Prefix.String()+" (relayed)")
			}
		}
		return []string{fmt.Sprintf("dhcp full on :%d (%s), subnet %s", s.cfg.Server.DHCPPort, on, strings.Join(nets, ", "))}
	case config.ModeProxy:
		return []string{
			fmt.Sprintf("dhcp proxy on :%d (%s)", s.cfg.Server.DHCPPort, on),
			fmt.Sprintf("dhcp proxy (PXE boot server) on :%d (%s)", s.cfg.Server.ProxyPort, on),
		}
	}
	return nil
}

// Serve binds and answers until ctx is done. Full mode listens on
// server.dhcp_port, proxy mode on server.dhcp_port and server.proxy_port, off
// mode returns nil at once. Bind errors are returned before anything is served.
func (s *Server) Serve(ctx context.Context) error {
	type socket struct {
		conn *net.UDPConn
		via  string
	}
	var socks []socket
	closeAll := func() {
		for _, sk := range socks {
			sk.conn.Close()
		}
	}
	ports := map[string]int{}
	switch s.cfg.DHCP.Mode {
	case config.ModeOff:
		return nil
	case config.ModeFull:
		ports[viaDHCP] = s.cfg.Server.DHCPPort
	case config.ModeProxy:
		ports[viaDHCP] = s.cfg.Server.DHCPPort
		ports[viaProxy] = s.cfg.Server.ProxyPort
	}
	for _, via := range []string{viaDHCP, viaProxy} {
		port, ok := ports[via]
		if !ok {
			continue
		}
		conn, err := listenUDP(s.cfg.Server.Interface, port)
		if err != nil {
			closeAll()
			return err
		}
		socks = append(socks, socket{conn, via})
		if got := sockbuf.Of(conn); got < sockbuf.Receive {
			s.log.Warn("dhcp: the kernel gave a smaller receive buffer than asked: a boot storm may lose requests; run flint as root or raise net.core.rmem_max",
				"port", port, "bytes", got, "wanted", sockbuf.Receive)
		}
	}
	if s.cfg.Server.Interface == "" {
		s.log.Warn("dhcp listens on all interfaces: broadcast replies leave by the default route; set server.interface on hosts with several NICs")
	}

	stop := context.AfterFunc(ctx, closeAll) // unblocks the read loops
	defer stop()

	var handlers sync.WaitGroup
	slots := make(chan struct{}, maxInFlight)
	errs := make(chan error, len(socks))
	for _, sk := range socks {
		go func() {
			errs <- s.readLoop(ctx, sk.conn, sk.via, slots, &handlers)
		}()
	}
	var first error
	for range socks {
		if err := <-errs; err != nil && first == nil {
			first = err
			closeAll() // one socket failed: stop the others too
		}
	}
	handlers.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return first
}

func (s *Server) readLoop(ctx context.Context, conn *net.UDPConn, via string, slots chan struct{}, handlers *sync.WaitGroup) error {
	buf := make([]byte, 65536)
	for {
		n, peer, err := conn.ReadFromUDP(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("dhcp: read on %s: %w", conn.LocalAddr(), err)
		}
		pkt := append([]byte(nil), buf[:n]...)
		slots <- struct{}{}
		handlers.Add(1)
		go func() {
			defer func() { <-slots; handlers.Done() }()
			s.serveOne(conn, pkt, peer, via)
		}()
	}
}

// serveOne parses, answers and sends one packet. A panic here is a bug: log
// it and keep serving everyone else.
func (s *Server) serveOne(conn *net.UDPConn, pkt []byte, peer *net.UDPAddr, via string) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("dhcp: panic while handling a packet (bug)", "peer", peer, "via", via, "panic", r, "stack", string(debug.Stack()))
		}
	}()
	req, err := dhcpv4.FromBytes(pkt)
	if err != nil {
		s.metrics.DHCPPacket("malformed", "")
		s.log.Debug("malformed DHCP packet ignored", "peer", peer, "via", via, "err", err)
		return
	}
	reply, dst := s.handle(req, peer, via)
	if reply == nil {
		s.metrics.DHCPPacket(typeLabel(req.MessageType()), "")
		return
	}
	s.metrics.DHCPPacket(typeLabel(req.MessageType()), typeLabel(reply.MessageType()))
	if _, err := conn.WriteToUDP(reply.ToBytes(), dst); err != nil {
		s.log.Warn("dhcp: send reply", "mac", req.ClientHWAddr.String(), "xid", req.TransactionID.String(), "type", reply.MessageType().String(), "to", dst, "err", err)
	}
}

// handle is the whole protocol without sockets: it answers one request
// (nil: no reply) and says where the reply goes. peer is the packet's UDP
// source (nil if unknown: whatever depends on it is refused).
func (s *Server) handle(req *dhcpv4.DHCPv4, peer *net.UDPAddr, via string) (*dhcpv4.DHCPv4, *net.UDPAddr) {
	log := s.pktLog(req, "")
	switch {
	case req.OpCode != dhcpv4.OpcodeBootRequest:
		log.Debug("ignored: not a BOOTREQUEST", "op", req.OpCode, "peer", peer)
		return nil, nil
	case req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6:
		log.Debug("ignored: not an Ethernet client", "htype", req.HWType, "hlen", len(req.ClientHWAddr), "peer", peer)
		return nil, nil
	case req.MessageType() == dhcpv4.MessageTypeNone:
		log.Debug("ignored: no DHCP message type (plain BOOTP is not served)", "peer", peer)
		return nil, nil
	}
	switch s.cfg.DHCP.Mode {
	case config.ModeFull:
		return s.handleFull(req, peer, log)
	case config.ModeProxy:
		if via == viaProxy {
			log.via = "proxy port"
			return s.handleBootServer(req, peer, log)
		}
		return s.handleProxy(req, peer, log)
	}
	return nil, nil
}

// machine finds the config entry of a MAC.
func (s *Server) machine(mac net.HardwareAddr) (*config.Machine, bool) {
	key, ok := config.MACFromHW(mac)
	if !ok {
		return nil, false
	}
	return s.cfg.MachineByMAC(key)
}

// decide runs Decide for a request.
func (s *Server) decide(ci clientInfo, m *config.Machine) BootDecision {
	r := BootRequest{
		Arch:            ci.Arch,
		HasArch:         ci.HasArch,
		VendorClass:     ci.VendorClass,
		IPXE:            ci.IPXE,
		Known:           m != nil,
		DiscoverUnknown: s.cfg.DHCP.DiscoverUnknown,
		TFTPServer:      s.addr,
		HTTPBaseURL:     s.httpBase,
	}
	if m != nil {
		r.IPXEBinary = m.IPXEBinary
		r.SecureBoot = s.cfg.SecureBootOf(m)
	}
	return Decide(r)
}

// clientDest is where a reply to a client goes (RFC 2131 4.1): to the relay
// if there is one, to ciaddr if the client has an address (and is not being
// NAKed), else broadcast, because a client without an address cannot answer
// ARP for the one we offer.
func clientDest(req *dhcpv4.DHCPv4, peer *net.UDPAddr, nak bool) *net.UDPAddr {
	if giaddr, ok := addrOf(req.GatewayIPAddr); ok {
		return &net.UDPAddr{IP: ipOf(giaddr), Port: dhcpv4.ServerPort}
	}
	// Real clients send from 68; answering the source port also serves test
	// clients on unprivileged ports.
	port := dhcpv4.ClientPort
	if peer != nil && peer.Port > 0 {
		port = peer.Port
	}
	if ciaddr, ok := addrOf(req.ClientIPAddr); ok && !nak {
		return &net.UDPAddr{IP: ipOf(ciaddr), Port: port}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: port}
}
