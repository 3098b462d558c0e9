// Package lifecycle decides what a machine may have at each point of its life:
// discovered -> ready -> installing -> installed, and back through reprovision
// when an operator arms it. It owns every decision about a machine's boot: its
// iPXE script (install, boot the disk, or nothing), its Ignition config
// (which carries the machine's private keys and the cluster token) and the
// reports its node sends back, and it rebuilds an etcd member in place before
// a reprovisioned server gets its config back.
//
// # What a request must prove
//
// A config that holds secrets goes out only when all of these hold:
//
//   - it comes from the machine's own address: in full DHCP mode the address
//     flint leased to its MAC, in proxy mode the address flint last saw the MAC
//     ask its DHCP server for (within security.token_ttl); off mode has no
//     DHCP to learn it from, so the token binds the address its script went to;
//   - it carries a boot token that flint put in that machine's iPXE script:
//     256 bits, self-verifying (an HMAC with flint's report key over the MAC
//     and its issue time, so issuing one writes nothing), unexpired
//     (security.token_ttl), and unused: the first secret config spends every
//     token issued before it;
//   - the machine's install window is open: ready, installing or reprovision
//     for disk installs; live machines (which run from RAM) on every boot, and a
//     live etcd member only once etcdadmin confirms its old member is down.
//
// Node reports that move the lifecycle carry a report token derived from the
// boot's secret delivery (HMAC with flint's report key), which only crossed the
// network inside the TLS-protected config. Tokens are compared in constant
// time and never logged; the store keeps only their hashes.
//
// On a store error every decision fails closed: configs wait (503), and an
// installed disk machine is told to boot its disk.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/metrics"
	"github.com/flint-boot/flint/store"
)

// Verdict is the answer to a config request.
type Verdict int

const (
	Serve   Verdict = iota // hand out the config
	Refuse                 // 403: not this requester, or not now
	Wait                   // 503: flint is preparing (etcd membership) or cannot read its state; Ignition retries
	Unknown                // 404: not a machine of the config
)

func (v Verdict) String() string {
	switch v {
	case Serve:
		return "serve"
	case Refuse:
		return "refuse"
	case Wait:
		return "wait"
	case Unknown:
		return "unknown"
	}
	return fmt.Sprintf("verdict(%d)", int(v))
}

// Node events that move the lifecycle (POST /api/v1/events).
const (
	EventConfigApplied   = "config-applied"   // Ignition finished; live machines are installed then
	EventInstallFinished = "install-finished" // flatcar-install wrote the disk
	EventEtcdHealthy     = "etcd-healthy"     // the member serves; a rebuild is over
	EventK3sUp           = "k3s-up"
)

// Rejoiner fixes etcd membership so a wiped member can start again with an
// empty data directory (etcdadmin.Admin). PrepareRejoin must refuse, changing
// nothing, when the member still answers as healthy. An error that matches
// neither ErrMemberHealthy nor ErrNothingChanged may have left the
// membership changed (the old member removed), so the rebuild can no longer
// be cancelled.
type Rejoiner interface {
	PrepareRejoin(ctx context.Context, name, peerURL string) (initialCluster string, err error)
	Close() error
}

// ConnectEtcd opens an admin connection to the given client endpoints.
type ConnectEtcd func(ctx context.Context, endpoints []string) (Rejoiner, error)

// Options are a Manager's collaborators.
type Options struct {
	// Connect reaches etcd for member replacement; nil means no rebuild can
	// happen here (reprovisioned servers then wait, with an explanation).
	Connect ConnectEtcd
	// ReportKey derives report and installed-config tokens (pki.ReportKey);
	// at least 32 bytes.
	ReportKey []byte
	// Log gets the decisions worth an operator's eye; nil discards.
	Log *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Metrics counts etcd member replacements; nil counts nothing.
	Metrics *metrics.Metrics
	// Lock takes a lock for every flint instance sharing the store (the
	// etcd store's Lock): etcd membership changes run one at a time across
	// instances, whichever one a rebuilt node asks. nil: a single instance.
	Lock func(ctx context.Context, name string) (unlock func(), err error)
	// Agreed says whether the flint instances sharing the store agree on
	// the site config (and why not); while they do not, no secret config
	// is served (503, the machine retries). nil: a single instance.
	Agreed func() (ok bool, why string)
}

