package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Address claims on etcd (see Claims). Keys, under the prefix:
//
//	claims/<ip>   the MAC an address is offered to, attached to an etcd
//	              lease of the offer's hold: etcd deletes it when the hold
//	              runs out
//
// A claim is taken by a transaction that commits only if neither
// claims/<ip> nor leases/<ip> changed since they were read, and they said
// the address is free for the MAC: no claim of another MAC, no unexpired
// lease of another MAC (or a quarantine). BindLease puts leases/<ip> and
// deletes claims/<ip> in one transaction under the same guard, so the lease
// record then keeps the address.

func etcdClaimKey(ip netip.Addr) string { return "claims/" + ip.String() }

// claimAttempts bounds the read-compare-write rounds of one claim when
// other writers keep changing the keys.
const claimAttempts = 8

// claimState is what etcd holds about one address.
type claimState struct {
	claimRev, leaseRev int64
	claimMAC           string
	lease              Lease
	hasLease           bool
}

// claimStateOf reads what a transaction's gets of claims/<ip> and
// leases/<ip> returned.
func claimStateOf(ip netip.Addr, claim, lease *etcdserverpb.RangeResponse) (claimState, error) {
	var st claimState
	if claim != nil && len(claim.Kvs) > 0 {
		st.claimRev, st.claimMAC = claim.Kvs[0].ModRevision, string(claim.Kvs[0].Value)
	}
	if lease != nil && len(lease.Kvs) > 0 {
		st.leaseRev = lease.Kvs[0].ModRevision
		if err := json.Unmarshal(lease.Kvs[0].Value, &st.lease); err != nil {
			return st, fmt.Errorf("lease %s is corrupt: %w", ip, err)
		}
		st.hasLease = true
	}
	return st, nil
}

// holder says who keeps ip from mac at now ("" and false: nobody).
func (st claimState) holder(mac string, now time.Time) (string, bool) {
	if st.claimMAC != "" && st.claimMAC != mac {
		return st.claimMAC, true
	}
	if st.hasLease {
		if taken, who := holderOf(st.lease, mac, now); taken {
			return who, true
		}
	}
	return "", false
}

// guard compares both keys with what was read.
func (st claimState) guard(s *Etcd, ip netip.Addr) []clientv3.Cmp {
	return []clientv3.Cmp{
		clientv3.Compare(clientv3.ModRevision(s.prefix+etcdClaimKey(ip)), "=", st.claimRev),
		clientv3.Compare(clientv3.ModRevision(s.prefix+etcdLeaseKey(ip)), "=", st.leaseRev),
	}
}

// unavailable marks an etcd error as no quorum (or closed).
func (s *Etcd) unavailable(ctx context.Context, err error) error {
	err = s.fail(ctx, err)
	if errors.Is(err, ErrClosed) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// claimOrRead is one attempt: the transaction commits ops if cmps hold, or
// else reads claims/<ip> and leases/<ip> at its revision, so that a failed
// attempt needs no second round trip to learn why.
func (s *Etcd) claimOrRead(ctx context.Context, ip netip.Addr, cmps []clientv3.Cmp, ops ...clientv3.Op) (bool, claimState, error) {
	ck, lk := s.prefix+etcdClaimKey(ip), s.prefix+etcdLeaseKey(ip)
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Else(clientv3.OpGet(ck), clientv3.OpGet(lk)).Commit()
	if err != nil {
		return false, claimState{}, err
	}
	if resp.Succeeded {
		s.seen(resp.Header.Revision)
		return true, claimState{}, nil
	}
	st, err := claimStateOf(ip, resp.Responses[0].GetResponseRange(), resp.Responses[1].GetResponseRange())
	return false, st, err
}

// ClaimAddress implements Claims. The first attempt assumes the usual case
// of a storm, an address nobody claimed or leased: both keys absent, one
// transaction. Otherwise it learns what holds the address from that same
// transaction and compares-and-swaps on it.
func (s *Etcd) ClaimAddress(ip netip.Addr, mac string, hold time.Duration, now time.Time) (bool, string, error) {
	if !ip.Is4() || mac == "" {
		return false, "", fmt.Errorf("claim of %v for %q: need an IPv4 address and a MAC", ip, mac)
	}
	ctx, end, err := s.begin()
	if err != nil {
		return false, "", err
	}
	defer end()
	var st claimState // both keys absent: what the first attempt compares with
	for range claimAttempts {
		if who, taken := st.holder(mac, now); taken {
			return false, who, nil
		}
		lease, err := s.claimLease(ctx, hold)
		if err != nil {
			return false, "", s.unavailable(ctx, err)
		}
		ok, next, err := s.claimOrRead(ctx, ip, st.guard(s, ip), clientv3.OpPut(s.prefix+etcdClaimKey(ip), mac, clientv3.WithLease(lease)))
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			s.dropClaimLease(lease) // expired or revoked under us: grant another
			continue
		}
		if err != nil {
			return false, "", s.unavailable(ctx, err)
		}
		if ok {
			return true, "", nil
		}
		st = next // someone holds or held either key: decide on what is there
	}
	return false, "", s.unavailable(ctx, fmt.Errorf("claim of %s: gave up after %d conflicting attempts", ip, claimAttempts))
}

