package store

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

const (
	etcdDiscoveredPrefix = "discovered/"
	etcdDiscoveredCount  = "discovered_count"
	etcdRebuild          = "rebuild"
)

func etcdMachineKey(mac string) string { return "machines/" + mac }
func etcdKnownKey(mac string) string   { return "known/" + mac }

func etcdDiscoveredKey(m *Machine) string {
	return fmt.Sprintf("%s%016x%s", etcdDiscoveredPrefix, uint64(m.Discovered.UnixNano()), m.MAC)
}

// getMachine reads mac's record in t; ok is false when there is none.
func (s *Etcd) getMachine(t *etx, mac string) (Machine, bool, error) {
	var m Machine
	v, err := t.get(etcdMachineKey(mac))
	if err != nil || v == nil {
		return m, false, err
	}
	if err := json.Unmarshal(v, &m); err != nil {
		return m, false, fmt.Errorf("machine record %s is corrupt: %w (delete the key %s%s in etcd, or remove the machine from the config and add it back)", mac, err, s.prefix, etcdMachineKey(mac))
	}
	return m, true, nil
}

// putMachine writes m and keeps the indexes in step, as Bolt's does.
func (s *Etcd) putMachine(t *etx, m *Machine, existed, wasKnown bool) error {
	switch {
	case m.Known && (!existed || !wasKnown):
		t.put(etcdKnownKey(m.MAC), []byte("1"))
	case !m.Known && existed && wasKnown:
		t.del(etcdKnownKey(m.MAC))
	}
	switch {
	case !m.Known && (!existed || wasKnown):
		if m.Discovered.IsZero() {
			m.Discovered = time.Now()
			if !m.FirstSeen.IsZero() {
				m.Discovered = m.FirstSeen
			}
		}
		if err := s.indexDiscovered(t, m); err != nil {
			return err
		}
	case m.Known && existed && !wasKnown:
		if err := s.unindexDiscovered(t, m); err != nil {
			return err
		}
	}
	v, err := json.Marshal(m)
	if err != nil {
		return err
	}
	t.put(etcdMachineKey(m.MAC), v)
	return nil
}

func discoveredCountOf(t *etx) (int, error) {
	v, err := t.get(etcdDiscoveredCount)
	if err != nil || v == nil {
		return 0, err
	}
	n, err := strconv.Atoi(string(v))
	if err != nil {
		return 0, fmt.Errorf("%s is corrupt: %q", etcdDiscoveredCount, v)
	}
	return n, nil
}

// indexDiscovered indexes m and evicts the records discovered longest ago
// beyond the limit (at most maxEvictions of them: see Etcd). The count key,
// read first, guards the index.
func (s *Etcd) indexDiscovered(t *etx, m *Machine) error {
	n, err := discoveredCountOf(t)
	if err != nil {
		return err
	}
	t.put(etcdDiscoveredKey(m), []byte("1"))
	n++
	for evicted := 0; n > s.limits.Discovered && evicted < maxEvictions; evicted++ {
		oldest, err := t.keys(etcdDiscoveredPrefix, 1)
		if err != nil {
			return err
		}
		if len(oldest) == 0 {
			break
		}
		k := oldest[0]
		victim := k[len(etcdDiscoveredPrefix)+16:]
		if victim == m.MAC {
			break
		}
		t.del(k)
		t.del(etcdMachineKey(victim))
		etcdDeleteEvents(t, victim)
		n--
	}
	t.put(etcdDiscoveredCount, []byte(strconv.Itoa(n)))
	return nil
}

func (s *Etcd) unindexDiscovered(t *etx, m *Machine) error {
	n, err := discoveredCountOf(t)
	if err != nil {
		return err
	}
	k := etcdDiscoveredKey(m)
	v, err := t.get(k)
	if err != nil || v == nil {
		return err
	}
	t.del(k)
	if n > 0 {
		t.put(etcdDiscoveredCount, []byte(strconv.Itoa(n-1)))
	}
	return nil
}

