package store

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"
)

// DumpVersion is the version of the dump stream Dump writes and Load reads.
//
// A dump is JSON lines, in this order and nothing else:
//
//	{"flint_dump":{"version":1}}
//	{"lease":{...}}       every lease, by IP
//	{"machine":{...}}     every machine record with every field, by MAC
//	{"event":{...}}       every timeline entry, grouped by MAC (MAC order), oldest first
//	{"rebuild":"<mac>"}   the rebuild slot's holder, if any
//	{"end":{"leases":N,"machines":N,"events":N}}
//
// Each value is the record re-encoded from its Go type, never the stored
// bytes, so two stores holding the same state dump the same bytes: that is
// what flint store migrate verifies (Summary.SHA256). The indexes (known,
// discovered and their count) and timeline sequences are not in the stream:
// Load rebuilds them from the records. Other state that may share the
// backend (the PKI, DHCP claims) is not part of it either.
const DumpVersion = 1

// Counts says how much state a dump holds.
type Counts struct {
	Leases   int `json:"leases"`
	Machines int `json:"machines"`
	Events   int `json:"events"`
}

// Empty says there is nothing to copy.
func (c Counts) Empty() bool { return c == Counts{} }

func (c Counts) String() string {
	return fmt.Sprintf("%d leases, %d machines, %d timeline events", c.Leases, c.Machines, c.Events)
}

// Summary is what a Dump wrote or a Load read: the counts, whether a
// machine held the rebuild slot, and the SHA-256 of the stream's bytes.
type Summary struct {
	Counts
	Rebuild string
	SHA256  string
}

// Porter is a Store that exports and imports its whole state faithfully:
// no time, count or state changes on the way (Load never goes through
// RecordSighting or UpdateMachine). Both backends implement it.
type Porter interface {
	Store
	// Dump writes the state to w as a dump stream (DumpVersion), read at
	// one consistent point in time.
	Dump(ctx context.Context, w io.Writer) (Summary, error)
	// Load replaces the state with the dump r holds. Its first commit
	// deletes the current state and marks the store incomplete (see
	// ErrIncomplete); the mark stays until Complete, so a Load cut short
	// (an error, ctx cancelled, a crash) leaves a store that refuses to
	// open. progress, if not nil, is called after each commit.
	Load(ctx context.Context, r io.Reader, progress func(Counts)) (Summary, error)
	// Incomplete says whether a Load began and Complete has not followed.
	Incomplete() (bool, error)
	// Complete removes the incomplete mark: call it once the loaded state
	// is verified.
	Complete() error
}

// ErrIncomplete: the store holds a migration that did not finish.
var ErrIncomplete = errors.New("this state is an unfinished flint store migrate (it was interrupted or failed): run flint store migrate again with --force, or go back to the store it copied from")

// AllowIncomplete lets OpenBolt and OpenEtcd open a store that an
// unfinished Load marked incomplete (flint store migrate does, to load it
// again); without it they fail with ErrIncomplete.
func AllowIncomplete() Option { return func(o *options) { o.allowIncomplete = true } }

// incompleteMark is what the incomplete mark holds: when the Load began.
func incompleteMark() []byte {
	return []byte(`{"load_started":"` + time.Now().UTC().Format(time.RFC3339) + `"}`)
}

// dumpLine is one line of a dump stream.
type dumpLine struct {
	Dump    *dumpHeader `json:"flint_dump,omitempty"`
	Lease   *Lease      `json:"lease,omitempty"`
	Machine *Machine    `json:"machine,omitempty"`
	Event   *Event      `json:"event,omitempty"`
	Rebuild string      `json:"rebuild,omitempty"`
	End     *Counts     `json:"end,omitempty"`
}

type dumpHeader struct {
	Version int `json:"version"`
}

// dumpWriter writes a stream and hashes it as it goes.
type dumpWriter struct {
	ctx context.Context
	w   *bufio.Writer
	h   hash.Hash
	sum Summary
}

func newDumpWriter(ctx context.Context, w io.Writer) *dumpWriter {
	h := sha256.New()
	d := &dumpWriter{ctx: ctx, w: bufio.NewWriterSize(io.MultiWriter(w, h), 64<<10), h: h}
	return d
}

func (d *dumpWriter) line(l dumpLine) error {
	if err := d.ctx.Err(); err != nil {
		return err
	}
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = d.w.Write(b)
	return err
}

func (d *dumpWriter) header() error { return d.line(dumpLine{Dump: &dumpHeader{Version: DumpVersion}}) }

func (d *dumpWriter) lease(l Lease) error {
	d.sum.Leases++
	return d.line(dumpLine{Lease: &l})
}

func (d *dumpWriter) machine(m Machine) error {
	d.sum.Machines++
	return d.line(dumpLine{Machine: &m})
}

func (d *dumpWriter) event(e Event) error {
	d.sum.Events++
	return d.line(dumpLine{Event: &e})
}

