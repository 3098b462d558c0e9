package pki

import (
	"context"
	"errors"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// resealBatch bounds the keys one re-seal transaction rewrites (etcd's
// default --max-txn-ops is 128).
const resealBatch = 100

// Reseal seals every value of the PKI in etcd under prefix + "pki/" again
// with newKey (flint store reseal), so that the store's encryption key can
// change. A value that opens with oldKey is sealed anew; one that already
// opens with newKey (a re-seal that stopped half-way) is left as it is; one
// that opens with neither stops it, naming the key. Values are rewritten in
// transactions of at most resealBatch keys, each committing only if none of
// its keys changed since it was read: a flint instance writing meanwhile
// makes it fail instead of losing that write, and the next run completes
// it. Every flint instance on the store must be stopped first: those still
// holding the old key could not open what was re-sealed.
func Reseal(ctx context.Context, cli *clientv3.Client, prefix string, oldKey, newKey []byte) (resealed, already int, err error) {
	from, err := EtcdStorage(cli, prefix, oldKey)
	if err != nil {
		return 0, 0, err
	}
	to, err := EtcdStorage(cli, prefix, newKey)
	if err != nil {
		return 0, 0, err
	}
	old, next := from.(*etcdStorage), to.(*etcdStorage)
	rctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	resp, err := cli.Get(rctx, old.prefix, clientv3.WithPrefix())
	cancel()
	if err != nil {
		return 0, 0, fmt.Errorf("pki: read etcd %s: %w (is the etcd store reachable? check store.endpoints)", old.prefix, err)
	}
	var cmps []clientv3.Cmp
	var puts []clientv3.Op
	commit := func() error {
		if len(puts) == 0 {
			return nil
		}
		cctx, cancel := context.WithTimeout(ctx, etcdTimeout)
		defer cancel()
		r, err := cli.Txn(cctx).If(cmps...).Then(puts...).Commit()
		if err != nil {
			return fmt.Errorf("pki: write the re-sealed values: %w (is the etcd store reachable?)", err)
		}
		if !r.Succeeded {
			return fmt.Errorf("pki: a value under etcd %s changed during the re-seal: stop every flint instance on this store and run it again (what was re-sealed stays so)", old.prefix)
		}
		resealed += len(puts)
		cmps, puts = cmps[:0], puts[:0]
		return nil
	}
	for _, kv := range resp.Kvs {
		if err := ctx.Err(); err != nil {
			return resealed, already, err
		}
		k := string(kv.Key)
		data, oerr := old.open(k, kv.Value)
		if oerr != nil {
			if _, nerr := next.open(k, kv.Value); nerr == nil {
				already++
				continue
			}
			return resealed, already, fmt.Errorf("pki: etcd key %s opens neither with the current store.encryption_key_file nor with the new key: nothing after it was re-sealed; restore it from a backup, or check that the config names the key the instances used (%w)", k, errors.Unwrap(oerr))
		}
		sealed, err := next.seal(k, data)
		if err != nil {
			return resealed, already, err
		}
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", kv.ModRevision))
		puts = append(puts, clientv3.OpPut(k, string(sealed)))
		if len(puts) == resealBatch {
			if err := commit(); err != nil {
				return resealed, already, err
			}
		}
	}
	return resealed, already, commit()
}
