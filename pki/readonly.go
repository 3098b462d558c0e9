package pki

import (
	"errors"
	"log/slog"
	"slices"
	"time"
)

// ErrNoPKI is returned by OpenExisting when the directory holds no CA, or
// lacks a token or key that flint serve creates on start.
var ErrNoPKI = errors.New("no PKI")

// OpenExisting opens the PKI in dir for reading only, for commands that must
// not change the data directory (flint render, flint pki). It writes nothing:
// no directory, CA, token, certificate or node password, and it leaves file
// modes alone. Without a CA and the tokens flint serve creates, it fails with
// an error matching ErrNoPKI. A certificate or node password that serve would
// create on demand (a machine that never fetched its config) is made in memory
// instead and listed by Unsaved; a certificate that serve would re-issue is
// re-issued in memory the same way.
func OpenExisting(dir string, now func() time.Time, log *slog.Logger) (*PKI, error) {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return OpenExistingStorage(FileStorage(dir), now, log)
}

// OpenExistingStorage is OpenExisting on any Storage, e.g. EtcdStorage. It
// writes nothing there either.
func OpenExistingStorage(st Storage, now func() time.Time, log *slog.Logger) (*PKI, error) {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &PKI{store: st, now: now, log: log, readOnly: true}
	if err := st.start(true, log); err != nil {
		return nil, err
	}
	if err := p.loadOrCreateCA(); err != nil {
		return nil, err
	}
	if err := p.loadOrCreateSecrets(); err != nil {
		return nil, err
	}
	return p, nil
}

// Ephemeral makes a throw-away PKI in memory: a new CA, tokens and keys, and
// certificates and node passwords made on request. It never touches the disk;
// flint validate renders with it.
func Ephemeral(now func() time.Time) (*PKI, error) {
	if now == nil {
		now = time.Now
	}
	p := &PKI{store: FileStorage("(in memory)"), now: now, log: slog.New(slog.DiscardHandler), readOnly: true, ephemeral: true}
	if err := p.createCA(); err != nil {
		return nil, err
	}
	if err := p.loadOrCreateSecrets(); err != nil {
		return nil, err
	}
	return p, nil
}

// Unsaved lists the files (relative to the PKI directory) that a PKI from
// OpenExisting made in memory because they did not exist or no longer fit:
// flint serve creates its own when the machine first fetches its config.
func (p *PKI) Unsaved() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.unsaved)
}