// claimLease is the etcd lease that claims of this hold are put under. One
// lease serves every claim for a second (its TTL is the hold plus that
// second, so each claim is held at least hold): a storm grants one lease a
// second instead of one per offer, and etcd expires one instead of each.
func (s *Etcd) claimLease(ctx context.Context, hold time.Duration) (clientv3.LeaseID, error) {
	ttl := max(int64((hold+time.Second-1)/time.Second), 1) + 1
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	if l := s.claimsLease; l.id != 0 && l.ttl == ttl && time.Now().Before(l.until) {
		return l.id, nil
	}
	start := time.Now()
	g, err := s.cli.Grant(ctx, ttl)
	if err != nil {
		return 0, err
	}
	s.claimsLease = sharedLease{id: g.ID, ttl: ttl, until: start.Add(time.Second)}
	return g.ID, nil
}

// dropClaimLease forgets a shared lease etcd no longer knows.
func (s *Etcd) dropClaimLease(id clientv3.LeaseID) {
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	if s.claimsLease.id == id {
		s.claimsLease = sharedLease{}
	}
}

// sharedLease is the lease claims are put under: its TTL, and until when
// new claims use it.
type sharedLease struct {
	id    clientv3.LeaseID
	ttl   int64
	until time.Time
}

// ReleaseClaim implements Claims.
func (s *Etcd) ReleaseClaim(ip netip.Addr, mac string) error {
	if !ip.Is4() {
		return nil
	}
	ctx, end, err := s.begin()
	if err != nil {
		return err
	}
	defer end()
	k := s.prefix + etcdClaimKey(ip)
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.Value(k), "=", mac)).Then(clientv3.OpDelete(k)).Commit()
	if err != nil {
		return s.unavailable(ctx, err)
	}
	if resp.Succeeded {
		s.seen(resp.Header.Revision)
	}
	return nil
}

// BindLease implements Claims. The first attempt assumes the usual case:
// the MAC's own claim and no lease record; otherwise it learns the state
// from that transaction and compares-and-swaps on it.
func (s *Etcd) BindLease(l Lease, now time.Time) (bool, string, error) {
	if !l.IP.Is4() || l.MAC == "" || l.State != LeaseBound {
		return false, "", fmt.Errorf("bind of %v for %q: need a bound lease with an IPv4 address and a MAC", l.IP, l.MAC)
	}
	v, err := json.Marshal(l)
	if err != nil {
		return false, "", err
	}
	ctx, end, err := s.begin()
	if err != nil {
		return false, "", err
	}
	defer end()
	ck, lk := s.prefix+etcdClaimKey(l.IP), s.prefix+etcdLeaseKey(l.IP)
	put := clientv3.OpPut(lk, string(v))
	cmps := []clientv3.Cmp{
		clientv3.Compare(clientv3.Value(ck), "=", l.MAC), // false when absent
		clientv3.Compare(clientv3.ModRevision(lk), "=", 0),
	}
	ops := []clientv3.Op{put, clientv3.OpDelete(ck)}
	for range claimAttempts {
		ok, st, err := s.claimOrRead(ctx, l.IP, cmps, ops...)
		if err != nil {
			return false, "", s.unavailable(ctx, err)
		}
		if ok {
			return true, "", nil
		}
		if who, taken := st.holder(l.MAC, now); taken {
			return false, who, nil
		}
		cmps, ops = st.guard(s, l.IP), []clientv3.Op{put}
		if st.claimRev != 0 {
			ops = append(ops, clientv3.OpDelete(ck))
		}
	}
	return false, "", s.unavailable(ctx, fmt.Errorf("lease of %s: gave up after %d conflicting attempts", l.IP, claimAttempts))
}

// Shared implements Claims: other flint instances may use the same prefix.
func (s *Etcd) Shared() bool { return true }
