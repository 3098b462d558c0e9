package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// AssetSyncs is what `flint assets sync` recorded in the asset store: the
// sync is a command of its own, so serve reads its record at each scrape.
type AssetSyncs struct {
	Runs        int64
	LastRun     time.Time // zero: never ran
	LastSuccess time.Time // zero: never succeeded
	LastOK      bool
	Bytes       int64
	// Failures by product; every product the sync knows should be a key
	// (0 too), so alerts on increase() see its first failure.
	Failures map[string]int64
}

// AssetSync registers the asset sync families, read from f at each scrape;
// f's ok false (the store cannot be read) exposes nothing of them.
func (m *Metrics) AssetSync(f func() (AssetSyncs, bool)) {
	if m != nil {
		m.reg.MustRegister(&assetSync{f: f})
	}
}

var (
	syncRunsDesc = prometheus.NewDesc("flint_asset_sync_runs_total",
		"Runs of flint assets sync on the assets directory flint serves.", nil, nil)
	syncBytesDesc = prometheus.NewDesc("flint_asset_sync_downloaded_bytes_total",
		"Content bytes flint assets sync downloaded, all runs.", nil, nil)
	syncFailuresDesc = prometheus.NewDesc("flint_asset_sync_failures_total",
		"Runs of flint assets sync that could not sync a product's release (download, verification, a file in the way).", []string{"product"}, nil)
	syncOKDesc = prometheus.NewDesc("flint_asset_sync_last_run_ok",
		"1 if the last flint assets sync synced every release, else 0 (absent before the first run).", nil, nil)
	syncLastRunDesc = prometheus.NewDesc("flint_asset_sync_last_run_timestamp_seconds",
		"When the last flint assets sync ran (absent before the first run).", nil, nil)
	syncLastSuccessDesc = prometheus.NewDesc("flint_asset_sync_last_success_timestamp_seconds",
		"When flint assets sync last synced every release (absent before the first success).", nil, nil)
)

type assetSync struct{ f func() (AssetSyncs, bool) }

func (a *assetSync) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{syncRunsDesc, syncBytesDesc, syncFailuresDesc, syncOKDesc, syncLastRunDesc, syncLastSuccessDesc} {
		ch <- d
	}
}

func (a *assetSync) Collect(ch chan<- prometheus.Metric) {
	s, ok := a.f()
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(syncRunsDesc, prometheus.CounterValue, float64(s.Runs))
	ch <- prometheus.MustNewConstMetric(syncBytesDesc, prometheus.CounterValue, float64(s.Bytes))
	for p, n := range s.Failures {
		ch <- prometheus.MustNewConstMetric(syncFailuresDesc, prometheus.CounterValue, float64(n), p)
	}
	if !s.LastRun.IsZero() {
		ok := 0.0
		if s.LastOK {
			ok = 1
		}
		ch <- prometheus.MustNewConstMetric(syncOKDesc, prometheus.GaugeValue, ok)
		ch <- prometheus.MustNewConstMetric(syncLastRunDesc, prometheus.GaugeValue, float64(s.LastRun.UnixNano())/1e9)
	}
	if !s.LastSuccess.IsZero() {
		ch <- prometheus.MustNewConstMetric(syncLastSuccessDesc, prometheus.GaugeValue, float64(s.LastSuccess.UnixNano())/1e9)
	}
}
