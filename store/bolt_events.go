package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// putEvent adds e to its machine's timeline bucket (keyed by time, then a
// sequence that keeps events of the same instant in order) and returns the
// bucket and the sequence.
func putEvent(tx *bolt.Tx, e Event) (*bolt.Bucket, uint64, error) {
	mb, err := tx.Bucket(bucketEvents).CreateBucketIfNotExists([]byte(e.MAC))
	if err != nil {
		return nil, 0, err
	}
	seq, err := mb.NextSequence()
	if err != nil {
		return nil, 0, err
	}
	key := make([]byte, 16)
	binary.BigEndian.PutUint64(key[:8], uint64(e.At.UnixNano()))
	binary.BigEndian.PutUint64(key[8:], seq)
	v, err := json.Marshal(e)
	if err != nil {
		return nil, 0, err
	}
	return mb, seq, mb.Put(key, v)
}

// appendEvent adds e to its machine's timeline, bounded by Limits.Events.
func (s *Bolt) appendEvent(tx *bolt.Tx, e Event) error {
	mb, seq, err := putEvent(tx, e)
	if err != nil {
		return err
	}
	// Trim the oldest entries so a machine that reboots for years stays small.
	// Counting walks the bucket, so do it every 64 appends, not on each one.
	if seq%64 != 0 {
		return nil
	}
	extra := mb.Stats().KeyN - s.limits.Events
	c := mb.Cursor()
	for k, _ := c.First(); k != nil && extra > 0; k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return err
		}
		extra--
	}
	return nil
}

func deleteEvents(tx *bolt.Tx, mac string) error {
	b := tx.Bucket(bucketEvents)
	if b.Bucket([]byte(mac)) == nil {
		return nil
	}
	return b.DeleteBucket([]byte(mac))
}

// Events implements Store.
func (s *Bolt) Events(mac string) ([]Event, error) {
	var out []Event
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		if b == nil {
			return nil
		}
		mb := b.Bucket([]byte(mac))
		if mb == nil {
			return nil
		}
		return mb.ForEach(func(k, v []byte) error {
			var e Event
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("event %x of %s is corrupt: %w", k, mac, err)
			}
			out = append(out, e)
			return nil
		})
	})
	return out, err
}
