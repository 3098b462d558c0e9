// Package httpd is flint's HTTP side. It only speaks HTTP: every decision
// about a machine (which script, whether a config may go out, whether a
// node's report counts) is the lifecycle's, and configs are the renderer's.
//
// It serves three listeners from one route table (routes.go):
//
//   - plain HTTP (server.http_port): what firmware and iPXE fetch, which holds
//     no secret: scripts, the iPXE binaries, /assets/, and the pointer config
//     that sends Ignition on to HTTPS;
//   - HTTPS (server.https_port, a certificate from flint's CA): the configs
//     that hold a machine's secrets, node reports, and the admin API for
//     remote callers with flint's admin token;
//   - the admin socket (DATA/flint.sock, 0600): the admin API for the CLI on
//     flint's host, authorised by the file's permissions.
package httpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/ignition"
	"github.com/flint-boot/flint/lifecycle"
	"github.com/flint-boot/flint/metrics"
	"github.com/flint-boot/flint/store"
)

const (
	// readHeaderTimeout bounds slow or stuck clients before a request starts.
	readHeaderTimeout = 10 * time.Second
	// readTimeout bounds reading a whole request: flint's requests are small.
	readTimeout = 30 * time.Second
	// There is no write timeout: an initrd over a slow link may take minutes
	// (the connection caps bound what stuck readers can hold).
	idleTimeout    = time.Minute
	maxHeaderBytes = 16 << 10
	// shutdownGrace is how long Serve lets running downloads finish once its
	// context is done; then it closes the remaining connections (flint stops
	// within a second of SIGTERM; a node retries its download).
	shutdownGrace = 800 * time.Millisecond
)

// Lifecycle decides about machines (*lifecycle.Manager).
type Lifecycle interface {
	Script(mac config.MAC, from netip.Addr) lifecycle.Script
	AdmitConfig(req lifecycle.ConfigRequest) lifecycle.Admission
	Delivered(a lifecycle.Admission, detail string) error
	NodeEvent(r lifecycle.NodeReport) error
	Reprovision(name string, confirm bool) (lifecycle.Plan, error)
	CancelReprovision(name string) (lifecycle.Plan, error)
}

// Renderer makes Ignition configs (*ignition.Renderer).
type Renderer interface {
	Render(req ignition.Request) ([]byte, error)
}

// State is what the admin API reads (*events.Recorder over the store).
type State interface {
	Machines() ([]store.Machine, error)
	Leases() ([]store.Lease, error)
	Events(mac string) ([]store.Event, error)
	// Flush writes the timeline events still queued, so a read sees them.
	Flush()
	// Version grows with every committed write (the dashboard's stream).
	Version() uint64
}

// Timeline records what the lifecycle does not (*events.Recorder).
type Timeline interface {
	// RecordFromIP attributes a request without a MAC (an asset download) to
	// the machine last seen at ip.
	RecordFromIP(ip netip.Addr, event, detail string)
	// RecordUnknown records a request about a MAC that is not in the config,
	// within the per-source rate limit.
	RecordUnknown(from netip.Addr, s store.Sighting)
}

// Readiness says whether flint can serve configs now: what /readyz answers.
// It must be cheap (a load balancer or kubelet asks every few seconds): no
// render, no table scan.
type Readiness interface {
	// Ready is nil when ready; otherwise a *NotReady naming the failed check.
	Ready() error
}

// NotReady is a failed readiness check. /readyz names Check in its body and
// logs Err (which may name paths) instead of sending it.
type NotReady struct {
	Check string // e.g. "store", "profiles"
	Err   error
}

func (e *NotReady) Error() string { return e.Check + ": " + e.Err.Error() }
func (e *NotReady) Unwrap() error { return e.Err }

// Options are everything the server needs; nothing is set after New.
type Options struct {
	Config    *config.Config
	State     State
	Timeline  Timeline
	Lifecycle Lifecycle
	Renderer  Renderer
	// Readiness backs /readyz (/healthz only says the process answers).
	Readiness Readiness
	// AssetsDir is what /assets/ serves; it need not exist (then 404s).
	AssetsDir string
	// CACert is flint's CA certificate (PEM): pointer configs tell Ignition
	// to check flint's HTTPS certificate against it.
	CACert []byte
	// AdminToken authorises remote admin API calls over HTTPS
	// (Authorization: Bearer ...). Empty: the admin API is on the socket only.
	AdminToken string
	// Metrics counts requests and serves /metrics; nil: neither.
	Metrics *metrics.Metrics
	Log     *slog.Logger
}

