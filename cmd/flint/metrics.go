package main

import (
	"github.com/flint-boot/flint/assets"
	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/dhcp"
	"github.com/flint-boot/flint/events"
	"github.com/flint-boot/flint/metrics"
	"github.com/flint-boot/flint/store"
	"github.com/flint-boot/flint/tftp"
)

// registerCounts exposes what the services and the store keep anyway, read
// at each scrape.
func registerCounts(m *metrics.Metrics, cfg *config.Config, rec *events.Recorder, d *dhcp.Server, t *tftp.Server, assetsDir string) {
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
	if cfg.DHCP.Mode == config.ModeFull && cfg.DHCP.HasPool() {
		m.GaugeFunc("flint_dhcp_pool_addresses", "Addresses of the pools (dhcp.pool, or those of dhcp.subnets) flint may hand out (reservations and its own excluded).",
			func() float64 { return float64(d.PoolStats().Size) })
		m.GaugesBy("flint_dhcp_pool_leases", "Unexpired leases in the pools, by state (bound, declined, offered: held for a REQUEST).", "state",
			func() map[string]int {
				st := d.PoolStats()
				return map[string]int{"bound": st.Bound, "declined": st.Declined, "offered": st.Offered}
			})
	}
	m.Machines(func() (map[string]int, int) { return machineCounts(cfg, rec) })
	m.AssetSync(func() (metrics.AssetSyncs, bool) { return assetSyncs(assetsDir) })
}

// assetSyncs reads what `flint assets sync` recorded in the manifest of the
// assets directory flint serves, with a failure count for every product.
func assetSyncs(dir string) (metrics.AssetSyncs, bool) {
	st, err := assets.Open(dir)
	if err != nil {
		return metrics.AssetSyncs{}, false // a damaged manifest: validate and sync say so
	}
	r := st.Syncs()
	out := metrics.AssetSyncs{Runs: r.Runs, LastRun: r.LastRun, LastSuccess: r.LastSuccess, LastOK: r.LastOK, Bytes: r.Bytes,
		Failures: map[string]int64{}}
	for _, p := range assets.Products {
		out.Failures[p] = r.Failures[p]
	}
	return out, true
}

// machineCounts counts the config's machines by state, and those marked
// stuck while installing, in one pass (each record looked up by key). A
// machine without a record yet is ready; a record that cannot be read counts
// as "unreadable" (the store's error is in flint's log when a request meets
// it).
func machineCounts(cfg *config.Config, st store.Store) (byState map[string]int, stuck int) {
	byState = map[string]int{}
	for _, s := range []store.State{store.StateReady, store.StateInstalling, store.StateInstalled, store.StateReprovision} {
		byState[string(s)] = 0
	}
	for i := range cfg.Machines {
		rec, ok, err := st.Machine(cfg.Machines[i].MAC)
		switch {
		case err != nil:
			byState["unreadable"]++
		case !ok || rec.State == "":
			byState[string(store.StateReady)]++
		default:
			if _, fixed := byState[string(rec.State)]; fixed {
				byState[string(rec.State)]++
			} else {
				byState["other"]++
			}
			if rec.Stuck && rec.State == store.StateInstalling {
				stuck++
			}
		}
	}
	return byState, stuck
}
