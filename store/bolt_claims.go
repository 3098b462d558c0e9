package store

import (
	"net/netip"
	"time"
)

// Bolt's claims: one flint instance owns the data directory (it is locked),
// so its allocator's address book decides alone and every claim is granted.

// ClaimAddress implements Claims: always granted.
func (s *Bolt) ClaimAddress(netip.Addr, string, time.Duration, time.Time) (bool, string, error) {
	return true, "", nil
}

// ReleaseClaim implements Claims: nothing to release.
func (s *Bolt) ReleaseClaim(netip.Addr, string) error { return nil }

// BindLease implements Claims: PutLease.
func (s *Bolt) BindLease(l Lease, _ time.Time) (bool, string, error) {
	return true, "", s.PutLease(l)
}

// Shared implements Claims: a bolt store has one flint instance.
func (s *Bolt) Shared() bool { return false }
