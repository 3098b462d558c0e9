package store

import (
	"encoding/json"
	"fmt"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdSeqKey holds a machine's timeline sequence: every append reads and
// writes it, so it guards the timeline's keys (see Etcd).
func etcdSeqKey(mac string) string { return "events/" + mac }

func etcdEventsPrefix(mac string) string { return "events/" + mac + "/" }

func (s *Etcd) appendEvent(t *etx, e Event) error {
	v, err := t.get(etcdSeqKey(e.MAC))
	if err != nil {
		return err
	}
	var seq uint64
	if v != nil {
		if seq, err = strconv.ParseUint(string(v), 10, 64); err != nil {
			return fmt.Errorf("timeline sequence of %s is corrupt: %q", e.MAC, v)
		}
	}
	seq++
	ev, err := json.Marshal(e)
	if err != nil {
		return err
	}
	prefix := etcdEventsPrefix(e.MAC)
	t.put(etcdSeqKey(e.MAC), []byte(strconv.FormatUint(seq, 10)))
	t.put(fmt.Sprintf("%s%016x.%016x", prefix, uint64(e.At.UnixNano()), seq), ev)
	// Trim the oldest entries, every 64 appends like Bolt: counting reads
	// the timeline's keys.
	if seq%64 != 0 {
		return nil
	}
	n, err := t.count(prefix)
	if err != nil {
		return err
	}
	extra := n - s.limits.Events
	if extra <= 0 {
		return nil
	}
	oldest, err := t.keys(prefix, extra)
	if err != nil {
		return err
	}
	if len(oldest) > 0 {
		t.delRange(prefix, oldest[len(oldest)-1]+"\x00")
	}
	return nil
}

func etcdDeleteEvents(t *etx, mac string) {
	t.del(etcdSeqKey(mac))
	t.delRange(etcdEventsPrefix(mac), clientv3.GetPrefixRangeEnd(etcdEventsPrefix(mac)))
}

// Events implements Store.
func (s *Etcd) Events(mac string) ([]Event, error) {
	var out []Event
	err := s.list(etcdEventsPrefix(mac), func(k string, v []byte) error {
		var e Event
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("event %s is corrupt: %w", k, err)
		}
		out = append(out, e)
		return nil
	})
	return out, err
}
