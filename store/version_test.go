package store

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

// TestVersionGrowsWithWrites: every committed write moves Version, reads and
// failed writes do not (the dashboard's stream relies on it to notice a
// change without reading the tables).
func TestVersionGrowsWithWrites(t *testing.T) {
	s, err := OpenBolt(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	v0 := s.Version()
	if err := s.PutLease(Lease{IP: netip.MustParseAddr("198.18.0.20"), MAC: "52:54:00:00:00:01", State: LeaseBound, Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	v1 := s.Version()
	if v1 <= v0 {
		t.Fatalf("a lease write left the version at %d", v1)
	}
	if _, err := s.Leases(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateMachine("52:54:00:00:00:02", func(*Machine) error { return errors.New("no") }); err == nil {
		t.Fatal("a failing update succeeded")
	}
	if v := s.Version(); v != v1 {
		t.Errorf("a read and a failed write moved the version from %d to %d", v1, v)
	}
}
