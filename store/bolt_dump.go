package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	bolt "go.etcd.io/bbolt"
)

var _ Porter = (*Bolt)(nil)

// boltLoadBatch is how many dump lines one transaction of Load commits.
const boltLoadBatch = 2000

// Dump implements Porter: one read transaction, so a consistent state.
func (s *Bolt) Dump(ctx context.Context, w io.Writer) (Summary, error) {
	d := newDumpWriter(ctx, w)
	if err := d.header(); err != nil {
		return Summary{}, err
	}
	var rebuild string
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketLeases); b != nil {
			err := b.ForEach(func(k, v []byte) error {
				var l Lease
				if err := json.Unmarshal(v, &l); err != nil {
					return fmt.Errorf("lease %v is corrupt: %w", k, err)
				}
				return d.lease(l)
			})
			if err != nil {
				return err
			}
		}
		if b := tx.Bucket(bucketMachines); b != nil {
			err := b.ForEach(func(k, v []byte) error {
				var m Machine
				if err := json.Unmarshal(v, &m); err != nil {
					return fmt.Errorf("machine record %s is corrupt: %w", k, err)
				}
				return d.machine(m)
			})
			if err != nil {
				return err
			}
		}
		if b := tx.Bucket(bucketEvents); b != nil {
			err := b.ForEach(func(mac, v []byte) error {
				mb := b.Bucket(mac)
				if v != nil || mb == nil {
					return nil
				}
				return mb.ForEach(func(k, v []byte) error {
					var e Event
					if err := json.Unmarshal(v, &e); err != nil {
						return fmt.Errorf("event %x of %s is corrupt: %w", k, mac, err)
					}
					return d.event(e)
				})
			})
			if err != nil {
				return err
			}
		}
		if b := tx.Bucket(bucketMeta); b != nil {
			rebuild = string(b.Get(metaRebuild))
		}
		return nil
	})
	if err != nil {
		return Summary{}, err
	}
	return d.finish(rebuild)
}

// Incomplete implements Porter.
func (s *Bolt) Incomplete() (bool, error) {
	inc := false
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketMeta); b != nil {
			inc = b.Get(metaIncomplete) != nil
		}
		return nil
	})
	return inc, err
}

// Complete implements Porter.
func (s *Bolt) Complete() error {
	return s.write(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(metaIncomplete) })
}

// Load implements Porter. It writes the records as they are in the dump
// and rebuilds the indexes from them; nothing is evicted or trimmed.
func (s *Bolt) Load(ctx context.Context, r io.Reader, progress func(Counts)) (Summary, error) {
	// First commit: the old state goes and the mark comes, together.
	err := s.write(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketLeases, bucketMachines, bucketEvents, bucketDiscovered, bucketKnown} {
			if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
				return err
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		for _, k := range [][]byte{metaRebuild, metaDiscovered} {
			if err := meta.Delete(k); err != nil {
				return err
			}
		}
		return meta.Put(metaIncomplete, incompleteMark())
	})
	if err != nil {
		return Summary{}, err
	}
	dr := newDumpReader(ctx, r)
	var (
		discovered uint64
		batch      []dumpLine
		done       Counts
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := s.write(func(tx *bolt.Tx) error {
			n := discovered
			for _, l := range batch {
				if err := loadBoltLine(tx, l, &n); err != nil {
					return err
				}
			}
			discovered = n
			return nil
		})
		if err != nil {
			return err
		}
		for _, l := range batch {
			switch {
			case l.Lease != nil:
				done.Leases++
			case l.Machine != nil:
				done.Machines++
			case l.Event != nil:
				done.Events++
			}
		}
		batch = batch[:0]
		if progress != nil {
			progress(done)
		}
		return nil
	}
	for {
		l, err := dr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Summary{}, err
		}
		if l.Dump != nil {
			continue
		}
		batch = append(batch, l)
		if len(batch) >= boltLoadBatch {
			if err := flush(); err != nil {
				return Summary{}, err
			}
		}
	}
	if err := flush(); err != nil {
		return Summary{}, err
	}
	err = s.write(func(tx *bolt.Tx) error { return setDiscoveredCount(tx, discovered) })
	return dr.sum, err
}

// loadBoltLine writes one record of a dump and its index entries; n counts
// the discovered records.
func loadBoltLine(tx *bolt.Tx, l dumpLine, n *uint64) error {
	switch {
	case l.Lease != nil:
		v, err := json.Marshal(l.Lease)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketLeases).Put(leaseKey(l.Lease.IP), v)
	case l.Machine != nil:
		m := l.Machine
		v, err := json.Marshal(m)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketMachines).Put([]byte(m.MAC), v); err != nil {
			return err
		}
		if m.Known {
			return tx.Bucket(bucketKnown).Put([]byte(m.MAC), nil)
		}
		*n++
		return tx.Bucket(bucketDiscovered).Put(discoveredKey(m), nil)
	case l.Event != nil:
		_, _, err := putEvent(tx, *l.Event) // as dumped: never trimmed
		return err
	case l.Rebuild != "":
		return tx.Bucket(bucketMeta).Put(metaRebuild, []byte(l.Rebuild))
	}
	return nil
}
