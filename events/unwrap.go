package events

import "github.com/flint-boot/flint/store"

// Unwrap returns the store the Recorder writes to, so that store.ClaimsOf
// finds its address claims.
func (r *Recorder) Unwrap() store.Store { return r.Store }
