package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	bolt "go.etcd.io/bbolt"
)

// getMachine reads mac's record in tx; ok is false when there is none.
func getMachine(tx *bolt.Tx, mac string) (Machine, bool, error) {
	var m Machine
	v := tx.Bucket(bucketMachines).Get([]byte(mac))
	if v == nil {
		return m, false, nil
	}
	if err := json.Unmarshal(v, &m); err != nil {
		return m, false, fmt.Errorf("machine record %s is corrupt: %w (restore DATA/flint.db from a backup, or delete the record's machine from the config and back)", mac, err)
	}
	return m, true, nil
}

// putMachine writes m and keeps the indexes in step: a record that is not
// Known is indexed by when it was discovered, and beyond the limit the one
// discovered longest ago is evicted with its timeline; a Known one is in the
// known index.
func (s *Bolt) putMachine(tx *bolt.Tx, m *Machine, existed bool, wasKnown bool) error {
	switch {
	case m.Known && (!existed || !wasKnown):
		if err := tx.Bucket(bucketKnown).Put([]byte(m.MAC), nil); err != nil {
			return err
		}
	case !m.Known && existed && wasKnown:
		if err := tx.Bucket(bucketKnown).Delete([]byte(m.MAC)); err != nil {
			return err
		}
	}
	switch {
	case !m.Known && (!existed || wasKnown):
		if m.Discovered.IsZero() {
			m.Discovered = time.Now()
			if !m.FirstSeen.IsZero() {
				m.Discovered = m.FirstSeen
			}
		}
		if err := s.indexDiscovered(tx, m); err != nil {
			return err
		}
	case m.Known && existed && !wasKnown:
		if err := unindexDiscovered(tx, m); err != nil {
			return err
		}
	}
	v, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketMachines).Put([]byte(m.MAC), v)
}

func discoveredKey(m *Machine) []byte {
	k := make([]byte, 8, 8+len(m.MAC))
	binary.BigEndian.PutUint64(k, uint64(m.Discovered.UnixNano()))
	return append(k, m.MAC...)
}

