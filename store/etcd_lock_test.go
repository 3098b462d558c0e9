package store

import (
	"context"
	"testing"
	"time"

	"github.com/flint-boot/flint/internal/etcdtest"
)

// TestEtcdLock: one holder at a time across clients (flint instances); the
// next one gets the lock when it is released, or within lockTTL of its
// holder dying without a word; a waiter gives up with its context.
func TestEtcdLock(t *testing.T) {
	cl := etcdtest.Start(t, 1)
	a, b := openEtcd(t, cl, "/flint/lock/"), openEtcd(t, cl, "/flint/lock/")
	unlockA, err := a.Lock(context.Background(), "etcd-membership")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("a waiter gives up with its context", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if _, err := b.Lock(ctx, "etcd-membership"); err == nil {
			t.Fatal("b took the lock a holds")
		}
	})
	t.Run("the next holder gets it when it is released", func(t *testing.T) {
		got := make(chan time.Time, 1)
		go func() {
			unlockB, err := b.Lock(context.Background(), "etcd-membership")
			if err != nil {
				t.Error(err)
				close(got)
				return
			}
			got <- time.Now()
			unlockB()
		}()
		time.Sleep(500 * time.Millisecond)
		select {
		case <-got:
			t.Fatal("b got the lock while a held it")
		default:
		}
		released := time.Now()
		unlockA()
		at, ok := <-got
		if !ok {
			return
		}
		t.Logf("b got the lock %v after a released it", at.Sub(released).Round(time.Millisecond))
	})
	t.Run("a dead holder frees it within its ttl", func(t *testing.T) {
		c := openEtcd(t, cl, "/flint/lock/")
		if _, err := c.Lock(context.Background(), "etcd-membership"); err != nil {
			t.Fatal(err)
		}
		c.Close() // no unlock: as if the process died
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), lockTTL+5*time.Second)
		defer cancel()
		unlock, err := b.Lock(ctx, "etcd-membership")
		if err != nil {
			t.Fatalf("the lock of a dead holder was not freed within %v: %v", lockTTL+5*time.Second, err)
		}
		unlock()
		t.Logf("b got the dead holder's lock after %v (ttl %v)", time.Since(start).Round(100*time.Millisecond), lockTTL)
	})
}