// Server answers flint's HTTP routes.
type Server struct {
	Options
	log   *slog.Logger
	echos map[listener]*echo.Echo
	// streams counts the open /api/v1/stream answers (limits.event_streams).
	streams atomic.Int32
}

// New builds the server.
func New(o Options) (*Server, error) {
	switch {
	case o.Config == nil:
		return nil, errors.New("httpd: no config")
	case o.Lifecycle == nil || o.Renderer == nil || o.State == nil || o.Timeline == nil || o.Readiness == nil:
		return nil, errors.New("httpd: the lifecycle, renderer, state, timeline and readiness are required")
	case len(o.CACert) == 0:
		return nil, errors.New("httpd: no CA certificate for the pointer configs")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{Options: o, log: o.Log, echos: map[listener]*echo.Echo{}}
	o.Metrics.RefusalReasons(lifecycle.RefusedCodes)
	for _, l := range []listener{onHTTP, onHTTPS, onSocket} {
		s.echos[l] = s.newEcho(l)
	}
	return s, nil
}

// newEcho builds the handler of one listener from the route table.
func (s *Server) newEcho(l listener) *echo.Echo {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.Logger.SetOutput(io.Discard) // everything goes through slog instead
	e.HTTPErrorHandler = func(err error, c echo.Context) { s.handleError(l, err, c) }
	e.Use(s.accessLog(l), s.recoverPanic)
	for _, r := range routes {
		if r.on&l == 0 {
			continue
		}
		handle := r.handler
		h := echo.HandlerFunc(func(c echo.Context) error { return handle(s, c) })
		if r.admin && l == onHTTPS {
			h = s.requireAdmin(h)
		}
		for _, m := range r.methods {
			e.Add(m, r.path, h)
		}
	}
	return e
}

// Handler is the plain-HTTP listener's handler; HandlerTLS the HTTPS one's
// (without TLS itself, for tests) and HandlerSocket the admin socket's.
func (s *Server) Handler() http.Handler       { return s.echos[onHTTP] }
func (s *Server) HandlerTLS() http.Handler    { return s.echos[onHTTPS] }
func (s *Server) HandlerSocket() http.Handler { return s.echos[onSocket] }

// Listen says where to serve. Every field is required.
type Listen struct {
	HTTP, HTTPS string      // host:port
	TLS         *tls.Config // HTTPS certificate
	Socket      string      // path of the admin socket
	// MaxConns caps open connections per TCP listener; MaxConnsPerClient
	// those of one client address (config limits.http_connections*).
	MaxConns, MaxConnsPerClient int
}

// Serve listens until ctx is done, then shuts down gracefully. A bind error
// is returned at once, before anything is served.
func (s *Server) Serve(ctx context.Context, l Listen) error {
	if l.TLS == nil {
		return errors.New("httpd: no TLS certificate for the HTTPS listener")
	}
	type srv struct {
		name string
		ln   net.Listener
		hs   *http.Server
	}
	var servers []srv
	closeAll := func() {
		for _, sv := range servers {
			sv.ln.Close()
		}
	}
	newServer := func(h http.Handler) *http.Server {
		return &http.Server{
			Handler:           h,
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       readTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		}
	}
	httpLn, err := listenTCP(l.HTTP, l.MaxConns, l.MaxConnsPerClient)
	if err != nil {
		return fmt.Errorf("http: listen on %s: %w (is another server using the port? change server.http_port)", l.HTTP, err)
	}
	servers = append(servers, srv{"http", httpLn, newServer(s.echos[onHTTP])})
	httpsLn, err := listenTCP(l.HTTPS, l.MaxConns, l.MaxConnsPerClient)
	if err != nil {
		closeAll()
		return fmt.Errorf("https: listen on %s: %w (is another server using the port? change server.https_port)", l.HTTPS, err)
	}
	hs := newServer(s.echos[onHTTPS])
	hs.TLSConfig = l.TLS
	servers = append(servers, srv{"https", tls.NewListener(httpsLn, l.TLS), hs})
	sockLn, err := listenSocket(l.Socket)
	if err != nil {
		closeAll()
		return err
	}
	servers = append(servers, srv{"admin socket", sockLn, newServer(s.echos[onSocket])})

	done := make(chan error, len(servers))
	for _, sv := range servers {
		go func() {
			err := sv.hs.Serve(sv.ln)
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			} else if err != nil {
				err = fmt.Errorf("%s: serve on %s: %w", sv.name, sv.ln.Addr(), err)
			}
			done <- err
		}()
	}
	s.log.Info("http: serving", "http", httpLn.Addr().String(), "https", httpsLn.Addr().String(), "socket", l.Socket,
		"base_url", s.Config.HTTPBaseURL(), "tls_url", s.Config.HTTPSBaseURL(), "assets", s.AssetsDir)

	var first error
	pending := len(servers)
	select {
	case first = <-done:
		pending--
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	for _, sv := range servers {
		if err := sv.hs.Shutdown(shutdownCtx); err != nil {
			s.log.Warn("http: downloads still running at shutdown were cut off", "listener", sv.name, "err", err.Error())
			sv.hs.Close()
		}
	}
	for ; pending > 0; pending-- {
		if err := <-done; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// accessLog logs and counts every request once it is answered. It renders
// errors itself (instead of leaving that to echo after the chain) so that the
// status and size it logs are the ones sent. Tokens in the query are never
// logged.
func (s *Server) accessLog(l listener) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			if err := next(c); err != nil {
				c.Error(err)
			}
			req, res := c.Request(), c.Response()
			level := slog.LevelInfo
			switch {
			case res.Status >= 500:
				level = slog.LevelError
			case req.URL.Path == "/healthz" || (req.URL.Path == "/readyz" && res.Status == http.StatusOK):
				level = slog.LevelDebug // monitoring polls it; keep it out of the normal log
			}
			s.Metrics.HTTPRequest(l.String(), routePattern(c.Path()), req.Method, res.Status, time.Since(start))
			s.log.Log(req.Context(), level, "http",
				"listener", l.String(),
				"method", req.Method,
				"path", redactedURI(req),
				"status", res.Status,
				"bytes", res.Size,
				"duration", time.Since(start),
				"remote", req.RemoteAddr)
			return nil
		}
	}
}