func discoveredCount(tx *bolt.Tx) uint64 {
	if v := tx.Bucket(bucketMeta).Get(metaDiscovered); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

func setDiscoveredCount(tx *bolt.Tx, n uint64) error {
	v := make([]byte, 8)
	binary.BigEndian.PutUint64(v, n)
	return tx.Bucket(bucketMeta).Put(metaDiscovered, v)
}

func (s *Bolt) indexDiscovered(tx *bolt.Tx, m *Machine) error {
	idx := tx.Bucket(bucketDiscovered)
	if err := idx.Put(discoveredKey(m), nil); err != nil {
		return err
	}
	n := discoveredCount(tx) + 1
	// Evict the oldest until the new one fits. The new record is never its
	// own victim unless it is the oldest, which the limit then allows.
	c := idx.Cursor()
	for k, _ := c.First(); k != nil && n > uint64(s.limits.Discovered); k, _ = c.First() {
		victim := string(k[8:])
		if victim == m.MAC {
			break
		}
		if err := c.Delete(); err != nil {
			return err
		}
		if err := tx.Bucket(bucketMachines).Delete([]byte(victim)); err != nil {
			return err
		}
		if err := deleteEvents(tx, victim); err != nil {
			return err
		}
		n--
	}
	return setDiscoveredCount(tx, n)
}

// reindexDiscovered builds the discovered index from the records (once, for a
// database written before it existed), evicting beyond the limit.
func (s *Bolt) reindexDiscovered(tx *bolt.Tx) error {
	var found []Machine
	err := tx.Bucket(bucketMachines).ForEach(func(k, v []byte) error {
		var m Machine
		if err := json.Unmarshal(v, &m); err != nil {
			return fmt.Errorf("machine record %s is corrupt: %w", k, err)
		}
		if !m.Known {
			found = append(found, m)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := setDiscoveredCount(tx, 0); err != nil {
		return err
	}
	for i := range found {
		if err := s.putMachine(tx, &found[i], false, false); err != nil {
			return err
		}
	}
	return nil
}

// reindexKnown builds the known index from the records (once, for a
// database written before it existed).
func reindexKnown(tx *bolt.Tx) error {
	kb := tx.Bucket(bucketKnown)
	return tx.Bucket(bucketMachines).ForEach(func(k, v []byte) error {
		var m Machine
		if err := json.Unmarshal(v, &m); err != nil {
			return fmt.Errorf("machine record %s is corrupt: %w", k, err)
		}
		if !m.Known {
			return nil
		}
		return kb.Put(k, nil)
	})
}

func unindexDiscovered(tx *bolt.Tx, m *Machine) error {
	idx := tx.Bucket(bucketDiscovered)
	k := discoveredKey(m)
	if idx.Get(k) == nil {
		return nil
	}
	if err := idx.Delete(k); err != nil {
		return err
	}
	if n := discoveredCount(tx); n > 0 {
		return setDiscoveredCount(tx, n-1)
	}
	return nil
}

// RecordSighting implements Store.
func (s *Bolt) RecordSighting(sg Sighting) error {
	if sg.TimelineOnly {
		if sg.MAC == "" {
			return fmt.Errorf("sighting without a MAC")
		}
		if sg.Event == "" {
			return nil
		}
		return s.write(func(tx *bolt.Tx) error {
			return s.appendEvent(tx, sg.timelineEvent())
		})
	}
	_, err := s.Record(sg, nil)
	return err
}

// RecordSightings implements Store.
func (s *Bolt) RecordSightings(ss []Sighting) error {
	if len(ss) == 0 {
		return nil
	}
	// Fold per MAC, keeping each MAC's sightings in the order they came.
	order := make([]string, 0, len(ss))
	byMAC := make(map[string][]Sighting, len(ss))
	for _, sg := range ss {
		if sg.MAC == "" {
			continue
		}
		if _, seen := byMAC[sg.MAC]; !seen {
			order = append(order, sg.MAC)
		}
		byMAC[sg.MAC] = append(byMAC[sg.MAC], sg)
	}
	return s.write(func(tx *bolt.Tx) error {
		for _, mac := range order {
			m, existed, err := getMachine(tx, mac)
			if err != nil {
				return err
			}
			wasKnown, touched := m.Known, false
			for _, sg := range byMAC[mac] {
				if sg.TimelineOnly {
					continue
				}
				m.Apply(sg)
				if m.State == "" {
					m.State, m.StateChanged = StateDiscovered, sg.At
				}
				touched = true
			}
			if touched {
				if err := s.putMachine(tx, &m, existed, wasKnown); err != nil {
					return err
				}
			}
			for _, sg := range byMAC[mac] {
				if sg.Event == "" {
					continue
				}
				if err := s.appendEvent(tx, sg.timelineEvent()); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// Record implements Store.
func (s *Bolt) Record(sg Sighting, fn func(m *Machine) error) (Machine, error) {
	if sg.MAC == "" {
		return Machine{}, fmt.Errorf("sighting without a MAC")
	}
	var out Machine
	err := s.write(func(tx *bolt.Tx) error {
		m, existed, err := getMachine(tx, sg.MAC)
		if err != nil {
			return err
		}
		wasKnown := m.Known
		write, err := recordChange(&m, existed, sg, fn)
		if err != nil {
			return err
		}
		if write {
			if err := s.putMachine(tx, &m, existed, wasKnown); err != nil {
				return err
			}
		}
		out = m
		if e, ok := eventOf(sg); ok {
			return s.appendEvent(tx, e)
		}
		return nil
	})
	return out, err
}

// Machines implements Store.
func (s *Bolt) Machines() ([]Machine, error) {
	var out []Machine
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMachines)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var m Machine
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("machine record %s is corrupt: %w", k, err)
			}
			out = append(out, m)
			return nil
		})
	})
	return out, err
}

// Machine implements Store.
func (s *Bolt) Machine(mac string) (Machine, bool, error) {
	var (
		m  Machine
		ok bool
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMachines) == nil {
			return nil
		}
		var err error
		m, ok, err = getMachine(tx, mac)
		return err
	})
	return m, ok && err == nil, err
}

// SyncConfig implements Store. It reads and writes only the config's
// machines and those the known index says were in the config before: a
// state holding 100,000 discovered machines costs nothing here, and a
// restart with an unchanged config writes nothing.
func (s *Bolt) SyncConfig(known []KnownMachine) error {
	byMAC := make(map[string]KnownMachine, len(known))
	for _, k := range known {
		byMAC[k.MAC] = k
	}
	return s.write(func(tx *bolt.Tx) error {
		// Machines the config no longer lists become discovered ones.
		var gone []string
		err := tx.Bucket(bucketKnown).ForEach(func(k, _ []byte) error {
			if _, ok := byMAC[string(k)]; !ok {
				gone = append(gone, string(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, mac := range gone {
			m, ok, err := getMachine(tx, mac)
			if err != nil {
				return err
			}
			if !ok {
				if err := tx.Bucket(bucketKnown).Delete([]byte(mac)); err != nil {
					return err
				}
				continue
			}
			m.Known, m.Hostname, m.Role, m.ReservedIP = false, "", "", netip.Addr{}
			if m.State != StateDiscovered {
				m.State, m.StateChanged = StateDiscovered, time.Now()
			}
			// Forget what only a machine of the config may hold.
			m.Boot, m.Rebuilding, m.EtcdRejoin = Boot{}, false, false
			if err := s.putMachine(tx, &m, true, true); err != nil {
				return err
			}
		}
		for _, k := range known {
			m, existed, err := getMachine(tx, k.MAC)
			if err != nil {
				return err
			}
			wasKnown := existed && m.Known
			if !markKnown(&m, existed, wasKnown, k, time.Now()) {
				continue // unchanged
			}
			if err := s.putMachine(tx, &m, existed, wasKnown); err != nil {
				return err
			}
		}
		return nil
	})
}

// UpdateMachine implements Store.
func (s *Bolt) UpdateMachine(mac string, fn func(m *Machine) error) (Machine, error) {
	var out Machine
	err := s.write(func(tx *bolt.Tx) error {
		m, existed, err := getMachine(tx, mac)
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
		return s.putMachine(tx, &m, existed, wasKnown)
	})
	return out, err
}

// rebuilding says whether a record still counts as a rebuild in progress.
func rebuilding(m Machine) bool { return m.Rebuilding || m.State == StateReprovision }

// ClaimRebuild implements Store.
func (s *Bolt) ClaimRebuild(mac string, fn func(m *Machine) error) (Machine, error) {
	var out Machine
	err := s.write(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if holder := string(meta.Get(metaRebuild)); holder != "" && holder != mac {
			h, ok, err := getMachine(tx, holder)
			if err != nil {
				return err
			}
			if ok && h.Known && rebuilding(h) {
				return &BusyError{Holder: h}
			}
		}
		m, existed, err := getMachine(tx, mac)
		if err != nil {
			return err
		}
		if !existed {
			return fmt.Errorf("no record of machine %s to arm (is it in the config?)", mac)
		}
		if err := fn(&m); err != nil {
			return err
		}
		if err := meta.Put(metaRebuild, []byte(mac)); err != nil {
			return err
		}
		out = m
		return s.putMachine(tx, &m, true, m.Known)
	})
	return out, err
}

// ReleaseRebuild implements Store.
func (s *Bolt) ReleaseRebuild(mac string, fn func(m *Machine) error) (Machine, error) {
	var out Machine
	err := s.write(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if string(meta.Get(metaRebuild)) == mac {
			if err := meta.Delete(metaRebuild); err != nil {
				return err
			}
		}
		m, existed, err := getMachine(tx, mac)
		if err != nil || !existed {
			return err
		}
		if fn != nil {
			if err := fn(&m); err != nil {
				return err
			}
		}
		out = m
		return s.putMachine(tx, &m, true, m.Known)
	})
	return out, err
}
