// Package metrics is flint's Prometheus instrumentation: one registry with
// flint's own families and Go's runtime and process collectors, served at
// /metrics (admin listeners only). It imports nothing of flint.
//
// Labels never carry a MAC, an address or anything else a client chooses
// freely: a flood of made-up names would grow the series without bound.
// Values that come from the network (a TFTP file name, an HTTP route) go
// through a bounded label set; what does not fit is counted as "other".
package metrics

import (
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// maxFileLabels bounds the TFTP file names that get a series of their own.
const maxFileLabels = 32

// Metrics holds flint's metric families. A nil *Metrics counts nothing, so
// packages can be used (and tested) without one.
type Metrics struct {
	reg *prometheus.Registry

	dhcpPackets   *prometheus.CounterVec
	dhcpClaims    *prometheus.CounterVec
	tftpTransfers *prometheus.CounterVec
	tftpBytes     *prometheus.CounterVec
	httpRequests  *prometheus.CounterVec
	httpDuration  *prometheus.HistogramVec
	configs       *prometheus.CounterVec
	refusals      *prometheus.CounterVec
	rejoins       *prometheus.CounterVec
	rejoinTime    prometheus.Histogram

	files boundedSet
}

// New builds the registry: flint's families, build info, and the Go runtime
// and process collectors.
func New(version string) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		dhcpPackets: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flint_dhcp_packets_total",
			Help: "DHCP requests handled, by message type and what flint answered (offer, ack, nak, or none).",
		}, []string{"type", "reply"}),
		dhcpClaims: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flint_dhcp_claims_total",
			Help: "Pool address claims (before an offer) and binds (before an ACK) in the state store, by result (ok, taken: another MAC holds it, unavailable: the store could not commit).",
		}, []string{"result"}),
		tftpTransfers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flint_tftp_transfers_total",
			Help: "TFTP read requests admitted, by file and result (ok or failed); refusals over a cap are in flint_tftp_refused_total.",
		}, []string{"file", "result"}),
		tftpBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flint_tftp_sent_bytes_total",
			Help: "Bytes of file data sent by TFTP, by file.",
		}, []string{"file"}),
		httpRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flint_http_requests_total",
			Help: "HTTP requests answered, by listener, route (the route table's pattern), method and status code.",
		}, []string{"listener", "route", "method", "code"}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "flint_http_request_duration_seconds",
			Help:    "Time from a request's arrival to the end of its answer (asset downloads included), by listener and route.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60},
		}, []string{"listener", "route"}),
		configs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flint_ignition_configs_total",
			Help: "Ignition config requests decided, by kind (pointer over HTTP, secret over HTTPS) and verdict (serve, refuse, wait, unknown).",
		}, []string{"kind", "verdict"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flint_ignition_refusals_total",
			Help: "Ignition config requests refused, by kind and reason (address, window, token, stage, member, cancelled).",
		}, []string{"kind", "reason"}),
		rejoins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flint_etcd_rejoins_total",
			Help: "etcd member replacements for rebuilt servers, by result (replaced; refused_healthy: the member still ran; failed: quorum or etcd said no, retried later).",
		}, []string{"result"}),
		rejoinTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "flint_etcd_rejoin_duration_seconds",
			Help:    "Time to check the members and replace a rebuilt server's etcd member (successful replacements).",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}),
		files: boundedSet{max: maxFileLabels},
	}
	// Series an alert takes increase() of exist from the start at 0:
	// Prometheus cannot see the first increment of a series that appears
	// at 1.
	for _, kind := range []string{"pointer", "secret"} {
		for _, verdict := range []string{"serve", "refuse", "wait", "unknown"} {
			m.configs.WithLabelValues(kind, verdict)
		}
	}
	for _, result := range []string{"replaced", "refused_healthy", "failed"} {
		m.rejoins.WithLabelValues(result)
	}
	for _, result := range []string{"ok", "taken", "unavailable"} {
		m.dhcpClaims.WithLabelValues(result)
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "flint_build_info",
		Help: "flint's version and the Go version it was built with (always 1).",
	}, []string{"version", "goversion"})
	build.WithLabelValues(version, runtime.Version()).Set(1)
	m.reg.MustRegister(m.dhcpPackets, m.dhcpClaims, m.tftpTransfers, m.tftpBytes, m.httpRequests, m.httpDuration, m.configs, m.refusals, m.rejoins, m.rejoinTime, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the exposition format (what Prometheus scrapes).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// CounterFunc registers a counter read from f at each scrape (e.g. a count
// a package keeps anyway).
func (m *Metrics) CounterFunc(name, help string, f func() float64) {
	if m != nil {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
	}
}

// GaugeFunc registers a gauge read from f at each scrape.
func (m *Metrics) GaugeFunc(name, help string, f func() float64) {
	if m != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
}

// DHCPPacket counts one handled request; typ and reply are DHCP message
// type names (reply "" when flint did not answer).
func (m *Metrics) DHCPPacket(typ, reply string) {
	if m == nil {
		return
	}
	if reply == "" {
		reply = "none"
	}
	m.dhcpPackets.WithLabelValues(typ, reply).Inc()
}

// DHCPClaim counts one claim or bind of a pool address in the state store;
// result is ok, taken or unavailable.
func (m *Metrics) DHCPClaim(result string) {
	if m == nil {
		return
	}
	m.dhcpClaims.WithLabelValues(result).Inc()
}

// TFTPTransfer counts one admitted read request. A file gets a series of
// its own once it was sent whole; until then (and past maxFileLabels
// files) it is "other", so made-up names add no series.
func (m *Metrics) TFTPTransfer(file string, bytes int64, ok bool) {
	if m == nil {
		return
	}
	result := "failed"
	if ok {
		result = "ok"
		file = m.files.admit(file)
	} else {
		file = m.files.known(file)
	}
	m.tftpTransfers.WithLabelValues(file, result).Inc()
	if bytes > 0 {
		m.tftpBytes.WithLabelValues(file).Add(float64(bytes))
	}
}

// HTTPRequest counts one answered request. route is the route table's
// pattern ("" for none matched: "unmatched").
func (m *Metrics) HTTPRequest(listener, route, method string, code int, d time.Duration) {
	if m == nil {
		return
	}
	if route == "" {
		route = "unmatched"
	}
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions, http.MethodPatch:
	default:
		method = "other"
	}
	m.httpRequests.WithLabelValues(listener, route, method, strconv.Itoa(code)).Inc()
	m.httpDuration.WithLabelValues(listener, route).Observe(d.Seconds())
}

