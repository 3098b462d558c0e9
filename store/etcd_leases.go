package store

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
)

func etcdLeaseKey(ip netip.Addr) string { return "leases/" + ip.String() }

// PutLease implements Store.
func (s *Etcd) PutLease(l Lease) error {
	if !l.IP.Is4() {
		return fmt.Errorf("lease without an IPv4 address")
	}
	v, err := json.Marshal(l)
	if err != nil {
		return err
	}
	return s.update(func(t *etx) error {
		t.put(etcdLeaseKey(l.IP), v)
		return nil
	})
}

// DeleteLease implements Store.
func (s *Etcd) DeleteLease(ip netip.Addr) error {
	if !ip.Is4() {
		return nil
	}
	return s.update(func(t *etx) error {
		t.del(etcdLeaseKey(ip))
		return nil
	})
}

// Leases implements Store: a listing for the admin API, ordered by IP.
func (s *Etcd) Leases() ([]Lease, error) {
	var out []Lease
	err := s.list("leases/", func(k string, v []byte) error {
		var l Lease
		if err := json.Unmarshal(v, &l); err != nil {
			return fmt.Errorf("lease %s is corrupt: %w", k, err)
		}
		out = append(out, l)
		return nil
	})
	slices.SortFunc(out, func(a, b Lease) int { return a.IP.Compare(b.IP) })
	return out, err
}

// Lease implements Store.
func (s *Etcd) Lease(ip netip.Addr) (Lease, bool, error) {
	var l Lease
	ip = ip.Unmap()
	if !ip.Is4() {
		return l, false, nil
	}
	v, err := s.get(etcdLeaseKey(ip))
	if err != nil || v == nil {
		return l, false, err
	}
	if err := json.Unmarshal(v, &l); err != nil {
		return l, false, fmt.Errorf("lease %s is corrupt: %w", ip, err)
	}
	return l, true, nil
}