// redactedURI is the request URI with every token value replaced.
func redactedURI(r *http.Request) string {
	q := r.URL.Query()
	if !q.Has("token") {
		return r.URL.RequestURI()
	}
	q.Set("token", "REDACTED")
	u := *r.URL
	u.RawQuery = q.Encode()
	return u.RequestURI()
}

// recoverPanic turns a handler panic into a 500 for that request instead of a
// dead server. (echo's own Recover lives in echo/v4/middleware, whose rate
// limiter pulls in golang.org/x/time, a module flint does not require.)
func (s *Server) recoverPanic(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			r := recover()
			if r == nil {
				return
			}
			if r == http.ErrAbortHandler {
				panic(r) // net/http's way to abort a response; it must reach the server
			}
			s.log.Error("http: handler panicked", "method", c.Request().Method, "path", c.Request().URL.Path,
				"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panicked: %v", r)
		}()
		return next(c)
	}
}

// handleError answers with plain text saying what went wrong and what to do.
func (s *Server) handleError(l listener, err error, c echo.Context) {
	req := c.Request()
	if c.Response().Committed {
		s.log.Warn("http: error after the response started", "path", req.URL.Path, "err", err.Error())
		return
	}
	code := http.StatusInternalServerError
	msg := "internal error (flint's log has the details)"
	var he *echo.HTTPError
	switch {
	case errors.Is(err, echo.ErrNotFound):
		code = http.StatusNotFound
		msg = notFoundText(l, req.Method, req.URL.Path)
	case errors.Is(err, echo.ErrMethodNotAllowed):
		code = http.StatusMethodNotAllowed
		msg = methodText(l, req.Method, req.URL.Path)
	case errors.As(err, &he):
		code = he.Code
		msg = fmt.Sprint(he.Message)
	default:
		s.log.Error("http: request failed", "method", req.Method, "path", req.URL.Path, "err", err.Error())
	}
	if werr := writeBody(c, code, mimeText, []byte(msg+"\n")); werr != nil {
		s.log.Debug("http: could not send error response", "err", werr.Error())
	}
}

const (
	mimeText = "text/plain; charset=utf-8"
	mimeJSON = "application/json"
)

// writeBody sends a complete in-memory body with an explicit Content-Length:
// iPXE stalls at 99% on chunked responses. HEAD gets the headers only.
func writeBody(c echo.Context, code int, contentType string, body []byte) error {
	res := c.Response()
	res.Header().Set(echo.HeaderContentType, contentType)
	res.Header().Set(echo.HeaderContentLength, fmt.Sprint(len(body)))
	res.WriteHeader(code)
	if c.Request().Method == http.MethodHead {
		return nil
	}
	_, err := res.Write(body)
	return err
}

// textError is an HTTP error whose message is sent as plain text.
func textError(code int, format string, args ...any) error {
	return echo.NewHTTPError(code, fmt.Sprintf(format, args...))
}

// remoteIP is the peer's address. X-Forwarded-For is ignored on purpose:
// machines talk to flint directly, and a header is trivially spoofed. On the
// admin socket it is invalid.
func remoteIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
