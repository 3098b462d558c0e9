package store

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Etcd is the Store on an etcd cluster, shared by every flint instance that
// uses the same endpoints and prefix. Keys, under the prefix:
//
//	leases/<ip>                       a Lease (JSON)
//	machines/<mac>                    a Machine (JSON)
//	known/<mac>                       index: the record is Known (empty value)
//	discovered/<16 hex ns><mac>       index: discovered records by Discovered time
//	discovered_count                  entries in that index (decimal)
//	events/<mac>                      the machine's timeline sequence (decimal)
//	events/<mac>/<16 hex ns>.<16 hex seq>  one timeline Event (JSON)
//	rebuild                           MAC holding the rebuild slot
//	claims/<ip>                       MAC a pool address is offered to, under an etcd lease (etcd_claims.go)
//
// Every timeline event is its own small key rather than one value per
// machine holding the whole timeline: an append then writes ~200 bytes
// through raft instead of rewriting up to Limits.Events entries (~60 KB) each
// time, and etcd's history (kept until compaction) grows by as little.
//
// Every write is one etcd transaction (committed through raft to a quorum's
// disks before it returns) guarded by compare-and-swap: it reads what it
// needs at one snapshot revision, and commits only if no key it read has
// changed since (mod revision compares); otherwise it reads again and retries.
// The indexes' ranges are guarded by the key every change of them writes
// (discovered_count for the discovered index, events/<mac> for a timeline).
// So concurrent writers, in this process or other flint instances, never
// lose an update.
//
// Differences from Bolt, all forced by etcd's limits on one transaction
// (--max-txn-ops, 128 by default): RecordSightings and SyncConfig commit in
// as many transactions as their size needs (each machine's sightings and
// each record's index changes stay in one), and a record indexed as
// discovered evicts at most maxEvictions older ones at a time, so a lowered
// Limits.Discovered is reached over the next few new records.
type Etcd struct {
	cli       *clientv3.Client
	prefix    string
	limits    Limits
	endpoints []string
	timeout   time.Duration

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	// closeMu orders operations against Close: an operation holds it
	// shared while it registers in ops; Close takes it exclusively to mark
	// the store closed, then waits for ops.
	closeMu sync.RWMutex
	closed  bool
	ops     sync.WaitGroup

	// version is the highest etcd revision at which this client saw a
	// change under the prefix: its own commits, and every other writer's
	// through a watch (see Version).
	version   atomic.Uint64
	watchDone chan struct{}

	// down makes operations fail fast while etcd has no quorum; a probe
	// (counted in probes) clears it (see etcd_health.go).
	down   atomic.Bool
	probes sync.WaitGroup

	// leaseMu guards claimsLease: the etcd lease address claims go under,
	// shared for a second (see claimLease).
	leaseMu     sync.Mutex
	claimsLease sharedLease
}

// EtcdConfig says where the etcd store is.
type EtcdConfig struct {
	// Endpoints are the members' client URLs (https://198.18.0.10:2379);
	// list every member so that one being down does not matter.
	Endpoints []string
	// TLS carries the CA and flint's client certificate.
	TLS *tls.Config
	// Prefix is put before every key: several sites may share one etcd.
	// It starts and ends with '/'.
	Prefix string
	// Timeout bounds one operation, retries included (default 5 s).
	Timeout time.Duration
}

const (
	// maxTxnOps stays below etcd's default --max-txn-ops (128).
	maxTxnOps = 120
	// maxEvictions bounds the records one new discovered record evicts.
	maxEvictions = 8
	// pageSize is how many keys one request of a listing reads.
	pageSize = 500
)

// OpenEtcd connects to the etcd store and checks that it answers. Only
// WithLimits of the options applies.
func OpenEtcd(c EtcdConfig, opts ...Option) (*Etcd, error) {
	if len(c.Endpoints) == 0 {
		return nil, errors.New("etcd store: no endpoints: list the client URLs of the etcd members in store.endpoints")
	}
	if !strings.HasPrefix(c.Prefix, "/") || !strings.HasSuffix(c.Prefix, "/") {
		return nil, fmt.Errorf("etcd store: prefix %q must start and end with '/' (like /flint/site-a/)", c.Prefix)
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   c.Endpoints,
		TLS:         c.TLS,
		DialTimeout: c.Timeout,
		// The client logs every reconnect attempt; errors reach flint's log
		// through the operations that fail.
		Logger: zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd store at %s: %w", strings.Join(c.Endpoints, ", "), err)
	}
	o := applyOptions(opts)
	ctx, cancel := context.WithCancel(context.Background())
	s := &Etcd{cli: cli, prefix: c.Prefix, limits: o.limits, endpoints: c.Endpoints, timeout: c.Timeout, ctx: ctx, cancel: cancel}
	// A linearizable read proves a quorum answers with our certificate.
	rctx, rcancel := context.WithTimeout(ctx, c.Timeout)
	resp, err := cli.Get(rctx, s.prefix+etcdIncomplete)
	rcancel()
	if err != nil {
		cancel()
		cli.Close()
		return nil, fmt.Errorf("etcd store at %s does not answer: %w (check store.endpoints, that a quorum of members is up, and store.ca_file, cert_file and key_file)", strings.Join(c.Endpoints, ", "), err)
	}
	if len(resp.Kvs) > 0 && !o.allowIncomplete {
		cancel()
		cli.Close()
		return nil, fmt.Errorf("etcd store at %s, prefix %s: %w", strings.Join(c.Endpoints, ", "), c.Prefix, ErrIncomplete)
	}
	s.version.Store(uint64(resp.Header.Revision))
	s.watchDone = make(chan struct{})
	go s.watch(resp.Header.Revision)
	return s, nil
}