// RecordSighting implements Store.
func (s *Etcd) RecordSighting(sg Sighting) error {
	if sg.TimelineOnly {
		if sg.MAC == "" {
			return fmt.Errorf("sighting without a MAC")
		}
		if sg.Event == "" {
			return nil
		}
		return s.update(func(t *etx) error {
			return s.appendEvent(t, sg.timelineEvent())
		})
	}
	_, err := s.Record(sg, nil)
	return err
}

// maxUnit bounds the sightings of one machine written in one transaction.
const maxUnit = 32

// RecordSightings implements Store. The sightings go in as few transactions
// as etcd's limits allow (updateInChunks): each holds the sightings of whole
// machines (up to maxUnit per machine; a machine with more is read and
// written once per maxUnit of them).
func (s *Etcd) RecordSightings(ss []Sighting) error {
	type unit struct {
		mac string
		ss  []Sighting
	}
	var order []string
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
	var units []unit
	for _, mac := range order {
		all := byMAC[mac]
		for len(all) > 0 {
			n := min(len(all), maxUnit)
			units = append(units, unit{mac, all[:n]})
			all = all[n:]
		}
	}
	return s.updateInChunks(len(units), 32, func(t *etx, i, j int) error {
		var keys []string
		for _, u := range units[i:j] {
			keys = append(keys, etcdMachineKey(u.mac), etcdSeqKey(u.mac))
		}
		if err := t.prefetch(keys...); err != nil {
			return err
		}
		for _, u := range units[i:j] {
			if err := s.recordUnit(t, u.mac, u.ss); err != nil {
				return err
			}
		}
		return nil
	})
}

// recordUnit folds one machine's sightings into its record and timeline.
func (s *Etcd) recordUnit(t *etx, mac string, ss []Sighting) error {
	m, existed, err := s.getMachine(t, mac)
	if err != nil {
		return err
	}
	wasKnown, touched := m.Known, false
	for _, sg := range ss {
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
		if err := s.putMachine(t, &m, existed, wasKnown); err != nil {
			return err
		}
	}
	for _, sg := range ss {
		if sg.Event == "" {
			continue
		}
		if err := s.appendEvent(t, sg.timelineEvent()); err != nil {
			return err
		}
	}
	return nil
}

// Record implements Store.
func (s *Etcd) Record(sg Sighting, fn func(m *Machine) error) (Machine, error) {
	if sg.MAC == "" {
		return Machine{}, fmt.Errorf("sighting without a MAC")
	}
	var out Machine
	err := s.update(func(t *etx) error {
		if err := t.prefetch(etcdMachineKey(sg.MAC), etcdSeqKey(sg.MAC)); err != nil {
			return err
		}
		m, existed, err := s.getMachine(t, sg.MAC)
		if err != nil {
			return err
		}
		wasKnown := m.Known
		write, err := recordChange(&m, existed, sg, fn)
		if err != nil {
			return err
		}
		if write {
			if err := s.putMachine(t, &m, existed, wasKnown); err != nil {
				return err
			}
		}
		out = m
		if e, ok := eventOf(sg); ok {
			return s.appendEvent(t, e)
		}
		return nil
	})
	return out, err
}

// Machines implements Store: a listing for the admin API, by MAC.
func (s *Etcd) Machines() ([]Machine, error) {
	var out []Machine
	err := s.list("machines/", func(k string, v []byte) error {
		var m Machine
		if err := json.Unmarshal(v, &m); err != nil {
			return fmt.Errorf("machine record %s is corrupt: %w", strings.TrimPrefix(k, "machines/"), err)
		}
		out = append(out, m)
		return nil
	})
	return out, err
}

// Machine implements Store.
func (s *Etcd) Machine(mac string) (Machine, bool, error) {
	var m Machine
	v, err := s.get(etcdMachineKey(mac))
	if err != nil || v == nil {
		return m, false, err
	}
	if err := json.Unmarshal(v, &m); err != nil {
		return m, false, fmt.Errorf("machine record %s is corrupt: %w", mac, err)
	}
	return m, true, nil
}
