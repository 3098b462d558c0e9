package store

import (
	"context"
	"fmt"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"
)

// lockTTL is how long a lock outlives the instance holding it when that
// instance dies (its session's lease is no longer kept alive).
const lockTTL = 10 * time.Second

// Lock takes the lock name for every flint instance sharing the store,
// waiting until it is free or ctx ends, under locks/<name> (an etcd mutex
// in a session of its own: an instance that dies holding it frees it within
// lockTTL). unlock releases it.
func (s *Etcd) Lock(ctx context.Context, name string) (unlock func(), err error) {
	s.closeMu.RLock()
	closed := s.closed
	s.closeMu.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	// Waiting may take as long as another instance holds the lock: bounded
	// by ctx, and by the store's Close.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.ctx, cancel)()
	sess, err := concurrency.NewSession(s.cli, concurrency.WithTTL(int(lockTTL/time.Second)), concurrency.WithContext(s.ctx))
	if err != nil {
		return nil, fmt.Errorf("lock %s in the etcd store: %w", name, err)
	}
	mu := concurrency.NewMutex(sess, s.prefix+"locks/"+name)
	if err := mu.Lock(ctx); err != nil {
		sess.Close()
		return nil, fmt.Errorf("lock %s in the etcd store: %w", name, err)
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		defer cancel()
		mu.Unlock(uctx)
		sess.Close()
	}, nil
}
