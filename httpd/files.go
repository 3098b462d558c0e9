package httpd

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
)

// asset serves /assets/<path> from the assets directory (kernel, initrd).
func (s *Server) asset(c echo.Context) error {
	// The decoded path, not echo's parameter: that one can still hold
	// %2e%2e or %2f, which must be judged after decoding.
	rel := strings.TrimPrefix(c.Request().URL.Path, "/assets/")
	if err := checkRelPath(rel); err != nil {
		s.log.Warn("http: refused asset path", "path", c.Request().URL.Path, "remote", c.Request().RemoteAddr, "reason", err.Error())
		return textError(http.StatusForbidden, "refused /assets/%s: %v", rel, err)
	}
	return s.serveFile(c, s.AssetsDir, rel,
		"put Flatcar's PXE kernel and initrd in flint's assets directory (boot.assets_dir) under the paths boot.kernel and boot.initrd name")
}

// ipxeFile serves /ipxe/<file>: the iPXE binaries for UEFI HTTP boot.
func (s *Server) ipxeFile(c echo.Context) error {
	name := strings.TrimPrefix(c.Request().URL.Path, "/ipxe/")
	if err := checkPlainName(name); err != nil {
		s.log.Warn("http: refused iPXE file name", "path", c.Request().URL.Path, "remote", c.Request().RemoteAddr, "reason", err.Error())
		return textError(http.StatusForbidden, "refused /ipxe/%s: %v", name, err)
	}
	return s.serveFile(c, s.Config.IPXE.Directory, name,
		"install Debian's ipxe package or point ipxe.directory at a directory with ipxe.efi, snponly.efi and undionly.kpxe")
}

// serveFile sends dir/rel with Range, HEAD, conditional requests, and the
// kernel's sendfile: http.ServeContent runs on the raw ResponseWriter (whose
// ReadFrom hands the *os.File to the TCP connection), not on echo's Response,
// which has no ReadFrom and would copy every byte through user space.
// Symlinks are followed: the operator owns dir (Debian's ipxe.efi is one).
func (s *Server) serveFile(c echo.Context, dir, rel, hint string) error {
	start := time.Now()
	p := filepath.Join(dir, filepath.FromSlash(rel))
	// Stat before open: opening a FIFO would block.
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		s.log.Warn("http: file not found", "file", p, "remote", c.Request().RemoteAddr)
		return textError(http.StatusNotFound, "%s not found: %s", c.Request().URL.Path, hint)
	case errors.Is(err, fs.ErrPermission):
		s.log.Warn("http: file not readable", "file", p, "err", err.Error())
		return textError(http.StatusForbidden, "%s is not readable by flint: fix its permissions", c.Request().URL.Path)
	case err != nil:
		return err
	case fi.IsDir():
		return textError(http.StatusForbidden, "%s is a directory: flint serves files, never listings; ask for a file under it", c.Request().URL.Path)
	case !fi.Mode().IsRegular():
		return textError(http.StatusForbidden, "%s is not a regular file", c.Request().URL.Path)
	}
	f, err := os.Open(p)
	if err != nil {
		return textError(http.StatusForbidden, "%s cannot be opened: %v", c.Request().URL.Path, errors.Unwrap(err))
	}
	defer f.Close()
	// Stat the open file: the name may point elsewhere since the first Stat.
	fi, err = f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return textError(http.StatusForbidden, "%s is not a regular file", c.Request().URL.Path)
	}

	res := c.Response()
	res.Header().Set("ETag", etag(fi))
	w := &countingWriter{ResponseWriter: res.Writer}
	http.ServeContent(w, c.Request(), fi.Name(), fi.ModTime(), f)
	// Tell echo what was sent, for the access log and so its error handler
	// never writes a second response.
	res.Status, res.Size, res.Committed = w.status, w.bytes, true
	if c.Request().Method == http.MethodGet && (w.status == http.StatusOK || w.status == http.StatusPartialContent) {
		s.Timeline.RecordFromIP(remoteIP(c.Request()), "http "+c.Request().URL.Path, fmt.Sprintf("%d bytes, status %d, %s", w.bytes, w.status, time.Since(start).Round(time.Millisecond)))
	}
	return nil
}

// etag identifies one version of a file: device, inode, size and mtime in
// nanoseconds. Replacing a file (new inode), rewriting it (new mtime) or
// resizing it changes the tag, so it is strong enough for If-None-Match and
// If-Range. (A rewrite with equal size within one mtime tick would not be
// noticed; assets are written once and replaced by rename.)
func etag(fi fs.FileInfo) string {
	dev, ino := fileID(fi)
	return fmt.Sprintf(`"%x-%x-%x-%x"`, dev, ino, fi.Size(), fi.ModTime().UnixNano())
}

// checkRelPath accepts a slash-separated path inside a directory: no ".."
// component, no absolute path, no backslash or control bytes. The empty path
// is the directory itself, which serveFile refuses as a listing.
func checkRelPath(rel string) error {
	if rel == "" {
		return nil
	}
	if err := checkBytes(rel); err != nil {
		return err
	}
	if strings.HasPrefix(rel, "/") {
		return errors.New("absolute paths are not served")
	}
	for _, part := range strings.Split(rel, "/") {
		if part == ".." {
			return errors.New("'..' would leave the directory")
		}
		// Hidden names are the asset store's own (.sync/ holds unverified
		// partial downloads, manifests and locks): never served.
		if strings.HasPrefix(part, ".") && part != "." {
			return errors.New("hidden files are not served")
		}
	}
	if clean := path.Clean(rel); !filepath.IsLocal(clean) && clean != "." {
		return errors.New("not a path inside the directory")
	}
	return nil
}

// checkPlainName accepts a single file name: no directory part at all.
func checkPlainName(name string) error {
	if err := checkBytes(name); err != nil {
		return err
	}
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return errors.New("only a plain file name like ipxe.efi is served")
	}
	return nil
}

func checkBytes(s string) error {
	for _, r := range s {
		switch {
		case r == '\\':
			return errors.New("backslashes are not allowed")
		case r < ' ' || r == 0x7f:
			return errors.New("control characters are not allowed")
		}
	}
	return nil
}

// countingWriter records the status and body size http.ServeContent sends,
// and passes ReadFrom through so the copy still uses sendfile.
type countingWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(writerOnly{w.ResponseWriter}, r)
	}
	w.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// writerOnly hides a ReadFrom method so io.Copy cannot recurse into it.
type writerOnly struct{ io.Writer }
