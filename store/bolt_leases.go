package store

import (
	"encoding/json"
	"fmt"
	"net/netip"

	bolt "go.etcd.io/bbolt"
)

func leaseKey(ip netip.Addr) []byte { b := ip.As4(); return b[:] }

// PutLease implements Store.
func (s *Bolt) PutLease(l Lease) error {
	if !l.IP.Is4() {
		return fmt.Errorf("lease without an IPv4 address")
	}
	v, err := json.Marshal(l)
	if err != nil {
		return err
	}
	return s.write(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLeases).Put(leaseKey(l.IP), v)
	})
}

// DeleteLease implements Store.
func (s *Bolt) DeleteLease(ip netip.Addr) error {
	if !ip.Is4() {
		return nil
	}
	return s.write(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLeases).Delete(leaseKey(ip))
	})
}

// Leases implements Store.
func (s *Bolt) Leases() ([]Lease, error) {
	var out []Lease
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLeases)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var l Lease
			if err := json.Unmarshal(v, &l); err != nil {
				return fmt.Errorf("lease %v is corrupt: %w", k, err)
			}
			out = append(out, l)
			return nil
		})
	})
	return out, err
}

// Lease implements Store.
func (s *Bolt) Lease(ip netip.Addr) (Lease, bool, error) {
	var l Lease
	found := false
	if !ip.Unmap().Is4() {
		return l, false, nil
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLeases)
		if b == nil {
			return nil
		}
		v := b.Get(leaseKey(ip.Unmap()))
		if v == nil {
			return nil
		}
		found = true
		if err := json.Unmarshal(v, &l); err != nil {
			return fmt.Errorf("lease %s is corrupt: %w", ip, err)
		}
		return nil
	})
	return l, found && err == nil, err
}