// Manager keeps the lifecycle in the store. Safe for concurrent use.
type Manager struct {
	cfg       *config.Config
	st        store.Store
	connect   ConnectEtcd
	reportKey []byte
	log       *slog.Logger
	now       func() time.Time
	metrics   *metrics.Metrics
	agreed    func() (bool, string)
	lock      func(context.Context, string) (func(), error)

	// RetryRejoin is how long after a failed membership change the next
	// config request tries again.
	RetryRejoin time.Duration

	ctx    context.Context // cancelled by Close: background rejoins stop
	cancel context.CancelFunc
	bg     sync.WaitGroup

	refusals   counter
	refusalLog perMachine

	mu        sync.Mutex
	preparing map[config.MAC]bool      // a rejoin runs now (at most one per server)
	failed    map[config.MAC]rejoinErr // last rejoin failure per server
}

type rejoinErr struct {
	at     time.Time
	msg    string
	refuse bool // the member was healthy: answer 403, not 503
	// changed: the attempt failed after (or while) changing etcd
	// membership, so the rebuild can no longer be cancelled.
	changed bool
}

// ErrNoReportKey is returned by New without a usable report key.
var ErrNoReportKey = errors.New("lifecycle: a report key of at least 32 bytes is required (pki.ReportKey)")

// New makes a manager.
func New(cfg *config.Config, st store.Store, opts Options) (*Manager, error) {
	if len(opts.ReportKey) < 32 {
		return nil, ErrNoReportKey
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Manager{
		cfg: cfg, st: st, connect: opts.Connect, reportKey: append([]byte(nil), opts.ReportKey...),
		log: opts.Log, now: opts.Now, metrics: opts.Metrics, agreed: opts.Agreed, lock: opts.Lock, RetryRejoin: 10 * time.Second,
		ctx: ctx, cancel: cancel,
		preparing: map[config.MAC]bool{}, failed: map[config.MAC]rejoinErr{},
	}, nil
}

// Close stops background work (a running etcd member replacement is
// cancelled) and waits for it, so nothing writes to the store after it.
func (m *Manager) Close() {
	m.cancel()
	m.bg.Wait()
}

// record puts an event on mac's timeline only: the requester may be another
// machine, whose address must not become mac's.
func (m *Manager) record(mac config.MAC, from netip.Addr, event, detail string) {
	m.note(store.Sighting{MAC: mac.String(), At: m.now(), IP: from, Event: event, Detail: detail, TimelineOnly: true})
}

// note records an event that explains a decision but changes no state: when
// the store is flint's timeline writer (events.Recorder) it goes into its
// next batch, not worth an fsync of its own.
func (m *Manager) note(sg store.Sighting) {
	if n, ok := m.st.(noter); ok && n.Note(sg) {
		return
	}
	if err := m.st.RecordSighting(sg); err != nil {
		m.log.Warn("could not record event", "mac", sg.MAC, "event", sg.Event, "err", err)
	}
}

// noter is the timeline writer's batched path (events.Recorder.Note).
type noter interface {
	Note(store.Sighting) bool
}

// refuse logs and records a refusal on the target machine's timeline.
// Every refusal is counted; the log and the machine's timeline get at most
// refusalBurst a minute per machine (a flood of refused requests for one
// machine must not become a flood of fsynced writes), with the number left
// out in between.
func (m *Manager) refuse(mc *config.Machine, from netip.Addr, what, reason string) {
	m.refusals.Add(what)
	ok, skipped := m.refusalLog.allow(mc.HW, m.now())
	if !ok {
		return
	}
	if skipped > 0 {
		reason = fmt.Sprintf("%s (and %d more refusals not recorded)", reason, skipped)
	}
	m.log.Warn("refused "+what, "machine", mc.Hostname, "mac", mc.HW, "from", from, "reason", reason)
	m.record(mc.HW, from, what+" refused", reason)
}

// refusalBurst is how many refusals a minute per machine reach the log and
// the timeline.
const refusalBurst = 20

// perMachine is a token bucket per machine of the config (so bounded by it).
type perMachine struct {
	mu      sync.Mutex
	buckets map[config.MAC]*machineBucket
}

type machineBucket struct {
	tokens  float64
	last    time.Time
	skipped uint64
}

// allow takes a token of mac's bucket; skipped is how many were refused since
// the last one allowed.
func (p *perMachine) allow(mac config.MAC, now time.Time) (ok bool, skipped uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.buckets == nil {
		p.buckets = map[config.MAC]*machineBucket{}
	}
	b := p.buckets[mac]
	if b == nil {
		b = &machineBucket{tokens: refusalBurst, last: now}
		p.buckets[mac] = b
	}
	if dt := now.Sub(b.last); dt > 0 {
		b.tokens = min(refusalBurst, b.tokens+dt.Minutes()*refusalBurst)
		b.last = now
	}
	if b.tokens < 1 {
		b.skipped++
		return false, 0
	}
	b.tokens--
	skipped, b.skipped = b.skipped, 0
	return true, skipped
}

// Refusals counts refused requests by what was asked for ("http script",
// "ignition", "ignition pointer", "node report EVENT"), for monitoring.
func (m *Manager) Refusals() map[string]uint64 { return m.refusals.Snapshot() }

// counter is a small map of counts, safe for concurrent use; its keys are
// the few fixed kinds of request, never anything from the network.
type counter struct {
	mu sync.Mutex
	n  map[string]uint64
}

func (c *counter) Add(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]uint64{}
	}
	c.n[k]++
}

