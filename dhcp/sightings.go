package dhcp

import (
	"context"
	"log/slog"
	"net"
	"net/netip"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/store"
)

// What flint records of the exchanges with clients: each becomes a
// sighting on the machine's timeline, queued for the timeline writer and
// bounded for MACs that are not in the config.

// sighting describes an exchange with a client for its machine record.
func (s *Server) sighting(ci clientInfo, ip netip.Addr, event string) store.Sighting {
	sg := store.Sighting{
		MAC:         ci.mac,
		At:          s.now(),
		VendorClass: ci.VendorClass,
		UserClass:   ci.UserClass,
		IP:          ip,
		Event:       event,
	}
	if ci.HasArch {
		sg.Arch = ArchName(ci.Arch)
	}
	return sg
}

// record stores a sighting (see recordSighting).
func (s *Server) record(ci clientInfo, ip netip.Addr, event string) {
	s.recordSighting(s.sighting(ci, ip, event), ci.MAC)
}

// noter is what a store offers to take sightings in the background
// (events.Recorder.Note): queued for its next batch, false when full.
type noter interface {
	Note(store.Sighting) bool
}

// recordSighting records a sighting without making the reply wait: it is
// queued for the timeline writer's next batch.
//
// Every packet can name a new MAC, so what the store keeps of MACs that are
// not in the config is bounded: limits.unknown_events_per_minute of them (for
// DHCP as a whole); the timeline writer's queue is bounded too. Those that do
// not fit are dropped and counted (DroppedSightings). The config's machines
// are never dropped: when the queue is full their sighting is written at
// once. In proxy mode the address a machine of the config asks its DHCP
// server for is written at once: the lifecycle checks script and config
// requests against it moments later.
func (s *Server) recordSighting(sg store.Sighting, mac net.HardwareAddr) {
	s.recordSightingOf(sg, s.known(mac))
}

// known reports whether mac is a machine of the config.
func (s *Server) known(mac net.HardwareAddr) bool {
	_, ok := s.machine(mac)
	return ok
}

// recordSightingOf is recordSighting for a sighting whose machine is known
// (a machine of the config) or not.
func (s *Server) recordSightingOf(sg store.Sighting, known bool) {
	if !known {
		s.unknownMu.Lock()
		ok := s.unknownEvents.take(sg.At)
		s.unknownMu.Unlock()
		if !ok {
			s.dropSighting(sg, "over limits.unknown_events_per_minute")
			return
		}
	}
	durable := known && sg.DHCPAddr && s.cfg.DHCP.Mode == config.ModeProxy
	switch {
	case s.notes == nil || durable:
		s.writeSighting(sg)
	case s.notes.Note(sg):
	case known:
		s.writeSighting(sg)
	default:
		s.dropSighting(sg, "the timeline writer is behind")
	}
}

func (s *Server) writeSighting(sg store.Sighting) {
	if err := s.st.RecordSighting(sg); err != nil {
		s.log.Warn("record machine sighting", "mac", sg.MAC, "event", sg.Event, "err", err)
	}
}

func (s *Server) dropSighting(sg store.Sighting, why string) {
	n := s.dropped.Add(1)
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("sighting of an unknown machine not recorded: "+why, "mac", sg.MAC, "event", sg.Event)
	}
	if !s.log.Enabled(context.Background(), slog.LevelWarn) {
		return
	}
	if ok, suppressed := s.quiet.allow("sightings dropped", sg.At); ok {
		args := []any{"reason", why, "dropped_total", n}
		if suppressed > 0 {
			args = append(args, "suppressed_lines", suppressed)
		}
		s.log.Warn("sightings of unknown machines are being dropped (a flood of MACs that are not in the config?); logged once a minute", args...)
	}
}

// DroppedSightings counts the sightings of MACs that are not in the config
// that were not recorded since New: over limits.unknown_events_per_minute, or
// while the store was behind. (Sightings of the config's machines are never
// dropped.)
func (s *Server) DroppedSightings() uint64 { return s.dropped.Load() }
