package httpd

import (
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/labstack/echo/v4"
)

// listener is one of the server's three listeners (a bit set in route.on).
type listener uint8

const (
	onHTTP   listener = 1 << iota // plain HTTP: firmware, iPXE, the pointer config
	onHTTPS                       // TLS: secrets, node reports, remote admin API
	onSocket                      // the admin socket
)

func (l listener) String() string {
	switch l {
	case onHTTP:
		return "http"
	case onHTTPS:
		return "https"
	case onSocket:
		return "socket"
	}
	return fmt.Sprintf("listener(%d)", l)
}

// route is one entry of the route table: the handlers are registered from it,
// and the 404/405 answers list it.
type route struct {
	methods []string
	path    string
	on      listener
	admin   bool // over HTTPS it needs the admin token (the socket needs nothing)
	help    string
	handler func(*Server, echo.Context) error
}

var (
	getHeadM = []string{http.MethodGet, http.MethodHead}
	getM     = []string{http.MethodGet}
	postM    = []string{http.MethodPost}
)

// routes is flint's whole HTTP surface.
var routes = []route{
	{getHeadM, "/healthz", onHTTP | onHTTPS | onSocket, false, "200 when the process answers", (*Server).healthz},
	{getHeadM, "/readyz", onHTTP | onHTTPS | onSocket, false, "200 when flint can serve configs (store reads, profiles load), else 503 naming the failed check", (*Server).readyz},
	{getHeadM, "/boot.ipxe", onHTTP, false, "generic iPXE entry: chains to the machine's own script", (*Server).bootScript},
	// Not HEAD: each GET issues a boot token.
	{getM, "/machines/:mac/boot.ipxe", onHTTP, false, "a machine's iPXE script, with a fresh boot token", (*Server).machineScript},
	{getM, "/ignition", onHTTP, false, "?mac=MAC&token=TOKEN: the pointer config (no secrets) that sends Ignition to HTTPS", (*Server).pointerConfig},
	// Not HEAD: a config is a secret, fetched whole or not at all.
	{getM, "/ignition", onHTTPS, false, "?mac=MAC&token=TOKEN[&stage=installed]: a machine's config, once per boot token", (*Server).secretConfig},
	{getHeadM, "/ipxe/:file", onHTTP, false, "the iPXE binaries (UEFI HTTP boot)", (*Server).ipxeFile},
	{getHeadM, "/assets/*", onHTTP, false, "Flatcar kernel, initrd and the files nodes download", (*Server).asset},
	{postM, "/api/v1/events", onHTTPS, false, "a node's progress report (Authorization: Bearer REPORT-TOKEN)", (*Server).apiPostEvent},
	{getM, "/api/v1/machines", onHTTPS | onSocket, true, "machine records (admin)", (*Server).apiMachines},
	{getM, "/api/v1/leases", onHTTPS | onSocket, true, "DHCP leases (admin)", (*Server).apiLeases},
	{getM, "/api/v1/machines/:mac/events", onHTTPS | onSocket, true, "a machine's boot timeline (admin)", (*Server).apiMachineEvents},
	{postM, "/api/v1/machines/:name/reprovision", onHTTPS | onSocket, true, `arm a reinstall, JSON body {"confirm": true}, or cancel one, {"cancel": true} (admin)`, (*Server).apiReprovision},
	{getM, "/metrics", onHTTPS | onSocket, true, "Prometheus metrics (admin)", (*Server).metrics},
	{getM, "/api/v1/stream", onHTTPS | onSocket, true, "server-sent events: \"changed\" whenever flint's state changed (admin)", (*Server).stream},
	{getHeadM, "/ui/*", onHTTPS, false, "the web dashboard (static; it asks for the admin token and uses the admin API)", (*Server).ui},
}

// patterns is the set of the route table's paths: the only route labels a
// metric gets (a request path is the client's to choose).
var patterns = func() map[string]bool {
	m := map[string]bool{}
	for _, r := range routes {
		m[r.path] = true
	}
	return m
}()

// routePattern is p if it is one of the route table's paths, else "" (no
// route matched).
func routePattern(p string) string {
	if patterns[p] {
		return p
	}
	return ""
}

// matches reports whether a route path (with :params and a trailing *)
// matches a request path.
func matches(pattern, path string) bool {
	if strings.HasSuffix(pattern, "*") {
		return strings.HasPrefix(path, strings.TrimSuffix(pattern, "*"))
	}
	ps, rs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(rs) {
		return false
	}
	for i := range ps {
		if !strings.HasPrefix(ps[i], ":") && ps[i] != rs[i] {
			return false
		}
	}
	return true
}

// notFoundText lists what this listener serves, and says where a path lives
// when it is served on another listener.
func notFoundText(l listener, method, path string) string {
	for _, r := range routes {
		if r.on&l == 0 && matches(r.path, path) {
			var where []string
			for _, o := range []listener{onHTTP, onHTTPS, onSocket} {
				if r.on&o != 0 {
					where = append(where, listenerName(o))
				}
			}
			return fmt.Sprintf("%s is not served on flint's %s; it is on %s", path, listenerName(l), strings.Join(where, " and "))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "nothing at %s. flint's %s serves:", path, listenerName(l))
	for _, r := range routes {
		if r.on&l != 0 {
			fmt.Fprintf(&b, "\n  %s %s  %s", strings.Join(r.methods, ","), r.path, r.help)
		}
	}
	return b.String()
}

// methodText says which methods a path answers on this listener.
func methodText(l listener, method, path string) string {
	allowed := map[string]bool{}
	for _, r := range routes {
		if r.on&l != 0 && matches(r.path, path) {
			for _, m := range r.methods {
				allowed[m] = true
			}
		}
	}
	var ms []string
	for m := range allowed {
		ms = append(ms, m)
	}
	sort.Strings(ms)
	return fmt.Sprintf("%s is not allowed on %s: it answers %s", method, path, strings.Join(ms, ", "))
}

func listenerName(l listener) string {
	switch l {
	case onHTTP:
		return "plain HTTP port (server.http_port)"
	case onHTTPS:
		return "HTTPS port (server.https_port)"
	case onSocket:
		return "admin socket (DATA/flint.sock)"
	}
	return l.String()
}