func (c *counter) Snapshot() map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]uint64, len(c.n))
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

// machine reads mac's record by key.
func (m *Manager) machine(mac config.MAC) (store.Machine, error) {
	rec, ok, err := m.st.Machine(mac.String())
	if err != nil {
		return rec, fmt.Errorf("read the record of %s: %w", mac, err)
	}
	if !ok {
		// A machine of the config always has a record (SyncConfig); without
		// one it is treated as never seen: ready.
		rec = store.Machine{MAC: mac.String(), Known: true, State: store.StateReady}
	}
	return rec, nil
}

// ownAddress says why from is not mc's own address ("" when it is); err is a
// store failure (the caller fails closed). With booting set (a script, which
// issues a boot token) the machine must also have taken its address from DHCP
// within the token lifetime: a machine that is booting just did, and the
// lease of one that has been off for a while opens nothing to whoever takes
// its address.
func (m *Manager) ownAddress(mc *config.Machine, rec store.Machine, from netip.Addr, booting bool) (string, error) {
	from = from.Unmap()
	now := m.now()
	ttl := m.cfg.Security.TokenTTL.Duration
	switch m.cfg.DHCP.Mode {
	case config.ModeFull:
		l, ok, err := m.st.Lease(mc.IPAddr)
		if err != nil {
			return "", fmt.Errorf("read the lease of %s: %w", mc.IPAddr, err)
		}
		if !ok || !leaseOf(l, mc, now) {
			return fmt.Sprintf("request from %s, but %s holds no lease from flint (boot it from the network first)", from, mc.MAC), nil
		}
		if from != mc.IPAddr {
			return fmt.Sprintf("request from %s, but flint leased %s to %s", from, mc.IPAddr, mc.MAC), nil
		}
		if booting && now.Sub(l.Start) > ttl {
			return fmt.Sprintf("request from %s, but %s last took its lease %s ago: a booting machine asks for it first (boot it from the network)", from, mc.MAC, now.Sub(l.Start).Round(time.Second)), nil
		}
	case config.ModeProxy:
		if !rec.DHCPAddr.IsValid() || now.Sub(rec.DHCPAddrAt) > ttl {
			return fmt.Sprintf("request from %s, but flint has not seen %s ask its DHCP server for an address in the last %s (boot it from the network on a segment flint listens on)", from, mc.MAC, ttl), nil
		}
		if from != rec.DHCPAddr {
			return fmt.Sprintf("request from %s, but %s last asked its DHCP server for %s", from, mc.MAC, rec.DHCPAddr), nil
		}
	}
	return "", nil
}
