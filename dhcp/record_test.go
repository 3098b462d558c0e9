package dhcp

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/flint-boot/flint/store"
)

// TestUnknownSightingsAreRateLimited: what a flood of unknown MACs adds to the
// store is bounded by limits.unknown_events_per_minute (for DHCP as a whole),
// and the drops are counted; the config's machines are recorded regardless.
func TestUnknownSightingsAreRateLimited(t *testing.T) {
	for _, mode := range []string{"full", "proxy"} {
		t.Run(mode, func(t *testing.T) {
			cfg := testConfig(t, cfgOpts{mode: mode}) // full mode without a pool: unknown MACs get a sighting, no reply
			cfg.Limits.UnknownEventsPerMinute = 5
			st := newMemStore()
			s, c := newTestServer(t, cfg, st)
			discover := func(mac string) { exchange(t, s, packet(mac, dhcpv4.MessageTypeDiscover, pxe(7))) }

			for i := range 8 {
				discover(macN(i))
			}
			for range 10 {
				discover(nuc1MAC)
			}
			if got := unknownSightings(st); got != 5 {
				t.Errorf("%d sightings of 8 unknown MACs recorded, want the limit 5", got)
			}
			if got := s.DroppedSightings(); got != 3 {
				t.Errorf("DroppedSightings() = %d, want 3", got)
			}
			if got := len(st.sightingsOf(nuc1MAC)); got != 10 {
				t.Errorf("%d of 10 sightings of a known machine recorded", got)
			}

			// The limit is per minute: a minute later there is room again.
			c.Advance(time.Minute)
			for i := 8; i < 16; i++ {
				discover(macN(i))
			}
			if got := unknownSightings(st); got != 10 {
				t.Errorf("a minute later: %d unknown sightings in all, want 10", got)
			}
			if got := s.DroppedSightings(); got != 6 {
				t.Errorf("DroppedSightings() = %d, want 6", got)
			}
		})
	}
}

func unknownSightings(st *memStore) int {
	st.mu.Lock()
	defer st.mu.Unlock()
	n := 0
	for _, sg := range st.sightings {
		if sg.MAC != nuc1MAC && sg.MAC != nuc2MAC {
			n++
		}
	}
	return n
}

// fullQueue is a timeline writer whose queue takes n notes, then refuses.
type fullQueue struct {
	*memStore
	mu    sync.Mutex
	n     int
	noted []store.Sighting
}

func (q *fullQueue) Note(sg store.Sighting) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.noted) >= q.n {
		return false
	}
	q.noted = append(q.noted, sg)
	return true
}

// TestKnownSightingsSurviveAFullQueue: sightings go to the timeline writer's
// queue; when it is full an unknown MAC's sighting is dropped and counted but
// a config machine's is written at once.
func TestKnownSightingsSurviveAFullQueue(t *testing.T) {
	st := &fullQueue{memStore: newMemStore(), n: 2}
	s, _ := newTestServer(t, testConfig(t, cfgOpts{}), st)
	for i := range 3 {
		exchange(t, s, packet(macN(i), dhcpv4.MessageTypeDiscover))
	}
	if got := s.DroppedSightings(); got != 1 {
		t.Fatalf("DroppedSightings() = %d with a queue of 2 and 3 unknown MACs, want 1", got)
	}
	if len(st.noted) != 2 || len(st.sightings) != 0 {
		t.Fatalf("%d queued, %d written at once; want 2 queued, none written", len(st.noted), len(st.sightings))
	}
	reply, _ := s.handle(packet(nuc1MAC, dhcpv4.MessageTypeDiscover, pxe(7)), clientPeer, viaDHCP)
	if reply == nil || reply.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("known machine got %v, want an OFFER", reply)
	}
	if ev := st.events(nuc1MAC); fmt.Sprint(ev) != "[dhcp OFFER]" {
		t.Errorf("known machine's sightings %q, want its OFFER written at once", ev)
	}
	if got := s.DroppedSightings(); got != 1 {
		t.Errorf("DroppedSightings() = %d, want 1 (known machines are not dropped)", got)
	}
}