// Config counts one decided config request; refused is the reason code
// of a refusal (from a fixed set: RefusalReasons).
func (m *Metrics) Config(kind, verdict, refused string) {
	if m != nil {
		m.configs.WithLabelValues(kind, verdict).Inc()
		if refused != "" {
			m.refusals.WithLabelValues(kind, refused).Inc()
		}
	}
}

// RefusalReasons creates the refusal series of every reason code at 0.
func (m *Metrics) RefusalReasons(codes []string) {
	if m != nil {
		for _, kind := range []string{"pointer", "secret"} {
			for _, c := range codes {
				m.refusals.WithLabelValues(kind, c)
			}
		}
	}
}

// EtcdRejoin counts one member replacement attempt: result is replaced,
// refused_healthy or failed; d is observed for replacements.
func (m *Metrics) EtcdRejoin(result string, d time.Duration) {
	if m == nil {
		return
	}
	m.rejoins.WithLabelValues(result).Inc()
	if result == "replaced" {
		m.rejoinTime.Observe(d.Seconds())
	}
}

// boundedSet admits at most max distinct values.
type boundedSet struct {
	mu   sync.Mutex
	max  int
	vals map[string]struct{}
}

// admit returns v if it is in the set or there is room for it, else "other".
func (b *boundedSet) admit(v string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.vals[v]; ok {
		return v
	}
	if len(b.vals) >= b.max {
		return "other"
	}
	if b.vals == nil {
		b.vals = map[string]struct{}{}
	}
	b.vals[v] = struct{}{}
	return v
}

// known returns v if it is in the set, else "other".
func (b *boundedSet) known(v string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.vals[v]; ok {
		return v
	}
	return "other"
}

// GaugesBy registers a gauge family with one label, whose values f counts
// at each scrape (e.g. machines by lifecycle state). f's keys must come
// from a fixed set.
func (m *Metrics) GaugesBy(name, help, label string, f func() map[string]int) {
	if m != nil {
		m.reg.MustRegister(&gaugesBy{desc: prometheus.NewDesc(name, help, []string{label}, nil), f: f})
	}
}

type gaugesBy struct {
	desc *prometheus.Desc
	f    func() map[string]int
}

func (g *gaugesBy) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *gaugesBy) Collect(ch chan<- prometheus.Metric) {
	for k, v := range g.f() {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, float64(v), k)
	}
}

var (
	machinesDesc = prometheus.NewDesc("flint_machines",
		"The config's machines by lifecycle state (each looked up by key at each scrape).", []string{"state"}, nil)
	machinesStuckDesc = prometheus.NewDesc("flint_machines_stuck",
		"The config's machines installing for longer than cluster.install_timeout with no report.", nil, nil)
)

// Machines registers flint_machines (by state, from a fixed set of states)
// and flint_machines_stuck, both from one reading of f per scrape.
func (m *Metrics) Machines(f func() (byState map[string]int, stuck int)) {
	if m != nil {
		m.reg.MustRegister(machineCounts(f))
	}
}

type machineCounts func() (map[string]int, int)

func (machineCounts) Describe(ch chan<- *prometheus.Desc) {
	ch <- machinesDesc
	ch <- machinesStuckDesc
}

func (f machineCounts) Collect(ch chan<- prometheus.Metric) {
	byState, stuck := f()
	for state, n := range byState {
		ch <- prometheus.MustNewConstMetric(machinesDesc, prometheus.GaugeValue, float64(n), state)
	}
	ch <- prometheus.MustNewConstMetric(machinesStuckDesc, prometheus.GaugeValue, float64(stuck))
}
