package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// readDump reads a whole stream as Load does.
func readDump(text string) (Summary, error) {
	d := newDumpReader(context.Background(), strings.NewReader(text))
	for {
		if _, err := d.next(); err != nil {
			if errors.Is(err, io.EOF) {
				return d.sum, nil
			}
			return d.sum, err
		}
	}
}

// TestDumpReader: what Load accepts of a stream and what it refuses, and why.
func TestDumpReader(t *testing.T) {
	const (
		hdr   = `{"flint_dump":{"version":1}}` + "\n"
		lease = `{"lease":{"ip":"198.18.0.9","mac":"","state":"declined","start":"2026-11-30T07:00:00Z","expires":"2026-11-30T07:10:00Z"}}` + "\n"
		m1    = `{"machine":{"mac":"52:54:00:00:00:01","first_seen":"2026-11-30T07:00:00Z","last_seen":"2026-11-30T07:00:00Z","events":1,"known":true}}` + "\n"
		m2    = `{"machine":{"mac":"52:54:00:00:00:02","first_seen":"2026-11-30T07:00:00Z","last_seen":"2026-11-30T07:00:00Z","events":1,"known":true}}` + "\n"
		e1    = `{"event":{"at":"2026-11-30T07:00:00Z","mac":"52:54:00:00:00:01","event":"dhcp ACK"}}` + "\n"
		e2    = `{"event":{"at":"2026-11-30T07:00:01Z","mac":"52:54:00:00:00:02","event":"dhcp ACK"}}` + "\n"
		reb   = `{"rebuild":"52:54:00:00:00:01"}` + "\n"
	)
	end := func(l, m, e int) string {
		return fmt.Sprintf(`{"end":{"leases":%d,"machines":%d,"events":%d}}`+"\n", l, m, e)
	}
	for _, tc := range []struct {
		name, text, want string
		counts           Counts
	}{
		{"empty state", hdr + end(0, 0, 0), "", Counts{}},
		{"everything", hdr + lease + m1 + m2 + e1 + e1 + e2 + reb + end(1, 2, 3), "", Counts{Leases: 1, Machines: 2, Events: 3}},
		{"nothing at all", "", "without its end line", Counts{}},
		{"no header", lease + end(1, 0, 0), "does not start with the flint_dump header", Counts{}},
		{"another version", `{"flint_dump":{"version":2}}` + "\n" + end(0, 0, 0), "version 2, this flint reads version 1", Counts{}},
		{"cut short", hdr + lease + m1, "without its end line", Counts{}},
		{"counts disagree", hdr + m1 + end(0, 2, 0), "the end line says", Counts{}},
		{"after the end", hdr + end(0, 0, 0) + m1, "more after the end line", Counts{}},
		{"machines before leases", hdr + m1 + lease + end(1, 1, 0), "out of order", Counts{}},
		{"machines out of MAC order", hdr + m2 + m1 + end(0, 2, 0), "does not follow", Counts{}},
		{"a machine twice", hdr + m1 + m1 + end(0, 2, 0), "does not follow", Counts{}},
		{"a lease twice", hdr + lease + lease + end(2, 0, 0), "not an IPv4 address after", Counts{}},
		{"timelines not grouped", hdr + e1 + e2 + e1 + end(0, 0, 3), "not grouped", Counts{}},
		{"unknown field", hdr + `{"machine":{"mac":"52:54:00:00:00:01","colour":"red"}}` + "\n" + end(0, 1, 0), `unknown field "colour"`, Counts{}},
		{"two records in a line", hdr + `{"rebuild":"x","end":{"leases":0,"machines":0,"events":0}}` + "\n", "exactly one of", Counts{}},
		{"not JSON", hdr + "machines\n" + end(0, 0, 0), "dump line 2", Counts{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sum, err := readDump(tc.text)
			if tc.want == "" {
				if err != nil || sum.Counts != tc.counts || len(sum.SHA256) != 64 {
					t.Fatalf("got %+v, %v; want %v", sum, err, tc.counts)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v does not contain %q", err, tc.want)
			}
		})
	}
}
