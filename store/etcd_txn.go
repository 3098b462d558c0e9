package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// errTooBig: a transaction would exceed maxTxnOps; the caller splits it.
var errTooBig = errors.New("transaction too large for etcd")

// update runs fn on a fresh snapshot and commits what it wrote in one
// transaction, if nothing it read changed meanwhile; otherwise it runs fn
// again. An error from fn commits nothing.
func (s *Etcd) update(fn func(t *etx) error) error {
	ctx, end, err := s.begin()
	if err != nil {
		return err
	}
	defer end()
	for attempt := 0; ; attempt++ {
		t := &etx{s: s, ctx: ctx, revs: map[string]int64{}, vals: map[string][]byte{}, puts: map[string][]byte{}, dels: map[string]bool{}}
		if err := fn(t); err != nil {
			if !t.etcdErr {
				return err
			}
			if !errors.Is(err, rpctypes.ErrCompacted) {
				return s.fail(ctx, err)
			}
			// The snapshot was compacted away between two reads: start over.
		} else {
			ok, err := t.commit()
			if err != nil {
				return s.fail(ctx, err)
			}
			if ok {
				return nil
			}
		}
		// Another writer changed what we read: back off a little, with
		// jitter so that contenders spread out, and read again.
		wait := time.Duration(rand.Int64N(int64(min(attempt+1, 20)) * int64(time.Millisecond)))
		select {
		case <-ctx.Done():
			return s.fail(ctx, fmt.Errorf("gave up after %d conflicting attempts: %w", attempt+1, ctx.Err()))
		case <-time.After(wait):
		}
	}
}

// updateInChunks commits items [0, n) in as few transactions as etcd's
// limits allow, each like update: fn applies items [i, j) to t. It starts
// with first items per transaction and halves one that is too large.
func (s *Etcd) updateInChunks(n, first int, fn func(t *etx, i, j int) error) error {
	for i := 0; i < n; {
		size := min(n-i, first)
		for {
			j := i + size
			err := s.update(func(t *etx) error {
				if err := fn(t, i, j); err != nil {
					return err
				}
				if size > 1 && t.tooBig() {
					return errTooBig
				}
				return nil
			})
			if errors.Is(err, errTooBig) {
				size = (size + 1) / 2
				continue
			}
			if err != nil {
				return err
			}
			i = j
			break
		}
	}
	return nil
}

// etx is one transaction being built: reads at one snapshot revision, with
// the writes so far laid over them.
type etx struct {
	s    *Etcd
	ctx  context.Context
	snap int64 // revision of the first read; later reads use it

	revs map[string]int64  // keys read -> mod revision (0: absent), compared at commit
	vals map[string][]byte // view of read keys (nil: absent)
	puts map[string][]byte // keys written
	dels map[string]bool   // keys deleted
	rngs [][2]string       // ranges [from, to) deleted

	etcdErr bool // an error came from etcd, not from the caller's fn
}

func (t *etx) failed(err error) error { t.etcdErr = true; return err }

// prefetch reads the keys not read yet, in one round trip (at most
// maxTxnOps at a time).
func (t *etx) prefetch(keys ...string) error {
	var need []string
	for _, k := range keys {
		if _, ok := t.revs[k]; !ok && !t.written(k) && !slices.Contains(need, k) {
			need = append(need, k)
		}
	}
	for len(need) > 0 {
		n := min(len(need), maxTxnOps)
		ops := make([]clientv3.Op, n)
		for i, k := range need[:n] {
			ops[i] = clientv3.OpGet(t.s.prefix+k, t.revOpt()...)
		}
		resp, err := t.s.cli.Txn(t.ctx).Then(ops...).Commit()
		if err != nil {
			return t.failed(err)
		}
		if t.snap == 0 {
			t.snap = resp.Header.Revision
		}
		for i, k := range need[:n] {
			r := resp.Responses[i].GetResponseRange()
			t.revs[k], t.vals[k] = 0, nil
			if r != nil && len(r.Kvs) > 0 {
				t.revs[k], t.vals[k] = r.Kvs[0].ModRevision, r.Kvs[0].Value
			}
		}
		need = need[n:]
	}
	return nil
}

func (t *etx) revOpt() []clientv3.OpOption {
	if t.snap == 0 {
		return nil
	}
	return []clientv3.OpOption{clientv3.WithRev(t.snap)}
}

// written reports whether this transaction wrote or deleted key.
func (t *etx) written(key string) bool {
	if _, ok := t.puts[key]; ok {
		return true
	}
	return t.dels[key] || t.inRange(key)
}

func (t *etx) inRange(key string) bool {
	for _, r := range t.rngs {
		if key >= r[0] && key < r[1] {
			return true
		}
	}
	return false
}

// get returns key's value as this transaction sees it; nil when absent.
func (t *etx) get(key string) ([]byte, error) {
	if v, ok := t.puts[key]; ok {
		return v, nil
	}
	if t.dels[key] || t.inRange(key) {
		return nil, nil
	}
	if err := t.prefetch(key); err != nil {
		return nil, err
	}
	return t.vals[key], nil
}

