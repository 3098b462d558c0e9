package store

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// syncChunk bounds the machines one SyncConfig transaction handles.
const syncChunk = 25

// SyncConfig implements Store. Like Bolt's it reads only the config's
// machines and those the known index lists; it commits in transactions of
// up to syncChunk machines (updateInChunks), each guarded like any other
// write.
func (s *Etcd) SyncConfig(known []KnownMachine) error {
	byMAC := make(map[string]bool, len(known))
	for _, k := range known {
		byMAC[k.MAC] = true
	}
	var gone []string
	err := s.list("known/", func(k string, _ []byte) error {
		if mac := strings.TrimPrefix(k, "known/"); !byMAC[mac] {
			gone = append(gone, mac)
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = s.updateInChunks(len(gone), syncChunk, func(t *etx, i, j int) error {
		var keys []string
		for _, mac := range gone[i:j] {
			keys = append(keys, etcdMachineKey(mac), etcdKnownKey(mac))
		}
		if err := t.prefetch(keys...); err != nil {
			return err
		}
		for _, mac := range gone[i:j] {
			m, ok, err := s.getMachine(t, mac)
			if err != nil {
				return err
			}
			if !ok {
				t.del(etcdKnownKey(mac))
				continue
			}
			wasKnown := m.Known
			m.Known, m.Hostname, m.Role, m.ReservedIP = false, "", "", netip.Addr{}
			if m.State != StateDiscovered {
				m.State, m.StateChanged = StateDiscovered, time.Now()
			}
			// Forget what only a machine of the config may hold.
			m.Boot, m.Rebuilding, m.EtcdRejoin = Boot{}, false, false
			if err := s.putMachine(t, &m, true, wasKnown); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return s.updateInChunks(len(known), syncChunk, func(t *etx, i, j int) error {
		var keys []string
		for _, k := range known[i:j] {
			keys = append(keys, etcdMachineKey(k.MAC))
		}
		if err := t.prefetch(keys...); err != nil {
			return err
		}
		for _, k := range known[i:j] {
			m, existed, err := s.getMachine(t, k.MAC)
			if err != nil {
				return err
			}
			wasKnown := existed && m.Known
			if !markKnown(&m, existed, wasKnown, k, time.Now()) {
				continue // unchanged
			}
			if err := s.putMachine(t, &m, existed, wasKnown); err != nil {
				return err
			}
		}
		return nil
	})
}

// UpdateMachine implements Store.
func (s *Etcd) UpdateMachine(mac string, fn func(m *Machine) error) (Machine, error) {
	var out Machine
	err := s.update(func(t *etx) error {
		m, existed, err := s.getMachine(t, mac)
		if err != nil {
			return err
		}
		if !existed {
			m = Machine{MAC: mac}
		}
		wasKnown := m.Known
		if err := fn(&m); err != nil {
			return err
		}
		out = m
		return s.putMachine(t, &m, existed, wasKnown)
	})
	return out, err
}

// ClaimRebuild implements Store.
func (s *Etcd) ClaimRebuild(mac string, fn func(m *Machine) error) (Machine, error) {
	var out Machine
	err := s.update(func(t *etx) error {
		if err := t.prefetch(etcdRebuild, etcdMachineKey(mac)); err != nil {
			return err
		}
		holder, err := t.get(etcdRebuild)
		if err != nil {
			return err
		}
		if h := string(holder); h != "" && h != mac {
			hm, ok, err := s.getMachine(t, h)
			if err != nil {
				return err
			}
			if ok && hm.Known && rebuilding(hm) {
				return &BusyError{Holder: hm}
			}
		}
		m, existed, err := s.getMachine(t, mac)
		if err != nil {
			return err
		}
		if !existed {
			return fmt.Errorf("no record of machine %s to arm (is it in the config?)", mac)
		}
		wasKnown := m.Known
		if err := fn(&m); err != nil {
			return err
		}
		t.put(etcdRebuild, []byte(mac))
		out = m
		return s.putMachine(t, &m, true, wasKnown)
	})
	return out, err
}

// ReleaseRebuild implements Store.
func (s *Etcd) ReleaseRebuild(mac string, fn func(m *Machine) error) (Machine, error) {
	var out Machine
	err := s.update(func(t *etx) error {
		if err := t.prefetch(etcdRebuild, etcdMachineKey(mac)); err != nil {
			return err
		}
		holder, err := t.get(etcdRebuild)
		if err != nil {
			return err
		}
		if string(holder) == mac {
			t.del(etcdRebuild)
		}
		m, existed, err := s.getMachine(t, mac)
		if err != nil || !existed {
			return err
		}
		wasKnown := m.Known
		if fn != nil {
			if err := fn(&m); err != nil {
				return err
			}
		}
		out = m
		return s.putMachine(t, &m, true, wasKnown)
	})
	return out, err
}

var _ Store = (*Etcd)(nil)
