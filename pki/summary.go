package pki

import (
	"log/slog"
	"sync"
	"time"
)

// summaryQuiet is how long the PKI waits after the last file it created
// before it logs what it created: one line per burst (a start-up, a boot
// storm's first configs), not one per certificate. Tests shorten it.
var summaryQuiet = 2 * time.Second

// tally counts what the PKI created since its last summary line.
type tally struct {
	mu        sync.Mutex
	log       *slog.Logger
	timer     *time.Timer
	caCreated bool
	certs     int // leaf certificates issued where none was on disk
	renewed   int // leaf certificates re-issued (each also logged with its reason)
	secrets   int // tokens, keys and node passwords generated
}

// note counts one creation and (re)arms the summary.
func (t *tally) note(f func(*tally)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f(t)
	if t.timer == nil {
		t.timer = time.AfterFunc(summaryQuiet, t.flush)
	} else {
		t.timer.Reset(summaryQuiet)
	}
}

// flush logs the counts and starts over.
func (t *tally) flush() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.certs+t.renewed+t.secrets == 0 && !t.caCreated {
		return
	}
	ca := "CA kept"
	if t.caCreated {
		ca = "CA created"
	}
	t.log.Info("pki: "+ca, "certificates_issued", t.certs, "certificates_renewed", t.renewed, "secrets_generated", t.secrets)
	t.caCreated, t.certs, t.renewed, t.secrets = false, 0, 0, 0
}
