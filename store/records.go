package store

import "time"

// What a write does to a machine record, the same on every backend: the
// backends read and write records their own way around these.

// recordChange is Record's change to machine m (existed: a record was
// there): the sighting folded in (unless TimelineOnly), then fn. write says
// whether the record must be written; an error from fn changes nothing.
func recordChange(m *Machine, existed bool, sg Sighting, fn func(*Machine) error) (write bool, err error) {
	if !sg.TimelineOnly {
		m.Apply(sg)
		if m.State == "" {
			m.State, m.StateChanged = StateDiscovered, sg.At
		}
	}
	if fn != nil {
		if !existed {
			m.MAC = sg.MAC
		}
		if err := fn(m); err != nil {
			return false, err
		}
	}
	return !sg.TimelineOnly || fn != nil, nil
}

// eventOf is the timeline entry of a sighting; ok is false for one without
// an event.
func eventOf(sg Sighting) (e Event, ok bool) {
	if sg.Event == "" {
		return Event{}, false
	}
	return sg.timelineEvent(), true
}

// timelineEvent is sg's entry on its machine's timeline.
func (sg Sighting) timelineEvent() Event {
	return Event{At: sg.At, MAC: sg.MAC, Event: sg.Event, IP: sg.IP, Detail: sg.Detail, By: sg.By}
}

// markKnown makes m (existed: a record was there; wasKnown: it was known)
// the config's machine k, ready unless it got further; changed is false when
// the record already said all that.
func markKnown(m *Machine, existed, wasKnown bool, k KnownMachine, now time.Time) (changed bool) {
	before := *m
	m.MAC, m.Known, m.Hostname, m.Role, m.ReservedIP = k.MAC, true, k.Hostname, k.Role, k.ReservedIP
	if m.State == "" || m.State == StateDiscovered {
		m.State, m.StateChanged = StateReady, now
	}
	return !(existed && wasKnown && before.Hostname == m.Hostname && before.Role == m.Role &&
		before.ReservedIP == m.ReservedIP && before.State == m.State)
}
