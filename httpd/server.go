// Package httpd is flint's HTTP server: iPXE scripts, the Flatcar kernel and
// initrd (/assets/), the iPXE binaries for UEFI HTTP boot (/ipxe/) and a small
// JSON API the CLI reads while the server holds the state database.
package httpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/flint-boot/flint/config"
	"github.com/flint-boot/flint/lifecycle"
	"github.com/flint-boot/flint/store"
)

const (
	// readHeaderTimeout bounds slow or stuck clients before a request starts.
	// There is no write timeout: an initrd over a slow link may take minutes.
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	// shutdownGrace is how long Serve lets running downloads finish once its
	// context is done; then it closes the remaining connections.
	shutdownGrace = 5 * time.Second
)

// Server answers flint's HTTP routes.
type Server struct {
	cfg       *config.Config
	st        store.Store
	assetsDir string
	log       *slog.Logger
	echo      *echo.Echo

	// Timeline, when set, attributes requests that carry no MAC (asset and
	// iPXE binary downloads) to the machine last seen at the client's address.
	Timeline func(ip netip.Addr, event, detail string)
	// Ignition renders /ignition configs; nil answers 503.
	Ignition ConfigRenderer
	// Lifecycle guards configs and moves machines through their states; nil
	// serves every known machine (tests, and flint before lifecycles existed).
	Lifecycle Lifecycle
}

// Lifecycle is what the HTTP server asks about a machine's state (*lifecycle.Manager).
type Lifecycle interface {
	ConfigRequest(mac config.MAC, from netip.Addr) (lifecycle.Verdict, string)
	ConfigServed(mac config.MAC)
	NodeEvent(mac config.MAC, from netip.Addr, event string) error
	BootsLocally(mac config.MAC) bool
}

// New builds the server. st may be nil (no sightings, API answers 503);
// assetsDir need not exist (then /assets/ answers 404). A nil log discards.
func New(cfg *config.Config, st store.Store, assetsDir string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, st: st, assetsDir: assetsDir, log: log}

	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.Logger.SetOutput(io.Discard) // everything goes through slog instead
	e.HTTPErrorHandler = s.handleError
	e.Use(s.accessLog, s.recoverPanic)

	getHead := func(path string, h echo.HandlerFunc) {
		// echo answers HEAD on a GET-only route with 405; curl -I and some
		// firmware probe with HEAD.
		e.GET(path, h)
		e.HEAD(path, h)
	}
	getHead("/healthz", s.healthz)
	getHead("/boot.ipxe", s.bootScript)
	e.GET("/machines/:mac/boot.ipxe", s.machineScript) // not HEAD: it records a sighting
	getHead("/ipxe/:file", s.ipxeFile)
	getHead("/assets/*", s.asset)
	e.GET("/ignition", s.ignitionConfig) // not HEAD: a config is a secret, fetched whole or not at all
	e.GET("/api/v1/machines", s.apiMachines)
	e.GET("/api/v1/leases", s.apiLeases)
	e.GET("/api/v1/machines/:mac/events", s.apiMachineEvents)
	e.POST("/api/v1/events", s.apiPostEvent)
	e.POST("/api/v1/machines/:name/reprovision", s.apiReprovision)

	s.echo = e
	return s
}

// Handler is the server's http.Handler (for httptest and embedding).
func (s *Server) Handler() http.Handler { return s.echo }

// Serve listens on addr until ctx is done, then shuts down gracefully. A bind
// error is returned at once.
func (s *Server) Serve(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("http: listen on %s: %w (is another server using the port? change server.http_port)", addr, err)
	}
	srv := &http.Server{
		Handler:           s.echo,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	s.log.Info("http: serving", "addr", ln.Addr().String(), "base_url", s.cfg.HTTPBaseURL(), "assets", s.assetsDir)

	select {
	case err := <-done:
		return fmt.Errorf("http: serve on %s: %w", addr, err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		s.log.Warn("http: downloads still running at shutdown were cut off", "err", err.Error())
		srv.Close()
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http: serve on %s: %w", addr, err)
	}
	return nil
}

// accessLog logs every request once it is answered. It renders errors itself
// (instead of leaving that to echo after the chain) so that the status and
// size it logs are the ones sent.
func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
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
		case req.URL.Path == "/healthz":
			level = slog.LevelDebug // monitoring polls it; keep it out of the normal log
		}
		s.log.Log(req.Context(), level, "http",
			"method", req.Method,
			"path", req.URL.RequestURI(),
			"status", res.Status,
			"bytes", res.Size,
			"duration", time.Since(start),
			"remote", req.RemoteAddr)
		return nil
	}
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
func (s *Server) handleError(err error, c echo.Context) {
	req := c.Request()
	if c.Response().Committed {
		s.log.Warn("http: error after the response started", "path", req.URL.Path, "err", err.Error())
		return
	}
	code := http.StatusInternalServerError
	msg := "internal error: " + err.Error() + " (flint's log has the details)"
	var he *echo.HTTPError
	switch {
	case errors.Is(err, echo.ErrNotFound):
		code = http.StatusNotFound
		msg = fmt.Sprintf("nothing at %s: flint serves /boot.ipxe, /machines/<mac>/boot.ipxe, /assets/<path>, /ipxe/<file>, /healthz, /api/v1/machines and /api/v1/leases", req.URL.Path)
	case errors.Is(err, echo.ErrMethodNotAllowed):
		code = http.StatusMethodNotAllowed
		msg = fmt.Sprintf("%s is not allowed on %s: flint only answers GET (and HEAD for files)", req.Method, req.URL.Path)
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
