package dhcp

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/flint-boot/flint/store"
)

// offerClaimed picks a pool address for an unknown client and claims it in
// the store before it is offered (AfterClaim decides); ok false: no offer,
// logged and noted.
func (s *Server) offerClaimed(r *fullReq, requested netip.Addr, now time.Time) (netip.Addr, bool) {
	log, mac, pool := r.log, r.ci.mac, r.sub.Pool
	for tries := 1; ; tries++ {
		ip, ok := r.a.offer(mac, requested, now)
		if !ok {
			s.complain(log, "pool full "+mac, slog.LevelWarn, "no address for an unknown machine: the pool is exhausted (logged once a minute)", "pool", pool.Start+"-"+pool.End)
			s.note(r, netip.Addr{}, "dhcp DISCOVER (ignored: pool exhausted)")
			return netip.Addr{}, false
		}
		got, holder, err := s.claims.ClaimAddress(ip, mac, r.a.offerHold, now)
		res := claimResultOf(got, err)
		s.countClaim(res)
		switch AfterClaim(res, tries) {
		case OfferIt:
			return ip, true
		case OfferNext:
			log.Debug("address claimed by another flint instance: trying the next", "ip", ip, "holder", holder)
			r.a.claimedElsewhere(mac, ip, now)
			continue
		}
		r.a.dropHold(mac)
		if err != nil {
			s.complain(log, "claim failed", slog.LevelWarn, "no offer: the address claim was not committed, and a new address never goes out without one; check the etcd cluster's quorum (logged once a minute)", "ip", ip, "err", err)
			s.note(r, netip.Addr{}, "dhcp DISCOVER (ignored: address claim not committed)")
		} else {
			s.complain(log, "claims taken", slog.LevelWarn, "no offer: the addresses tried were all claimed by other flint instances (logged once a minute)", "tries", tries)
			s.note(r, netip.Addr{}, "dhcp DISCOVER (ignored: addresses claimed elsewhere)")
		}
		return netip.Addr{}, false
	}
}

// persistLease makes the bound lease l durable before its ACK (AfterBind
// decides): a pool address through the store's claims, so that it fails if
// another MAC holds the address; a reservation (the config machine's alone)
// with PutLease. undo reverts the book's bind. done true: answer with reply
// and dest (possibly nothing) instead of the ACK. fromCache: the store did
// not commit but the renewal is ACKed from memory; the book's bind was
// undone, so the client keeps its lease as the store holds it.
func (s *Server) persistLease(r *fullReq, l store.Lease, renewal bool, undo func()) (reply *dhcpv4.DHCPv4, dest *net.UDPAddr, done, fromCache bool) {
	log := r.log
	var res ClaimResult
	var holder string
	var err error
	if r.res().IsValid() {
		err = s.st.PutLease(l)
		res = claimResultOf(true, err)
		if res == ClaimFailed && s.shared && !errors.Is(err, store.ErrClosed) {
			res = ClaimUnavailable // a write to etcd that did not commit
		}
	} else {
		var ok bool
		ok, holder, err = s.claims.BindLease(l, s.now())
		res = claimResultOf(ok, err)
		s.countClaim(res)
	}
	switch AfterBind(res, renewal) {
	case AckIt:
		return nil, nil, false, false
	case AckFromCache:
		undo()
		s.complain(log, "renew from memory", slog.LevelWarn, "etcd is unreachable (no quorum): the client keeps its address until its lease in the store ends, answered from this instance's memory; a renewal once etcd answers extends it (logged once a minute)", "ip", l.IP, "err", err)
		return nil, nil, false, true
	case AckNak:
		undo()
		r.a.claimedElsewhere(l.MAC, l.IP, s.now())
		reply, dest := s.nak(r, l.IP, "held by "+holder+" in the state store (another flint instance)")
		return reply, dest, true, false
	}
	undo()
	log.Error("lease not saved, no ACK sent (the client will retry)", "ip", l.IP, "err", err)
	return nil, nil, true, false
}

// countClaim counts a claim or bind of a pool address.
func (s *Server) countClaim(res ClaimResult) {
	s.metrics.DHCPClaim(res.String())
	if s.onClaim != nil {
		s.onClaim(res)
	}
}

// learn takes in the lease of ip from a shared store when the book does not
// give ip to the client: another instance may have bound it (the client
// rebinds or reboots through this one). One read, by key.
func (s *Server) learn(r *fullReq, ip netip.Addr) {
	if !s.shared || !ip.IsValid() || r.res().IsValid() || !r.sub.Prefix.Contains(ip) {
		return
	}
	now := s.now()
	if r.a.renewal(r.ci.mac, ip, now) {
		return
	}
	l, ok, err := s.st.Lease(ip)
	if err != nil {
		r.log.Debug("lease not read from the shared store", "ip", ip, "err", err)
		return
	}
	if ok && l.MAC == r.ci.mac {
		r.a.adopt(l, now)
	}
}

// dropOffer frees the offer made to a client that chose another server. In
// a shared store its claim goes too, unless it is the address the client
// asked the other instance for (the claim is the MAC's, and that instance
// binds it).
func (s *Server) dropOffer(r *fullReq, requested netip.Addr) {
	ip, ok := r.a.dropOffer(r.ci.mac)
	if !ok || !s.shared || ip == requested {
		return
	}
	if err := s.claims.ReleaseClaim(ip, r.ci.mac); err != nil {
		r.log.Debug("claim not released (its hold ends it)", "ip", ip, "err", err)
	}
}