// Version implements Store. It is the highest etcd revision at which this
// client saw a change under the prefix: it grows with each write this
// client commits (when the write returns) and, through a watch, within
// moments of every write other flint instances commit. Reads and failed
// writes leave it alone.
func (s *Etcd) Version() uint64 { return s.version.Load() }

// seen raises Version to rev.
func (s *Etcd) seen(rev int64) {
	for {
		v := s.version.Load()
		if uint64(rev) <= v || s.version.CompareAndSwap(v, uint64(rev)) {
			return
		}
	}
}

// watch follows the changes under the prefix from revision from on, until
// Close. A watch cut off (compaction, a member restart) starts again at the
// current revision: Version only has to grow.
func (s *Etcd) watch(from int64) {
	defer close(s.watchDone)
	for s.ctx.Err() == nil {
		wch := s.cli.Watch(clientv3.WithRequireLeader(s.ctx), s.prefix, clientv3.WithPrefix(), clientv3.WithRev(from+1))
		for resp := range wch {
			for _, ev := range resp.Events {
				s.seen(ev.Kv.ModRevision)
				from = max(from, ev.Kv.ModRevision)
			}
			if resp.Err() != nil {
				from = max(from, resp.Header.Revision, resp.CompactRevision)
				s.seen(from)
			}
		}
		select {
		case <-s.ctx.Done():
		case <-time.After(time.Second): // etcd unreachable or leaderless: try again
		}
	}
}

// Close implements Store. Operations in flight get a second to finish, then
// are cancelled; later ones return ErrClosed.
func (s *Etcd) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	s.closeMu.Unlock()
	done := make(chan struct{})
	go func() { s.ops.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		s.cancel()
		<-done
	}
	s.cancel()
	<-s.watchDone
	s.probes.Wait()
	return s.cli.Close()
}

// begin registers an operation; it fails with ErrClosed after Close.
func (s *Etcd) begin() (context.Context, func(), error) {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return nil, nil, ErrClosed
	}
	if s.down.Load() {
		return nil, nil, s.downError()
	}
	s.ops.Add(1)
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	return ctx, func() { cancel(); s.ops.Done() }, nil
}

// fail says what an etcd error means for the operator.
func (s *Etcd) fail(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if s.ctx.Err() != nil {
		return fmt.Errorf("%w: %v", ErrClosed, err)
	}
	if ctx.Err() != nil {
		s.markDown()
		return fmt.Errorf("etcd store at %s did not answer within %v: %w (check that a quorum of etcd members is up and reachable)", strings.Join(s.endpoints, ", "), s.timeout, err)
	}
	if status.Code(err) == codes.Unavailable {
		// A member that went away closed the connection (or has no leader):
		// the same trouble as no answer, found sooner (and fast: no need
		// to fail the next ones fast; the client tries another member).
		return fmt.Errorf("etcd store at %s is unavailable: %w (check that a quorum of etcd members is up and reachable)", strings.Join(s.endpoints, ", "), err)
	}
	return fmt.Errorf("etcd store: %w", err)
}

// get reads one key (linearizable); nil when absent.
func (s *Etcd) get(key string) ([]byte, error) {
	ctx, end, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer end()
	resp, err := s.cli.Get(ctx, s.prefix+key)
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return resp.Kvs[0].Value, nil
}

// list calls fn for every key under prefix (relative to the store's), in
// key order, reading pageSize keys per request at one revision.
func (s *Etcd) list(prefix string, fn func(key string, v []byte) error) error {
	ctx, end, err := s.begin()
	if err != nil {
		return err
	}
	defer end()
	from, stop := s.prefix+prefix, clientv3.GetPrefixRangeEnd(s.prefix+prefix)
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(stop), clientv3.WithLimit(pageSize)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, from, opts...)
		if err != nil {
			return s.fail(ctx, err)
		}
		rev = resp.Header.Revision
		for _, kv := range resp.Kvs {
			if err := fn(strings.TrimPrefix(string(kv.Key), s.prefix), kv.Value); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
