package store

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Instance is a flint serving from an etcd store, as it announced itself
// under instances/<id>: instances compare their configs' fingerprints to
// learn that they would answer a machine alike.
type Instance struct {
	// ID names the instance: its HTTP base URL, unique on the LAN.
	ID string `json:"id"`
	// SiteHash is config.SiteHash of its config and profiles.
	SiteHash string    `json:"site_hash"`
	Version  string    `json:"version,omitempty"`
	Since    time.Time `json:"since"`
}

// maxInstances bounds what Instances reads: a site runs a handful.
const maxInstances = 64

func (s *Etcd) instanceKey(id string) string {
	return s.prefix + "instances/" + url.PathEscape(id)
}

// Announce publishes in under instances/<id>, tied to an etcd lease of ttl
// that it keeps alive until ctx ends or stop is called: an instance that
// dies (or loses the store for longer than ttl) vanishes from Instances
// within ttl, and is announced again once the store answers. stop revokes
// the lease, so a flint that shuts down vanishes at once.
func (s *Etcd) Announce(ctx context.Context, in Instance, ttl time.Duration) (stop func(), err error) {
	if ttl < 2*time.Second {
		return nil, fmt.Errorf("announce: ttl %s is below 2s", ttl)
	}
	val, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	context.AfterFunc(s.ctx, cancel) // the store's Close ends it too
	lease, err := s.announce(ctx, in.ID, val, ttl)
	if err != nil {
		cancel()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			s.keepAlive(ctx, lease)
			// The lease ran out (the store was unreachable longer than
			// ttl): announce again as soon as it answers.
			for ctx.Err() == nil {
				if lease, err = s.announce(ctx, in.ID, val, ttl); err == nil {
					break
				}
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}
	}()
	return func() {
		cancel()
		<-done
		rctx, rcancel := context.WithTimeout(context.Background(), time.Second)
		defer rcancel()
		s.cli.Revoke(rctx, lease) // best effort: otherwise it expires within ttl
	}, nil
}

// announce grants a lease and puts the instance's key under it.
func (s *Etcd) announce(ctx context.Context, id string, val []byte, ttl time.Duration) (clientv3.LeaseID, error) {
	octx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	g, err := s.cli.Grant(octx, int64((ttl+time.Second-1)/time.Second))
	if err != nil {
		return 0, fmt.Errorf("announce this flint in the etcd store: %w", err)
	}
	if _, err := s.cli.Put(octx, s.instanceKey(id), string(val), clientv3.WithLease(g.ID)); err != nil {
		return 0, fmt.Errorf("announce this flint in the etcd store: %w", err)
	}
	return g.ID, nil
}

// keepAlive renews the lease until ctx ends or the lease is gone.
func (s *Etcd) keepAlive(ctx context.Context, lease clientv3.LeaseID) {
	ch, err := s.cli.KeepAlive(ctx, lease)
	if err != nil {
		return
	}
	for range ch {
	}
}

// Instances lists the instances announced now, ordered by ID.
func (s *Etcd) Instances() ([]Instance, error) {
	ctx, done, err := s.begin()
	if err != nil {
		return nil, err
	}
	defer done()
	resp, err := s.cli.Get(ctx, s.prefix+"instances/", clientv3.WithPrefix(), clientv3.WithLimit(maxInstances),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, s.fail(ctx, err)
	}
	var out []Instance
	for _, kv := range resp.Kvs {
		var in Instance
		if err := json.Unmarshal(kv.Value, &in); err != nil {
			return nil, fmt.Errorf("instance record %s is damaged: %w", strings.TrimPrefix(string(kv.Key), s.prefix), err)
		}
		out = append(out, in)
	}
	return out, nil
}
