package dhcp

import (
	"net/netip"

	"github.com/flint-boot/flint/store"
)

// Lease implements store.Store.
func (m *memStore) Lease(ip netip.Addr) (store.Lease, bool, error) {
	l, ok := m.lease(ip)
	return l, ok, nil
}

// Machine implements store.Store (records are not kept by these tests).
func (m *memStore) Machine(mac string) (store.Machine, bool, error) {
	return store.Machine{}, false, nil
}

// ClaimRebuild and ReleaseRebuild implement store.Store (lifecycle is not the DHCP server's business).
func (m *memStore) ClaimRebuild(mac string, fn func(*store.Machine) error) (store.Machine, error) {
	return m.UpdateMachine(mac, fn)
}

func (m *memStore) ReleaseRebuild(mac string, fn func(*store.Machine) error) (store.Machine, error) {
	return m.UpdateMachine(mac, fn)
}

// Record implements store.Store.
func (m *memStore) Record(s store.Sighting, fn func(*store.Machine) error) (store.Machine, error) {
	if err := m.RecordSighting(s); err != nil {
		return store.Machine{}, err
	}
	if fn == nil {
		return store.Machine{MAC: s.MAC}, nil
	}
	return m.UpdateMachine(s.MAC, fn)
}

// RecordSightings implements store.Store.
func (m *memStore) RecordSightings(ss []store.Sighting) error {
	for _, s := range ss {
		if err := m.RecordSighting(s); err != nil {
			return err
		}
	}
	return nil
}