// finish writes the rebuild slot and the end line and flushes.
func (d *dumpWriter) finish(rebuild string) (Summary, error) {
	if rebuild != "" {
		d.sum.Rebuild = rebuild
		if err := d.line(dumpLine{Rebuild: rebuild}); err != nil {
			return Summary{}, err
		}
	}
	c := d.sum.Counts
	if err := d.line(dumpLine{End: &c}); err != nil {
		return Summary{}, err
	}
	if err := d.w.Flush(); err != nil {
		return Summary{}, err
	}
	d.sum.SHA256 = hex.EncodeToString(d.h.Sum(nil))
	return d.sum, nil
}

// dumpReader reads a stream, checking its order and its end, and hashes it.
type dumpReader struct {
	ctx   context.Context
	sc    *bufio.Scanner
	h     hash.Hash
	n     int // lines read
	stage int // 0 header, 1 leases, 2 machines, 3 events, 4 rebuild, 5 end
	sum   Summary

	lastLease Lease
	lastMAC   string
	eventMAC  string
	eventMACs map[string]bool
}

func newDumpReader(ctx context.Context, r io.Reader) *dumpReader {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	return &dumpReader{ctx: ctx, sc: sc, h: sha256.New(), eventMACs: map[string]bool{}}
}

func (d *dumpReader) fail(format string, args ...any) error {
	return fmt.Errorf("dump line %d: %s (the dump is damaged or not from flint: make it again)", d.n, fmt.Sprintf(format, args...))
}

// next returns the next record; io.EOF after the end line, which must be
// the last and agree with what came before it.
func (d *dumpReader) next() (dumpLine, error) {
	var l dumpLine
	if err := d.ctx.Err(); err != nil {
		return l, err
	}
	if d.stage == 5 {
		if d.sc.Scan() {
			d.n++
			return l, d.fail("more after the end line")
		}
		return l, io.EOF
	}
	if !d.sc.Scan() {
		if err := d.sc.Err(); err != nil {
			return l, fmt.Errorf("read dump line %d: %w", d.n+1, err)
		}
		return l, fmt.Errorf("the dump ends after line %d without its end line: it was cut short (make it again)", d.n)
	}
	d.n++
	b := d.sc.Bytes()
	d.h.Write(b)
	d.h.Write([]byte{'\n'})
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return l, d.fail("%v", err)
	}
	stage := 0
	kinds := 0
	for i, set := range []bool{l.Dump != nil, l.Lease != nil, l.Machine != nil, l.Event != nil, l.Rebuild != "", l.End != nil} {
		if set {
			stage, kinds = i, kinds+1
		}
	}
	if kinds != 1 {
		return l, d.fail("a line holds exactly one of flint_dump, lease, machine, event, rebuild, end")
	}
	switch {
	case d.n == 1 && stage != 0:
		return l, d.fail("it does not start with the flint_dump header")
	case d.n == 1 && l.Dump.Version != DumpVersion:
		return l, d.fail("version %d, this flint reads version %d (use the flint that made it)", l.Dump.Version, DumpVersion)
	case d.n > 1 && stage == 0:
		return l, d.fail("a second header")
	case stage < d.stage:
		return l, d.fail("out of order: leases, machines, events, rebuild, end")
	}
	d.stage = stage
	switch stage {
	case 1:
		if !l.Lease.IP.Is4() || (d.sum.Leases > 0 && l.Lease.IP.Compare(d.lastLease.IP) <= 0) {
			return l, d.fail("lease %v not an IPv4 address after %v", l.Lease.IP, d.lastLease.IP)
		}
		d.lastLease = *l.Lease
		d.sum.Leases++
	case 2:
		if l.Machine.MAC == "" || (d.sum.Machines > 0 && l.Machine.MAC <= d.lastMAC) {
			return l, d.fail("machine %q does not follow %q in MAC order", l.Machine.MAC, d.lastMAC)
		}
		d.lastMAC = l.Machine.MAC
		d.sum.Machines++
	case 3:
		mac := l.Event.MAC
		switch {
		case mac == "":
			return l, d.fail("an event without a MAC")
		case mac != d.eventMAC && (d.eventMACs[mac] || mac < d.eventMAC):
			return l, d.fail("the events of %s are not grouped in MAC order", mac)
		}
		d.eventMAC = mac
		d.eventMACs[mac] = true
		d.sum.Events++
	case 4:
		d.sum.Rebuild = l.Rebuild
	case 5:
		if *l.End != d.sum.Counts {
			return l, d.fail("the end line says %v, the dump held %v", *l.End, d.sum.Counts)
		}
		d.sum.SHA256 = hex.EncodeToString(d.h.Sum(nil))
		if d.sc.Scan() {
			d.n++
			return l, d.fail("more after the end line")
		}
		d.stage = 5
		return l, io.EOF
	}
	return l, nil
}
