package dhcp

import (
	"context"
	"log/slog"
	"runtime"
	"time"

	"github.com/flint-boot/flint/store"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// pktLog logs about one packet. The packet's attributes (mac, xid, type) are
// only formatted when a line is actually written at its level, so the packets
// nobody logs about (most of them, at the default level) cost no logger and no
// strings.
type pktLog struct {
	l   *slog.Logger
	req *dhcpv4.DHCPv4
	via string // set for the boot-server port
}

func (s *Server) pktLog(req *dhcpv4.DHCPv4, via string) pktLog {
	return pktLog{l: s.log, req: req, via: via}
}

func (p pktLog) Debug(msg string, args ...any) { p.write(slog.LevelDebug, msg, args) }
func (p pktLog) Info(msg string, args ...any)  { p.write(slog.LevelInfo, msg, args) }
func (p pktLog) Warn(msg string, args ...any)  { p.write(slog.LevelWarn, msg, args) }
func (p pktLog) Error(msg string, args ...any) { p.write(slog.LevelError, msg, args) }

// enabled says whether a line at level would be written: callers on the
// per-packet path check it before building arguments nobody reads.
func (p pktLog) enabled(level slog.Level) bool { return p.l.Enabled(context.Background(), level) }

// write logs msg if level is enabled; the source is the caller of the method
// that called write.
func (p pktLog) write(level slog.Level, msg string, args []any) {
	ctx := context.Background()
	if !p.l.Enabled(ctx, level) {
		return
	}
	var pcs [1]uintptr
	runtime.Callers(3, pcs[:]) // Callers, write, Debug/Info/... or complain
	r := slog.NewRecord(time.Now(), level, msg, pcs[0])
	r.AddAttrs(
		slog.String("mac", p.req.ClientHWAddr.String()),
		slog.String("xid", p.req.TransactionID.String()),
		slog.String("type", p.req.MessageType().String()),
	)
	if p.via != "" {
		r.AddAttrs(slog.String("via", p.via))
	}
	r.Add(args...)
	_ = p.l.Handler().Handle(ctx, r)
}

// complain logs a problem that repeats with every packet of a client (or of
// a flood) through the quiet log: once per quietPeriod per key, within the
// overall budget; lines the budget held back are counted in the next one.
func (s *Server) complain(log pktLog, key string, level slog.Level, msg string, args ...any) {
	if !log.l.Enabled(context.Background(), level) {
		return
	}
	ok, suppressed := s.quiet.allow(key, s.now())
	if !ok {
		return
	}
	if suppressed > 0 {
		args = append(args, "suppressed_lines", suppressed)
	}
	log.write(level, msg, args)
}

// tampered reports a packet that tried to change the lease of a machine of
// the config without being its holder (a spoofed RELEASE or DECLINE): in
// the log, and on that machine's timeline, at most once a minute per
// machine and kind. Unknown MACs only get the ordinary complaint.
func (s *Server) tampered(log pktLog, ci clientInfo, kind, detail string, args ...any) bool {
	m, known := s.machine(ci.MAC)
	if !known {
		return false
	}
	if ok, suppressed := s.tamper.allow(kind+" "+m.MAC, s.now()); ok {
		if suppressed > 0 {
			args = append(args, "suppressed_lines", suppressed)
		}
		log.write(slog.LevelWarn, "ignored: "+kind+" for "+m.Hostname+": "+detail+" (spoofed?); nothing changed", args)
		err := s.st.RecordSighting(store.Sighting{MAC: m.MAC, At: s.now(), Event: "dhcp " + kind + " ignored", Detail: detail + " (spoofed?)", TimelineOnly: true})
		if err != nil {
			log.write(slog.LevelWarn, "record a spoofed packet on the timeline", []any{"err", err})
		}
	}
	return true
}