func (t *etx) put(key string, v []byte) {
	delete(t.dels, key)
	t.puts[key] = v
}

func (t *etx) del(key string) {
	delete(t.puts, key)
	t.dels[key] = true
}

// delRange deletes [from, to), and what this transaction put there.
func (t *etx) delRange(from, to string) {
	for k := range t.puts {
		if k >= from && k < to {
			delete(t.puts, k)
		}
	}
	for k := range t.dels {
		if k >= from && k < to {
			delete(t.dels, k)
		}
	}
	t.rngs = append(t.rngs, [2]string{from, to})
}

// keys returns up to n keys under prefix in key order as this transaction
// sees them (keys only). Callers guard the range with a key they read
// first (see Etcd), so the snapshot read here is consistent with it.
func (t *etx) keys(prefix string, n int) ([]string, error) {
	if t.snap == 0 {
		return nil, t.failed(errors.New("internal error: a range read before any guarding key"))
	}
	end := clientv3.GetPrefixRangeEnd(prefix)
	// Read enough to make up for what this transaction deleted there.
	extra := 0
	for k := range t.dels {
		if k >= prefix && k < end {
			extra++
		}
	}
	from := prefix
	var out []string
	for len(out) < n {
		resp, err := t.s.cli.Get(t.ctx, t.s.prefix+from, clientv3.WithRange(t.s.prefix+end), clientv3.WithKeysOnly(), clientv3.WithLimit(int64(n+extra)), clientv3.WithRev(t.snap))
		if err != nil {
			return nil, t.failed(err)
		}
		for _, kv := range resp.Kvs {
			k := strings.TrimPrefix(string(kv.Key), t.s.prefix)
			if !t.dels[k] && !t.inRange(k) {
				out = append(out, k)
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = strings.TrimPrefix(string(resp.Kvs[len(resp.Kvs)-1].Key), t.s.prefix) + "\x00"
	}
	for k := range t.puts {
		if k >= prefix && k < end && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	if len(out) > n {
		out = out[:n]
	}
	return out, nil
}

// count is the number of keys under prefix at the snapshot, plus those this
// transaction put there (deletes are not subtracted: callers use it for an
// upper bound).
func (t *etx) count(prefix string) (int, error) {
	if t.snap == 0 {
		return 0, t.failed(errors.New("internal error: a count before any guarding key"))
	}
	resp, err := t.s.cli.Get(t.ctx, t.s.prefix+prefix, clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithRev(t.snap))
	if err != nil {
		return 0, t.failed(err)
	}
	n := int(resp.Count)
	for k := range t.puts {
		if strings.HasPrefix(k, prefix) {
			n++
		}
	}
	return n, nil
}

// ops builds the transaction's operations. etcd refuses a put inside a
// range deleted in the same transaction, so ranges are cut around puts.
func (t *etx) ops() []clientv3.Op {
	var ops []clientv3.Op
	putKeys := make([]string, 0, len(t.puts))
	for k := range t.puts {
		putKeys = append(putKeys, k)
	}
	slices.Sort(putKeys)
	for _, k := range putKeys {
		ops = append(ops, clientv3.OpPut(t.s.prefix+k, string(t.puts[k])))
	}
	for k := range t.dels {
		if !t.inRange(k) {
			ops = append(ops, clientv3.OpDelete(t.s.prefix+k))
		}
	}
	for _, r := range mergeRanges(t.rngs) {
		from := r[0]
		for _, k := range putKeys {
			if k >= from && k < r[1] {
				if k > from {
					ops = append(ops, clientv3.OpDelete(t.s.prefix+from, clientv3.WithRange(t.s.prefix+k)))
				}
				from = k + "\x00"
			}
		}
		if from < r[1] {
			ops = append(ops, clientv3.OpDelete(t.s.prefix+from, clientv3.WithRange(t.s.prefix+r[1])))
		}
	}
	return ops
}

// tooBig reports whether the commit would pass etcd's limit on operations
// (or on compares, one per key read) in one transaction.
func (t *etx) tooBig() bool { return len(t.ops()) > maxTxnOps || len(t.revs) > maxTxnOps }

// commit sends the writes, guarded by the mod revisions of what was read;
// false means something read changed (nothing was written).
func (t *etx) commit() (bool, error) {
	ops := t.ops()
	if len(ops) == 0 {
		return true, nil
	}
	cmps := make([]clientv3.Cmp, 0, len(t.revs))
	for k, rev := range t.revs {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(t.s.prefix+k), "=", rev))
	}
	resp, err := t.s.cli.Txn(t.ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return false, err
	}
	if resp.Succeeded {
		t.s.seen(resp.Header.Revision)
	}
	return resp.Succeeded, nil
}

func mergeRanges(rs [][2]string) [][2]string {
	if len(rs) < 2 {
		return rs
	}
	sorted := slices.Clone(rs)
	slices.SortFunc(sorted, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	out := [][2]string{sorted[0]}
	for _, r := range sorted[1:] {
		last := &out[len(out)-1]
		if r[0] <= last[1] {
			last[1] = max(last[1], r[1])
			continue
		}
		out = append(out, r)
	}
	return out
}
