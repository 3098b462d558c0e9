package main

import (
	"github.com/flint-boot/flint/dhcp"
	"github.com/flint-boot/flint/events"
	"github.com/flint-boot/flint/metrics"
	"github.com/flint-boot/flint/tftp"
)

// registerCounts exposes what the services count anyway, read at each
// scrape.
func registerCounts(m *metrics.Metrics, rec *events.Recorder, d *dhcp.Server, t *tftp.Server) {
	m.CounterFunc("flint_events_dropped_total",
		"Timeline events (sightings, transfers, downloads) dropped because the write queue was full (limits.pending_events).",
		func() float64 { return float64(rec.Dropped()) })
	m.CounterFunc("flint_dhcp_sightings_dropped_total",
		"DHCP sightings of machines not in the config that were not recorded (rate limit or full queue).",
		func() float64 { return float64(d.DroppedSightings()) })
	m.CounterFunc("flint_tftp_refused_total",
		"TFTP read requests refused because limits.tftp_transfers or limits.tftp_transfers_per_client was reached.",
		func() float64 { return float64(t.Stats().Refused) })
	m.GaugeFunc("flint_tftp_transfers_active", "TFTP transfers running now.",
		func() float64 { return float64(t.Stats().Active) })
	m.GaugeFunc("flint_tftp_cached_bytes", "Bytes of iPXE binaries kept in memory for TFTP.",
		func() float64 { return float64(t.Stats().CachedBytes) })
}
