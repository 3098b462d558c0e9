package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"
)

// socketName is the admin socket in the data directory: the CLI asks the
// running flint serve through it (the database is locked meanwhile). Its
// permissions (0600, flint's user) are the authorisation.
const socketName = "flint.sock"

func socketPath(dataDir string) string { return filepath.Join(dataDir, socketName) }

// adminClient talks HTTP over the admin socket of dataDir.
func adminClient(dataDir string) *http.Client {
	path := socketPath(dataDir)
	return &http.Client{
		Timeout: 15 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
		},
	}
}

// adminCall sends a request to the running flint serve of dataDir and decodes
// its JSON answer into out. lockErr is why the database could not be opened
// directly, kept in the message when the socket cannot be reached either.
func adminCall(dataDir, method, path string, body any, out any, lockErr error) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://flint"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := adminClient(dataDir).Do(req)
	if err != nil {
		return fmt.Errorf("%w, and the running flint serve's admin socket %s does not answer: %v (run this as the user flint serve runs as, usually root)", lockErr, socketPath(dataDir), err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode != http.StatusOK {
		return &apiError{status: resp.StatusCode, msg: strings.TrimSpace(string(b))}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode the answer of flint serve to %s: %w", path, err)
	}
	return nil
}

// apiError is a refusal from the running flint serve, in its own words.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func isStatus(err error, code int) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.status == code
}
