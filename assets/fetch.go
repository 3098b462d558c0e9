package assets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// maxSmallFile caps checksum and signature files read into memory.
const maxSmallFile = 4 << 20

// StatusError is an HTTP answer other than the file (404, 500...).
type StatusError struct {
	URL    string
	Code   int
	Status string
}

func (e *StatusError) Error() string { return fmt.Sprintf("GET %s: %s", e.URL, e.Status) }

// NotFound reports a 404/410, or a missing file:// file: the version or
// base URL is wrong, retrying will not help.
func (e *StatusError) NotFound() bool {
	return e.Code == http.StatusNotFound || e.Code == http.StatusGone
}

// fetcher downloads over http(s) or from file:// URLs, resuming partial
// downloads and reporting progress.
type fetcher struct {
	client    *http.Client
	userAgent string
	log       *slog.Logger
	progress  Progress
	stall     time.Duration // give up on a transfer that sends nothing this long
	attempts  int           // tries per file; later tries resume
	backoff   time.Duration // first wait between tries, doubled each time

	requests atomic.Int64 // requests sent or files opened, for Result
	bytes    atomic.Int64 // content bytes received
}

// partMeta is stored beside a .part file: which URL and which version of it
// (ETag or Last-Modified) the bytes came from, so a resume never splices two
// different files.
type partMeta struct {
	URL          string `json:"url"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	FileStamp    string `json:"file_stamp,omitempty"` // file:// sources: size and mtime
}

func (m partMeta) resumable() bool { return m.ETag != "" || m.LastModified != "" || m.FileStamp != "" }

// fileJoin builds BASE/VERSION/FILE, escaping each segment ('+' too, as in
// v1.31.4+k3s1: some servers read a raw '+' in a path as a space).
func fileJoin(base string, segs ...string) string {
	u := strings.TrimRight(base, "/")
	for _, s := range segs {
		u += "/" + strings.ReplaceAll(url.PathEscape(s), "+", "%2B")
	}
	return u
}

// localPath is the file a file:// URL names; ok is false for other schemes.
func localPath(raw string) (string, bool, error) {
	if !strings.HasPrefix(raw, "file://") {
		return "", false, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", true, fmt.Errorf("bad file URL %q: %w", raw, err)
	}
	if u.Host != "" && u.Host != "localhost" {
		return "", true, fmt.Errorf("file URL %q names host %q: use file:///absolute/path", raw, u.Host)
	}
	return filepath.FromSlash(u.Path), true, nil
}

// getSmall reads a checksum or signature file.
func (f *fetcher) getSmall(ctx context.Context, raw string) ([]byte, error) {
	var lastErr error
	for attempt := 1; ; attempt++ {
		b, err := f.getSmallOnce(ctx, raw)
		if err == nil {
			return b, nil
		}
		lastErr = err
		if !retryable(err) || attempt >= f.attempts || ctx.Err() != nil {
			return nil, lastErr
		}
		if err := f.wait(ctx, attempt, raw, err); err != nil {
			return nil, lastErr
		}
	}
}

func (f *fetcher) getSmallOnce(ctx context.Context, raw string) ([]byte, error) {
	f.requests.Add(1)
	if p, ok, err := localPath(raw); ok {
		if err != nil {
			return nil, permanent(err)
		}
		fl, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &StatusError{URL: raw, Code: http.StatusNotFound, Status: "no such file"}
		}
		if err != nil {
			return nil, permanent(err)
		}
		defer fl.Close()
		return readLimited(fl, raw)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return nil, permanent(err)
	}
	req.Header.Set("User-Agent", f.userAgent)
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &StatusError{URL: raw, Code: resp.StatusCode, Status: resp.Status}
	}
	return readLimited(resp.Body, raw)
}

func readLimited(r io.Reader, name string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxSmallFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSmallFile {
		return nil, permanent(fmt.Errorf("%s is larger than %d bytes: not a checksum or signature file", name, maxSmallFile))
	}
	return b, nil
}

// download makes part hold the complete file at raw, resuming what an
// earlier attempt or run left (part+".json" says from which URL and version).
func (f *fetcher) download(ctx context.Context, raw, part, label string) error {
	if err := os.MkdirAll(filepath.Dir(part), 0o755); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		err := f.downloadOnce(ctx, raw, part, label)
		if err == nil {
			return nil
		}
		if !retryable(err) || attempt >= f.attempts || ctx.Err() != nil {
			return err
		}
		if werr := f.wait(ctx, attempt, raw, err); werr != nil {
			return err
		}
	}
}

func (f *fetcher) wait(ctx context.Context, attempt int, raw string, err error) error {
	d := f.backoff << (attempt - 1)
	if d > 30*time.Second {
		d = 30 * time.Second
	}
	f.log.Warn("download failed; trying again", "url", raw, "attempt", attempt, "of", f.attempts, "in", d.String(), "err", err.Error())
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// source is an opened transfer.
type source struct {
	body     io.ReadCloser
	offset   int64 // where body starts in the file
	total    int64 // the whole file's size; -1 unknown
	meta     partMeta
	complete bool // the part already holds the whole file
}

func (f *fetcher) downloadOnce(ctx context.Context, raw, part, label string) error {
	metaPath := part + ".json"
	have := int64(0)
	var meta partMeta
	if fi, err := os.Stat(part); err == nil {
		if b, err := os.ReadFile(metaPath); err == nil && json.Unmarshal(b, &meta) == nil && meta.URL == raw && meta.resumable() {
			have = fi.Size()
		}
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	src, err := f.open(ctx, raw, have, meta)
	if err != nil {
		return err
	}
	if src.complete {
		return nil
	}
	defer src.body.Close()

	flags := os.O_WRONLY | os.O_CREATE
	if src.offset == 0 {
		if have > 0 {
			f.log.Info("cannot resume: the server sent the whole file (it ignored Range or the file changed); starting over", "file", label, "had", have)
		}
		flags |= os.O_TRUNC
		b, _ := json.Marshal(src.meta)
		if err := os.WriteFile(metaPath, b, 0o644); err != nil {
			return err
		}
	}
	out, err := os.OpenFile(part, flags, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	if _, err := out.Seek(src.offset, io.SeekStart); err != nil {
		return err
	}

	meter := f.progress.Start(label, src.offset, src.total)
	n, err := copyWithStall(ctx, cancel, out, src.body, f.stall, func(k int) {
		meter.Add(int64(k))
		f.bytes.Add(int64(k))
	})
	if err == nil && src.total >= 0 && src.offset+n != src.total {
		err = fmt.Errorf("GET %s: got %d of %d bytes: %w", raw, src.offset+n, src.total, io.ErrUnexpectedEOF)
	}
	if cerr := out.Close(); err == nil && cerr != nil {
		err = cerr
	}
	meter.Finish(err)
	if err != nil {
		return fmt.Errorf("download %s: %w (the %d bytes received are kept; run sync again to resume)", raw, err, src.offset+n)
	}
	return nil
}

// open starts a transfer at offset have (0: from the start), asking the
// source to continue only if the file is still the one meta describes.
func (f *fetcher) open(ctx context.Context, raw string, have int64, meta partMeta) (*source, error) {
	f.requests.Add(1)
	if p, ok, err := localPath(raw); ok {
		if err != nil {
			return nil, permanent(err)
		}
		return openLocal(raw, p, have, meta)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return nil, permanent(err)
	}
	req.Header.Set("User-Agent", f.userAgent)
	if have > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(have, 10)+"-")
		// If-Range: the server sends the rest only if the file is unchanged,
		// else the whole new file with 200.
		if meta.ETag != "" {
			req.Header.Set("If-Range", meta.ETag)
		} else {
			req.Header.Set("If-Range", meta.LastModified)
		}
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, err
	}
	validators := partMeta{URL: raw, LastModified: resp.Header.Get("Last-Modified")}
	if et := resp.Header.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		validators.ETag = et // weak tags are not allowed in If-Range
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return &source{body: resp.Body, total: resp.ContentLength, meta: validators}, nil
	case http.StatusPartialContent:
		start, _, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != have {
			resp.Body.Close()
			if have == 0 {
				return nil, permanent(fmt.Errorf("GET %s: the server sent part of the file (%s) without being asked", raw, resp.Header.Get("Content-Range")))
			}
			f.log.Info("server answered a different range; starting over", "url", raw, "asked_from", have, "content_range", resp.Header.Get("Content-Range"))
			return f.open(ctx, raw, 0, partMeta{})
		}
		return &source{body: resp.Body, offset: have, total: total, meta: meta}, nil
	case http.StatusRequestedRangeNotSatisfiable:
		resp.Body.Close()
		if _, _, total, ok := parseContentRange(resp.Header.Get("Content-Range")); ok && total == have {
			return &source{complete: true}, nil // an earlier run got every byte
		}
		if have == 0 {
			return nil, &StatusError{URL: raw, Code: resp.StatusCode, Status: resp.Status}
		}
		return f.open(ctx, raw, 0, partMeta{})
	default:
		resp.Body.Close()
		return nil, &StatusError{URL: raw, Code: resp.StatusCode, Status: resp.Status}
	}
}

func openLocal(raw, p string, have int64, meta partMeta) (*source, error) {
	fl, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &StatusError{URL: raw, Code: http.StatusNotFound, Status: "no such file"}
	}
	if err != nil {
		return nil, permanent(err)
	}
	fi, err := fl.Stat()
	if err != nil {
		fl.Close()
		return nil, err
	}
	stamp := partMeta{URL: raw, FileStamp: fmt.Sprintf("%d-%d", fi.Size(), fi.ModTime().UnixNano())}
	if have > 0 && meta.FileStamp == stamp.FileStamp && have <= fi.Size() {
		if have == fi.Size() {
			fl.Close()
			return &source{complete: true}, nil
		}
		if _, err := fl.Seek(have, io.SeekStart); err != nil {
			fl.Close()
			return nil, err
		}
		return &source{body: fl, offset: have, total: fi.Size(), meta: meta}, nil
	}
	return &source{body: fl, total: fi.Size(), meta: stamp}, nil
}

// parseContentRange reads "bytes START-END/TOTAL" or "bytes */TOTAL".
func parseContentRange(v string) (start, end, total int64, ok bool) {
	rest, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, 0, false
	}
	total = -1
	if tot != "*" {
		t, err := strconv.ParseInt(tot, 10, 64)
		if err != nil {
			return 0, 0, 0, false
		}
		total = t
	}
	if rng == "*" {
		return -1, -1, total, true
	}
	a, b, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, 0, false
	}
	s, err1 := strconv.ParseInt(a, 10, 64)
	e, err2 := strconv.ParseInt(b, 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, 0, false
	}
	return s, e, total, true
}

// copyWithStall copies until EOF, cancelling the transfer when nothing
// arrives for stall: a dead mirror fails instead of hanging forever.
func copyWithStall(ctx context.Context, cancel context.CancelCauseFunc, w io.Writer, r io.Reader, stall time.Duration, onData func(int)) (int64, error) {
	errStall := fmt.Errorf("no data for %s", stall)
	timer := time.AfterFunc(stall, func() { cancel(errStall) })
	defer timer.Stop()
	buf := make([]byte, 256<<10)
	var n int64
	for {
		k, rerr := r.Read(buf)
		if k > 0 {
			timer.Reset(stall)
			if _, werr := w.Write(buf[:k]); werr != nil {
				return n, werr
			}
			n += int64(k)
			onData(k)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			if cause := context.Cause(ctx); cause != nil && errors.Is(cause, errStall) {
				return n, errStall
			}
			return n, rerr
		}
	}
}

// permanentError is a failure that retrying cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return permanentError{err} }

func retryable(err error) bool {
	var pe permanentError
	if errors.As(err, &pe) {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code >= 500 || se.Code == http.StatusTooManyRequests || se.Code == http.StatusRequestTimeout
	}
	// The caller's cancel ends everything; a stalled transfer (errStall) and
	// network errors are worth another try.
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// defaultClient dials and waits for headers with limits but never limits
// a whole transfer: the disk image is half a gigabyte.
func defaultClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = time.Minute
	return &http.Client{Transport: tr}
}
