package store

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/flint-boot/flint/internal/etcdtest"
)

// TestClaimsBolt: one instance owns a bolt store, so every claim is granted
// and BindLease is PutLease.
func TestClaimsBolt(t *testing.T) {
	st := boltBackend(t).open(t)
	defer st.Close()
	c := ClaimsOf(st)
	if c.Shared() {
		t.Error("a bolt store says it is shared")
	}
	ip, now := netip.MustParseAddr("198.18.0.50"), time.Now()
	for _, mac := range []string{"52:54:00:00:00:01", "52:54:00:00:00:02"} {
		if ok, who, err := c.ClaimAddress(ip, mac, time.Minute, now); !ok || who != "" || err != nil {
			t.Errorf("claim for %s: %v %q %v", mac, ok, who, err)
		}
	}
	l := Lease{IP: ip, MAC: "52:54:00:00:00:01", State: LeaseBound, Start: now, Expires: now.Add(time.Hour)}
	if ok, _, err := c.BindLease(l, now); !ok || err != nil {
		t.Fatalf("bind: %v %v", ok, err)
	}
	if got, ok, _ := st.Lease(ip); !ok || got.MAC != l.MAC {
		t.Errorf("lease after BindLease: %+v %v", got, ok)
	}
}

// TestClaimsEtcd: several flint instances on one etcd prefix.
func TestClaimsEtcd(t *testing.T) {
	cl := etcdtest.Start(t, 1)
	now := time.Now()
	ip := netip.MustParseAddr("198.18.0.60")
	const mac1, mac2 = "52:54:00:00:00:01", "52:54:00:00:00:02"

	t.Run("two instances racing for each address: one wins", func(t *testing.T) {
		a, b := openEtcd(t, cl, "/flint/race/"), openEtcd(t, cl, "/flint/race/")
		if !ClaimsOf(a).Shared() {
			t.Fatal("an etcd store says it is not shared")
		}
		const n = 40
		var wg sync.WaitGroup
		wins := make([][2]bool, n)
		errs := make(chan error, 2*n)
		for i := range n {
			addr := netip.AddrFrom4([4]byte{198, 18, 1, byte(i + 1)})
			for j, st := range []*Etcd{a, b} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ok, _, err := st.ClaimAddress(addr, fmt.Sprintf("52:54:00:00:01:%02x", j), time.Minute, now)
					if err != nil {
						errs <- err
					}
					wins[i][j] = ok
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		won := [2]int{}
		for i, w := range wins {
			if w[0] == w[1] {
				t.Errorf("address %d: both won or both lost: %v", i, w)
			}
			for j := range w {
				if w[j] {
					won[j]++
				}
			}
		}
		t.Logf("%d addresses raced for by two instances: %d won by one, %d by the other", n, won[0], won[1])
	})

	t.Run("a claim, its bind and what they keep out", func(t *testing.T) {
		a, b := openEtcd(t, cl, "/flint/bind/"), openEtcd(t, cl, "/flint/bind/")
		if ok, _, err := a.ClaimAddress(ip, mac1, time.Minute, now); !ok || err != nil {
			t.Fatalf("first claim: %v %v", ok, err)
		}
		if ok, _, err := a.ClaimAddress(ip, mac1, time.Minute, now); !ok || err != nil {
			t.Fatalf("the same MAC claiming again: %v %v", ok, err)
		}
		if ok, who, err := b.ClaimAddress(ip, mac2, time.Minute, now); ok || who != mac1 || err != nil {
			t.Fatalf("another MAC's claim: %v %q %v; want refused, held by %s", ok, who, err, mac1)
		}
		other := Lease{IP: ip, MAC: mac2, State: LeaseBound, Start: now, Expires: now.Add(time.Hour)}
		if ok, who, err := b.BindLease(other, now); ok || who != mac1 || err != nil {
			t.Fatalf("another MAC's bind: %v %q %v", ok, who, err)
		}
		mine := other
		mine.MAC = mac1
		if ok, _, err := b.BindLease(mine, now); !ok || err != nil {
			t.Fatalf("the claimer's bind (by another instance): %v %v", ok, err)
		}
		if v, err := a.get(etcdClaimKey(ip)); err != nil || v != nil {
			t.Errorf("the claim after the bind: %q %v; want none (the lease keeps the address)", v, err)
		}
		if ok, who, err := b.ClaimAddress(ip, mac2, time.Minute, now); ok || who != mac1 || err != nil {
			t.Errorf("a claim of a bound address: %v %q %v", ok, who, err)
		}
		later := now.Add(2 * time.Hour) // the lease expired
		if ok, _, err := b.ClaimAddress(ip, mac2, time.Minute, later); !ok || err != nil {
			t.Errorf("a claim of an expired lease's address: %v %v", ok, err)
		}
		if err := a.ReleaseClaim(ip, mac1); err != nil { // not mac1's: nothing happens
			t.Fatal(err)
		}
		if ok, who, _ := a.ClaimAddress(ip, mac1, time.Minute, later); ok || who != mac2 {
			t.Errorf("after another MAC's release: %v %q; the claim of %s must stay", ok, who, mac2)
		}
		if err := b.ReleaseClaim(ip, mac2); err != nil {
			t.Fatal(err)
		}
		if ok, _, err := a.ClaimAddress(ip, mac1, time.Minute, later); !ok || err != nil {
			t.Errorf("after the holder's release: %v %v", ok, err)
		}
	})

	t.Run("an offer nobody takes frees itself", func(t *testing.T) {
		a, b := openEtcd(t, cl, "/flint/hold/"), openEtcd(t, cl, "/flint/hold/")
		if ok, _, err := a.ClaimAddress(ip, mac1, time.Second, now); !ok || err != nil {
			t.Fatalf("claim: %v %v", ok, err)
		}
		start := time.Now()
		for {
			ok, who, err := b.ClaimAddress(ip, mac2, time.Second, now)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				break
			}
			if who != mac1 {
				t.Fatalf("held by %q, want %s", who, mac1)
			}
			if time.Since(start) > 10*time.Second {
				t.Fatal("a one-second hold still held after 10s")
			}
			time.Sleep(100 * time.Millisecond)
		}
		took := time.Since(start)
		t.Logf("a 1s hold freed itself after %v (etcd's lease TTL has a floor of about 2s)", took.Round(10*time.Millisecond))
		if took < 500*time.Millisecond {
			t.Errorf("the hold ended after %v, before its second", took)
		}
	})

	t.Run("no quorum: ErrUnavailable", func(t *testing.T) {
		dead := etcdtest.Start(t, 1)
		st, err := OpenEtcd(EtcdConfig{Endpoints: dead.Endpoints(), TLS: dead.TLS, Prefix: "/flint/dead/", Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		dead.Kill(dead.Members[0])
		_, _, err = st.ClaimAddress(ip, mac1, time.Minute, now)
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("claim without quorum: %v; want ErrUnavailable", err)
		}
		l := Lease{IP: ip, MAC: mac1, State: LeaseBound, Start: now, Expires: now.Add(time.Hour)}
		if _, _, err := st.BindLease(l, now); !errors.Is(err, ErrUnavailable) {
			t.Errorf("bind without quorum: %v; want ErrUnavailable", err)
		}
	})
}
