package store

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

var _ Porter = (*Etcd)(nil)

// etcdIncomplete marks a Load that has not been completed (see Porter).
const etcdIncomplete = "incomplete"

// etcdStatePrefixes are the key families of the state a dump holds; Load
// deletes exactly these (and the single keys below) under the prefix, and
// leaves anything else there (the PKI, DHCP claims) alone.
var etcdStatePrefixes = []string{"leases/", "machines/", "known/", etcdDiscoveredPrefix, "events/"}

// Dump implements Porter. Every key is read at one etcd revision, so the
// dump is one consistent state even while other instances write.
func (s *Etcd) Dump(ctx context.Context, w io.Writer) (Summary, error) {
	d := newDumpWriter(ctx, w)
	if err := d.header(); err != nil {
		return Summary{}, err
	}
	rctx, cancel := context.WithTimeout(ctx, s.timeout)
	resp, err := s.cli.Get(rctx, s.prefix+etcdRebuild)
	cancel()
	if err != nil {
		return Summary{}, s.fail(rctx, err)
	}
	rev := resp.Header.Revision
	var rebuild string
	if len(resp.Kvs) > 0 {
		rebuild = string(resp.Kvs[0].Value)
	}
	// Leases are keyed by their address as text: sorted by IP here.
	var leases []Lease
	err = s.listAt(ctx, rev, "leases/", func(k string, v []byte) error {
		var l Lease
		if err := json.Unmarshal(v, &l); err != nil {
			return fmt.Errorf("lease %s is corrupt: %w", k, err)
		}
		leases = append(leases, l)
		return nil
	})
	if err != nil {
		return Summary{}, err
	}
	slices.SortFunc(leases, func(a, b Lease) int { return a.IP.Compare(b.IP) })
	for _, l := range leases {
		if err := d.lease(l); err != nil {
			return Summary{}, err
		}
	}
	err = s.listAt(ctx, rev, "machines/", func(k string, v []byte) error {
		var m Machine
		if err := json.Unmarshal(v, &m); err != nil {
			return fmt.Errorf("machine record %s is corrupt: %w", k, err)
		}
		return d.machine(m)
	})
	if err != nil {
		return Summary{}, err
	}
	// events/<mac> is the sequence, events/<mac>/<time>.<seq> an entry: in
	// key order, each MAC's entries oldest first.
	err = s.listAt(ctx, rev, "events/", func(k string, v []byte) error {
		if !strings.Contains(strings.TrimPrefix(k, "events/"), "/") {
			return nil
		}
		var e Event
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("event %s is corrupt: %w", k, err)
		}
		return d.event(e)
	})
	if err != nil {
		return Summary{}, err
	}
	return d.finish(rebuild)
}

// listAt calls fn for every key under prefix (relative to the store's) at
// revision rev, in key order, pageSize keys per request.
func (s *Etcd) listAt(ctx context.Context, rev int64, prefix string, fn func(key string, v []byte) error) error {
	from, stop := s.prefix+prefix, clientv3.GetPrefixRangeEnd(s.prefix+prefix)
	for {
		rctx, cancel := context.WithTimeout(ctx, s.timeout)
		resp, err := s.cli.Get(rctx, from, clientv3.WithRange(stop), clientv3.WithLimit(pageSize), clientv3.WithRev(rev))
		cancel()
		if err != nil {
			return s.fail(rctx, err)
		}
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

// Incomplete implements Porter.
func (s *Etcd) Incomplete() (bool, error) {
	v, err := s.get(etcdIncomplete)
	return v != nil, err
}

// Complete implements Porter.
func (s *Etcd) Complete() error {
	return s.txnOps(s.ctx, []clientv3.Op{clientv3.OpDelete(s.prefix + etcdIncomplete)})
}

// txnOps commits ops in one etcd transaction.
func (s *Etcd) txnOps(ctx context.Context, ops []clientv3.Op) error {
	tctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if _, err := s.cli.Txn(tctx).Then(ops...).Commit(); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return s.fail(tctx, err)
	}
	return nil
}

// Load implements Porter. It writes the records as they are in the dump,
// with the index keys and timeline sequences they imply, in transactions
// of up to maxTxnOps puts; nothing is evicted or trimmed.
func (s *Etcd) Load(ctx context.Context, r io.Reader, progress func(Counts)) (Summary, error) {
	// First transaction: the old state goes and the mark comes, together.
	first := []clientv3.Op{
		clientv3.OpDelete(s.prefix + etcdDiscoveredCount),
		clientv3.OpDelete(s.prefix + etcdRebuild),
		clientv3.OpPut(s.prefix+etcdIncomplete, string(incompleteMark())),
	}
	for _, p := range etcdStatePrefixes {
		first = append(first, clientv3.OpDelete(s.prefix+p, clientv3.WithPrefix()))
	}
	if err := s.txnOps(ctx, first); err != nil {
		return Summary{}, err
	}
	var (
		ops        []clientv3.Op
		pending    Counts // in ops, not yet committed
		done       Counts
		discovered int
		seqMAC     string // the timeline being loaded
		seq        uint64
	)
	put := func(k string, v []byte) { ops = append(ops, clientv3.OpPut(s.prefix+k, string(v))) }
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		if err := s.txnOps(ctx, ops); err != nil {
			return err
		}
		ops = ops[:0]
		done.Leases += pending.Leases
		done.Machines += pending.Machines
		done.Events += pending.Events
		pending = Counts{}
		if progress != nil {
			progress(done)
		}
		return nil
	}
	endTimeline := func() {
		if seqMAC != "" {
			put(etcdSeqKey(seqMAC), []byte(strconv.FormatUint(seq, 10)))
		}
		seqMAC, seq = "", 0
	}
	dr := newDumpReader(ctx, r)
	for {
		l, err := dr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Summary{}, err
		}
		if l.Event == nil || l.Event.MAC != seqMAC {
			endTimeline()
		}
		switch {
		case l.Lease != nil:
			v, err := json.Marshal(l.Lease)
			if err != nil {
				return Summary{}, err
			}
			put(etcdLeaseKey(l.Lease.IP), v)
			pending.Leases++
		case l.Machine != nil:
			m := l.Machine
			v, err := json.Marshal(m)
			if err != nil {
				return Summary{}, err
			}
			put(etcdMachineKey(m.MAC), v)
			if m.Known {
				put(etcdKnownKey(m.MAC), []byte("1"))
			} else {
				put(etcdDiscoveredKey(m), []byte("1"))
				discovered++
			}
			pending.Machines++
		case l.Event != nil:
			e := l.Event
			v, err := json.Marshal(e)
			if err != nil {
				return Summary{}, err
			}
			seqMAC = e.MAC
			seq++
			put(fmt.Sprintf("%s%016x.%016x", etcdEventsPrefix(e.MAC), uint64(e.At.UnixNano()), seq), v)
			pending.Events++
		case l.Rebuild != "":
			put(etcdRebuild, []byte(l.Rebuild))
		}
		if len(ops) >= maxTxnOps-4 {
			if err := flush(); err != nil {
				return Summary{}, err
			}
		}
	}
	endTimeline()
	put(etcdDiscoveredCount, []byte(strconv.Itoa(discovered)))
	if err := flush(); err != nil {
		return Summary{}, err
	}
	return dr.sum, nil
}
