package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketLeases   = []byte("leases")
	bucketMachines = []byte("machines")
	bucketEvents   = []byte("events") // one nested bucket per MAC, keys: big-endian nanoseconds + sequence
)

// FileName is the database file inside the data directory.
const FileName = "flint.db"

// Bolt is the embedded single-node Store. bbolt commits with fsync and never
// leaves a half-written page visible, so a kill -9 loses nothing acknowledged.
type Bolt struct {
	db     *bolt.DB
	writes chan writeReq
	done   chan struct{}
}

type writeReq struct {
	fn  func(*bolt.Tx) error
	err chan error
}

// maxGroup bounds how many writes share one transaction.
const maxGroup = 512

// OpenBolt opens (creating if needed) DIR/flint.db. With readOnly it takes a
// shared lock and fails fast with ErrLocked while a server holds the database.
func OpenBolt(dir string, readOnly bool) (*Bolt, error) {
	if !readOnly {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create data directory %s: %w", dir, err)
		}
	}
	path := filepath.Join(dir, FileName)
	if readOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("no flint state in %s: %w (run flint serve with --data %s first)", dir, err, dir)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 300 * time.Millisecond, ReadOnly: readOnly})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("%s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	if !readOnly {
		err = db.Update(func(tx *bolt.Tx) error {
			for _, b := range [][]byte{bucketLeases, bucketMachines, bucketEvents} {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("initialise state %s: %w", path, err)
		}
	}
	s := &Bolt{db: db}
	if !readOnly {
		s.writes = make(chan writeReq, maxGroup)
		s.done = make(chan struct{})
		go s.commitLoop()
	}
	return s, nil
}

// write runs fn in a read-write transaction and returns once it is on disk.
// Writes that arrive while a commit is being fsynced are grouped into the next
// transaction (group commit): one fsync serves many DHCP ACKs, without the fixed
// wait bbolt's own Batch adds to every call.
func (s *Bolt) write(fn func(*bolt.Tx) error) error {
	if s.writes == nil {
		return fmt.Errorf("state opened read-only")
	}
	req := writeReq{fn: fn, err: make(chan error, 1)}
	s.writes <- req
	return <-req.err
}

func (s *Bolt) commitLoop() {
	defer close(s.done)
	for first := range s.writes {
		group := []writeReq{first}
	drain:
		for len(group) < maxGroup {
			select {
			case r, ok := <-s.writes:
				if !ok {
					break drain
				}
				group = append(group, r)
			default:
				break drain
			}
		}
		s.commit(group)
	}
}

// commit applies a group in one transaction; if any write fails, the group is
// rolled back and each write retried alone so one bad write fails only itself.
func (s *Bolt) commit(group []writeReq) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, r := range group {
			if err := r.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || len(group) == 1 {
		for _, r := range group {
			r.err <- err
		}
		return
	}
	for _, r := range group {
		r.err <- s.db.Update(r.fn)
	}
}

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

// RecordSighting implements Store.
func (s *Bolt) RecordSighting(sg Sighting) error {
	if sg.MAC == "" {
		return fmt.Errorf("sighting without a MAC")
	}
	return s.write(func(tx *bolt.Tx) error {
		if sg.TimelineOnly {
			if sg.Event == "" {
				return nil
			}
			return appendEvent(tx, Event{At: sg.At, MAC: sg.MAC, Event: sg.Event, IP: sg.IP, Detail: sg.Detail})
		}
		b := tx.Bucket(bucketMachines)
		var m Machine
		if v := b.Get([]byte(sg.MAC)); v != nil {
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("machine record %s is corrupt: %w", sg.MAC, err)
			}
		}
		m.Apply(sg)
		if m.State == "" {
			m.State, m.StateChanged = StateDiscovered, sg.At
		}
		v, err := json.Marshal(m)
		if err != nil {
			return err
		}
		if err := b.Put([]byte(sg.MAC), v); err != nil {
			return err
		}
		if sg.Event == "" {
			return nil
		}
		return appendEvent(tx, Event{At: sg.At, MAC: sg.MAC, Event: sg.Event, IP: sg.IP, Detail: sg.Detail})
	})
}

func appendEvent(tx *bolt.Tx, e Event) error {
	mb, err := tx.Bucket(bucketEvents).CreateBucketIfNotExists([]byte(e.MAC))
	if err != nil {
		return err
	}
	seq, err := mb.NextSequence()
	if err != nil {
		return err
	}
	key := make([]byte, 16)
	binary.BigEndian.PutUint64(key[:8], uint64(e.At.UnixNano()))
	binary.BigEndian.PutUint64(key[8:], seq)
	v, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := mb.Put(key, v); err != nil {
		return err
	}
	// Trim the oldest entries so a machine that reboots for years stays small.
	// Counting walks the bucket, so do it every 64 appends, not on each one.
	if seq%64 != 0 {
		return nil
	}
	extra := mb.Stats().KeyN - MaxEventsPerMachine
	c := mb.Cursor()
	for k, _ := c.First(); k != nil && extra > 0; k, _ = c.First() {
		if err := c.Delete(); err != nil {
			return err
		}
		extra--
	}
	return nil
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

// Close implements Store. Callers must not write concurrently with Close.
func (s *Bolt) Close() error {
	if s.writes != nil {
		close(s.writes)
		<-s.done
	}
	return s.db.Close()
}

// SyncConfig implements Store.
func (s *Bolt) SyncConfig(known []KnownMachine) error {
	byMAC := make(map[string]KnownMachine, len(known))
	for _, k := range known {
		byMAC[k.MAC] = k
	}
	return s.write(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMachines)
		put := func(m Machine) error {
			v, err := json.Marshal(m)
			if err != nil {
				return err
			}
			return b.Put([]byte(m.MAC), v)
		}
		seen := map[string]bool{}
		var updated []Machine
		err := b.ForEach(func(k, v []byte) error {
			var m Machine
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("machine record %s is corrupt: %w", k, err)
			}
			seen[m.MAC] = true
			km, ok := byMAC[m.MAC]
			m.Known, m.Hostname, m.Role, m.ReservedIP = ok, km.Hostname, km.Role, km.ReservedIP
			switch {
			case ok && (m.State == "" || m.State == StateDiscovered):
				m.State, m.StateChanged = StateReady, time.Now()
			case !ok && m.State != StateDiscovered:
				m.State, m.StateChanged = StateDiscovered, time.Now()
			}
			updated = append(updated, m)
			return nil
		})
		if err != nil {
			return err
		}
		for _, m := range updated {
			if err := put(m); err != nil {
				return err
			}
		}
		for _, k := range known {
			if !seen[k.MAC] {
				if err := put(Machine{MAC: k.MAC, Known: true, Hostname: k.Hostname, Role: k.Role, ReservedIP: k.ReservedIP, State: StateReady, StateChanged: time.Now()}); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// UpdateMachine implements Store.
func (s *Bolt) UpdateMachine(mac string, fn func(m *Machine) error) (Machine, error) {
	var out Machine
	err := s.write(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMachines)
		m := Machine{MAC: mac}
		if v := b.Get([]byte(mac)); v != nil {
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("machine record %s is corrupt: %w", mac, err)
			}
		}
		if err := fn(&m); err != nil {
			return err
		}
		v, err := json.Marshal(m)
		if err != nil {
			return err
		}
		out = m
		return b.Put([]byte(mac), v)
	})
	return out, err
}
