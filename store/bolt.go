package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	bucketLeases     = []byte("leases")
	bucketMachines   = []byte("machines")
	bucketEvents     = []byte("events")     // one nested bucket per MAC, keys: big-endian nanoseconds + sequence
	bucketDiscovered = []byte("discovered") // index of discovered records: big-endian first-seen nanoseconds + MAC -> nothing
	bucketKnown      = []byte("known")      // index of the config's machines (records with Known): MAC -> nothing
	bucketMeta       = []byte("meta")       // single values, keys below
)

// Keys of the meta bucket.
var (
	metaRebuild    = []byte("rebuild")          // MAC holding the rebuild slot
	metaDiscovered = []byte("discovered_count") // entries in bucketDiscovered, big-endian uint64
	metaIncomplete = []byte("incomplete")       // a Load began and was not completed (see Porter)
)

// FileName is the database file inside the data directory.
const FileName = "flint.db"

// Bolt is the embedded single-node Store. bbolt commits with fsync and never
// leaves a half-written page visible, so a kill -9 loses nothing acknowledged.
type Bolt struct {
	db     *bolt.DB
	limits Limits
	writes chan writeReq
	done   chan struct{}

	existingOnly bool // see ExistingOnly

	// closeMu orders writers against Close: a write holds it shared while it
	// queues, Close exclusively while it marks the store closed, so no write
	// is ever sent on the closed queue.
	closeMu sync.RWMutex
	closed  bool

	// version counts committed write transactions (see Version).
	version atomic.Uint64
}

// accessAdvice is what to do about a data directory this user may not use:
// the state belongs to the user flint serve runs as.
func accessAdvice(err error) string {
	if !errors.Is(err, fs.ErrPermission) {
		return ""
	}
	return " (permission denied: the data directory belongs to the user flint serve runs as, usually root; run this as that user, fix the directory's owner or mode, or pass another --data)"
}

type writeReq struct {
	fn  func(*bolt.Tx) error
	err chan error
}

// maxGroup bounds how many writes share one transaction.
const maxGroup = 512

// Option tunes OpenBolt and OpenEtcd.
type Option func(*options)

type options struct {
	limits          Limits
	existingOnly    bool
	allowIncomplete bool // see AllowIncomplete
}

func applyOptions(opts []Option) options {
	o := options{limits: Limits{Discovered: MaxDiscovered, Events: MaxEventsPerMachine}}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// WithLimits bounds discovered records and timelines (zero fields keep the defaults).
func WithLimits(l Limits) Option {
	return func(o *options) {
		if l.Discovered > 0 {
			o.limits.Discovered = l.Discovered
		}
		if l.Events > 0 {
			o.limits.Events = l.Events
		}
	}
}

// ExistingOnly makes OpenBolt fail with ErrNoState instead of creating a
// database: for commands that change a state flint serve made, which must
// not leave one behind in a directory serve never used. OpenEtcd ignores it:
// the etcd store is shared and created by whoever writes first.
func ExistingOnly() Option { return func(o *options) { o.existingOnly = true } }

// ErrNoState: the data directory holds no flint database.
var ErrNoState = errors.New("no flint state")

// OpenBolt opens (creating if needed) DIR/flint.db. With readOnly it takes a
// shared lock and fails fast with ErrLocked while a server holds the database.
func OpenBolt(dir string, readOnly bool, opts ...Option) (*Bolt, error) {
	o := applyOptions(opts)
	s := &Bolt{limits: o.limits, existingOnly: o.existingOnly}
	path := filepath.Join(dir, FileName)
	if readOnly || s.existingOnly {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w in %s: %s does not exist (run flint serve with --data %s first, or pass the --data of your flint serve)", ErrNoState, dir, path, dir)
		} else if err != nil {
			return nil, fmt.Errorf("read flint state in %s: %w%s", dir, err, accessAdvice(err))
		}
	}
	if !readOnly {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create data directory %s: %w%s", dir, err, accessAdvice(err))
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 300 * time.Millisecond, ReadOnly: readOnly})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("%s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w%s", path, err, accessAdvice(err))
	}
	s.db = db
	if !o.allowIncomplete {
		if inc, err := s.Incomplete(); err != nil || inc {
			db.Close()
			if err == nil {
				err = ErrIncomplete
			}
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	if !readOnly {
		err = db.Update(func(tx *bolt.Tx) error {
			newKnown := tx.Bucket(bucketKnown) == nil
			for _, b := range [][]byte{bucketLeases, bucketMachines, bucketEvents, bucketDiscovered, bucketKnown, bucketMeta} {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			if newKnown {
				if err := reindexKnown(tx); err != nil { // a database from before the index
					return err
				}
			}
			if tx.Bucket(bucketMeta).Get(metaDiscovered) == nil {
				return s.reindexDiscovered(tx) // a database from before the index
			}
			return nil
		})
		if err != nil {
			db.Close()
			return nil, fmt.Errorf("initialise state %s: %w", path, err)
		}
		s.writes = make(chan writeReq, maxGroup)
		s.done = make(chan struct{})
		go s.commitLoop()
	}
	return s, nil
}

// write runs fn in a read-write transaction and returns once it is on disk.
// Writes that arrive while a commit is being fsynced are grouped into the next
// transaction (group commit): one fsync serves many DHCP ACKs, without the fixed
// wait bbolt's own Batch adds to every call. After Close it returns ErrClosed.
func (s *Bolt) write(fn func(*bolt.Tx) error) error {
	if s.writes == nil {
		return fmt.Errorf("state opened read-only")
	}
	req := writeReq{fn: fn, err: make(chan error, 1)}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return ErrClosed
	}
	s.writes <- req
	s.closeMu.RUnlock()
	return <-req.err
}

func (s *Bolt) commitLoop() {
	defer close(s.done)
	for first := range s.writes {
		group := []writeReq{first}
	drain:
		for len(group) < maxGroup {
			select {
			case r, ok := <-s.writes:
				if !ok {
					break drain
				}
				group = append(group, r)
			default:
				break drain
			}
		}
		s.commit(group)
	}
}

// commit applies a group in one transaction; if any write fails, the group is
// rolled back and each write retried alone so one bad write fails only itself.
func (s *Bolt) commit(group []writeReq) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, r := range group {
			if err := r.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || len(group) == 1 {
		if err == nil {
			s.version.Add(1)
		}
		for _, r := range group {
			r.err <- err
		}
		return
	}
	for _, r := range group {
		err := s.db.Update(r.fn)
		if err == nil {
			s.version.Add(1)
		}
		r.err <- err
	}
}

// Version implements Store: it grows with every committed write.
func (s *Bolt) Version() uint64 { return s.version.Load() }

// Close implements Store. Writes queued before it are committed; later ones
// return ErrClosed.
func (s *Bolt) Close() error {
	if s.writes != nil {
		s.closeMu.Lock()
		if s.closed {
			s.closeMu.Unlock()
			return nil
		}
		s.closed = true
		close(s.writes)
		s.closeMu.Unlock()
		<-s.done
	}
	return s.db.Close()
}
