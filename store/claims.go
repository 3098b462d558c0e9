package store

import (
	"errors"
	"net/netip"
	"time"
)

// ErrUnavailable means the store could not commit a write because it has
// no quorum (etcd members down or unreachable). A DHCP server answers a
// renewal of an address it knows to be the client's from its own memory
// then, but hands out no new address.
var ErrUnavailable = errors.New("the state store has no quorum (etcd unreachable)")

// Claims are the address claims full-mode DHCP takes so that several flint
// instances on one store (active/active) never hand one address to two
// MACs. An instance claims an address before it offers it; the claim holds
// for the offer's hold and frees itself when nobody takes the offer. The
// ACK of the instance the client chose binds the lease: BindLease writes
// the lease record and ends the claim in one transaction.
//
// Bolt (one flint instance) grants every claim: its allocator's in-memory
// address book already decides alone. Etcd claims with a transaction that
// creates claims/<ip> under an etcd lease of the hold.
type Claims interface {
	// ClaimAddress claims ip for mac for hold. ok is false when another MAC
	// holds a claim or an unexpired lease on ip at now (holder names it;
	// "declined" for a quarantined address). Claiming again for the same MAC succeeds and
	// renews the hold. An error wrapping ErrUnavailable means no quorum.
	ClaimAddress(ip netip.Addr, mac string, hold time.Duration, now time.Time) (ok bool, holder string, err error)
	// ReleaseClaim ends mac's claim of ip, if it holds one.
	ReleaseClaim(ip netip.Addr, mac string) error
	// BindLease writes l (bound to l.MAC) and ends the claim of l.IP, in
	// one transaction that fails (ok false, holder named) if another MAC
	// holds a claim or an unexpired lease on l.IP.
	BindLease(l Lease, now time.Time) (ok bool, holder string, err error)
	// Shared reports whether other flint instances may claim addresses in
	// the same store (etcd), so that the claims are real transactions.
	Shared() bool
}

// ClaimsOf returns the claims of st: its own if it has them (also behind a
// wrapper with an Unwrap method, like events.Recorder), else those of a
// single instance (every claim granted, leases written with PutLease).
func ClaimsOf(st Store) Claims {
	switch v := st.(type) {
	case Claims:
		return v
	case interface{ Unwrap() Store }:
		return ClaimsOf(v.Unwrap())
	}
	return soleClaims{st}
}

// soleClaims are the claims of a store only one flint instance uses.
type soleClaims struct{ st Store }

func (soleClaims) ClaimAddress(netip.Addr, string, time.Duration, time.Time) (bool, string, error) {
	return true, "", nil
}

func (soleClaims) ReleaseClaim(netip.Addr, string) error { return nil }

func (c soleClaims) BindLease(l Lease, _ time.Time) (bool, string, error) {
	return true, "", c.st.PutLease(l)
}

func (soleClaims) Shared() bool { return false }

// holderOf says whether a lease record keeps ip from mac at now, and whom
// for.
func holderOf(l Lease, mac string, now time.Time) (taken bool, holder string) {
	if !l.Expires.After(now) {
		return false, ""
	}
	if l.State == LeaseBound && l.MAC == mac {
		return false, ""
	}
	if l.State == LeaseDeclined {
		return true, "declined"
	}
	return true, l.MAC
}
