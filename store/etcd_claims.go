package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

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

// readClaim reads claims/<ip> and leases/<ip> at one revision.
func (s *Etcd) readClaim(ctx context.Context, ip netip.Addr) (claimState, error) {
	var st claimState
	ck, lk := s.prefix+etcdClaimKey(ip), s.prefix+etcdLeaseKey(ip)
	resp, err := s.cli.Txn(ctx).Then(clientv3.OpGet(ck), clientv3.OpGet(lk)).Commit()
	if err != nil {
		return st, err
	}
	if r := resp.Responses[0].GetResponseRange(); r != nil && len(r.Kvs) > 0 {
		st.claimRev, st.claimMAC = r.Kvs[0].ModRevision, string(r.Kvs[0].Value)
	}
	if r := resp.Responses[1].GetResponseRange(); r != nil && len(r.Kvs) > 0 {
		st.leaseRev = r.Kvs[0].ModRevision
		if err := json.Unmarshal(r.Kvs[0].Value, &st.lease); err != nil {
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

// ClaimAddress implements Claims.
func (s *Etcd) ClaimAddress(ip netip.Addr, mac string, hold time.Duration, now time.Time) (bool, string, error) {
	if !ip.Is4() || mac == "" {
		return false, "", fmt.Errorf("claim of %v for %q: need an IPv4 address and a MAC", ip, mac)
	}
	ctx, end, err := s.begin()
	if err != nil {
		return false, "", err
	}
	defer end()
	ttl := int64((hold + time.Second - 1) / time.Second)
	ttl = max(ttl, 1)
	var grant clientv3.LeaseID
	defer func() {
		if grant != 0 { // granted but not used: free it now rather than at its TTL
			rctx, cancel := context.WithTimeout(context.Background(), time.Second)
			s.cli.Revoke(rctx, grant)
			cancel()
		}
	}()
	for range claimAttempts {
		st, err := s.readClaim(ctx, ip)
		if err != nil {
			return false, "", s.unavailable(ctx, err)
		}
		if who, taken := st.holder(mac, now); taken {
			return false, who, nil
		}
		if grant == 0 {
			g, err := s.cli.Grant(ctx, ttl)
			if err != nil {
				return false, "", s.unavailable(ctx, err)
			}
			grant = g.ID
		}
		resp, err := s.cli.Txn(ctx).If(st.guard(s, ip)...).
			Then(clientv3.OpPut(s.prefix+etcdClaimKey(ip), mac, clientv3.WithLease(grant))).Commit()
		if err != nil {
			return false, "", s.unavailable(ctx, err)
		}
		if resp.Succeeded {
			s.seen(resp.Header.Revision)
			grant = 0
			return true, "", nil
		}
		// Someone wrote either key meanwhile: read again.
	}
	return false, "", s.unavailable(ctx, fmt.Errorf("claim of %s: gave up after %d conflicting attempts", ip, claimAttempts))
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

// BindLease implements Claims.
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
	for range claimAttempts {
		st, err := s.readClaim(ctx, l.IP)
		if err != nil {
			return false, "", s.unavailable(ctx, err)
		}
		if who, taken := st.holder(l.MAC, now); taken {
			return false, who, nil
		}
		ops := []clientv3.Op{clientv3.OpPut(s.prefix+etcdLeaseKey(l.IP), string(v))}
		if st.claimRev != 0 {
			ops = append(ops, clientv3.OpDelete(s.prefix+etcdClaimKey(l.IP)))
		}
		resp, err := s.cli.Txn(ctx).If(st.guard(s, l.IP)...).Then(ops...).Commit()
		if err != nil {
			return false, "", s.unavailable(ctx, err)
		}
		if resp.Succeeded {
			s.seen(resp.Header.Revision)
			return true, "", nil
		}
	}
	return false, "", s.unavailable(ctx, fmt.Errorf("lease of %s: gave up after %d conflicting attempts", l.IP, claimAttempts))
}

// Shared implements Claims: other flint instances may use the same prefix.
func (s *Etcd) Shared() bool { return true }
