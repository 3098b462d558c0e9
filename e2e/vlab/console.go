package vlab

import (
	"strconv"
	"strings"
)

// Console is what the test OS reported on a machine's serial console: the
// E2E-* lines its /init prints (e2e/testos/init).
type Console struct {
	Booted bool // E2E-BOOT: the test OS kernel ran /init
	// E2E-SECUREBOOT: the EFI variable SecureBoot ("1" on, "0" off,
	// "no-efi" on BIOS), the kernel's lockdown ("none,[integrity],confidentiality")
	// and what the kernel said at boot ("secureboot:_Secure_boot_enabled").
	SecureBoot, Lockdown, KernelSecureBoot string
	NICMAC                                 string // E2E-NIC: the MAC of the interface it brought up
	NICDriver                              string
	DHCPIP                                 string // E2E-DHCP: the address udhcpc got from flint
	DHCPServer                             string
	IgnitionURL                            string            // E2E-IGNITION-URL: from the kernel command line
	Stages                                 map[string]string // E2E-STAGE: fetch/files -> "ok 2s" or "failed rc=1"
	Requests                               []Request         // E2E-IGNITION-LOG: Ignition's HTTP(S) requests, in order
	Files                                  map[string]File   // E2E-FILE: what Ignition wrote, by path
	Dirs                                   map[string]File   // E2E-DIR
	// ReportHeader is /etc/flint/report.header as Ignition wrote it
	// (E2E-REPORT-HEADER): "Authorization: Bearer " and the report token.
	ReportHeader string
	Hostname     string   // E2E-HOSTNAME
	EventsURL    string   // E2E-EVENTS-URL: where the test OS posted its report (from /opt/bin/flint-report)
	Events       []string // E2E-EVENT lines: "posted config-applied http=204", "not posted ...", "failed to post ..."
	EventPosted  bool     // an E2E-EVENT posted line
	Done         string   // E2E-DONE detail ("" if not reached)
	Fail         string   // E2E-FAIL detail
}

// Request is one HTTP(S) request of the real Ignition client, from its log
// ("GET URL: attempt #N", then "GET result: OK" or "GET error: ...").
type Request struct {
	Stage   string // fetch or files
	Method  string // GET or HEAD
	URL     string
	Attempt string // "#1"
	Result  string // "OK", "Forbidden", ... (http.StatusText), or "error: ..."
}

// File is one entry Ignition laid down in the test OS's root.
type File struct {
	Path   string
	SHA256 string // files only
	Mode   string // octal, e.g. 644
	UID    int
	GID    int
	Size   int64
}

// ParseConsole reads the E2E-* markers from a serial log. Kernel messages
// can precede a marker on the same line, so a marker may start mid-line.
func ParseConsole(log string) *Console {
	c := &Console{Stages: map[string]string{}, Files: map[string]File{}, Dirs: map[string]File{}}
	for _, line := range strings.Split(log, "\n") {
		i := strings.Index(line, "E2E-")
		if i < 0 {
			continue
		}
		line = strings.TrimRight(line[i+len("E2E-"):], "\r ")
		tag, rest, _ := strings.Cut(line, " ")
		f := strings.Fields(rest)
		switch tag {
		case "BOOT":
			c.Booted = true
		case "SECUREBOOT":
			c.SecureBoot, c.Lockdown, c.KernelSecureBoot = field(f, "efivar="), field(f, "lockdown="), field(f, "kernel=")
		case "NIC":
			c.NICMAC, c.NICDriver = field(f, "mac="), field(f, "driver=")
		case "DHCP":
			c.DHCPIP, c.DHCPServer = field(f, "ip="), field(f, "server=")
		case "IGNITION-URL":
			c.IgnitionURL = rest
		case "STAGE":
			if len(f) >= 2 {
				c.Stages[f[0]] = strings.Join(f[1:], " ")
			}
		case "IGNITION-LOG": // STAGE LEVEL : [PREFIX: ]GET URL: attempt #N | GET result: STATUS | GET error: ERR
			c.addRequest(rest)
		case "REPORT-HEADER":
			c.ReportHeader = rest
		case "EVENTS-URL":
			c.EventsURL = rest
		case "FILE": // PATH SHA256 MODE UID GID SIZE
			if len(f) == 6 {
				c.Files[f[0]] = File{Path: f[0], SHA256: f[1], Mode: f[2], UID: atoi(f[3]), GID: atoi(f[4]), Size: int64(atoi(f[5]))}
			}
		case "DIR": // PATH MODE UID GID
			if len(f) == 4 {
				c.Dirs[f[0]] = File{Path: f[0], Mode: f[1], UID: atoi(f[2]), GID: atoi(f[3])}
			}
		case "HOSTNAME":
			c.Hostname = rest
		case "EVENT":
			c.Events = append(c.Events, rest)
			c.EventPosted = c.EventPosted || strings.HasPrefix(rest, "posted")
		case "DONE":
			c.Done = rest
			if c.Done == "" {
				c.Done = "done"
			}
		case "FAIL":
			c.Fail = rest
		}
	}
	return c
}

// addRequest reads one line of Ignition's log about an HTTP request.
func (c *Console) addRequest(rest string) {
	stage, msg, _ := strings.Cut(rest, " ")
	for _, m := range []string{"GET", "HEAD"} {
		i := strings.Index(msg, ": "+m+" ")
		if i < 0 {
			continue
		}
		what := msg[i+len(": "+m+" "):]
		switch {
		case strings.HasPrefix(what, "result: "):
			if n := len(c.Requests); n > 0 && c.Requests[n-1].Result == "" {
				c.Requests[n-1].Result = strings.TrimPrefix(what, "result: ")
			}
		case strings.HasPrefix(what, "error: "):
			if n := len(c.Requests); n > 0 && c.Requests[n-1].Result == "" {
				c.Requests[n-1].Result = what
			}
		default:
			url, attempt, ok := strings.Cut(what, ": attempt ")
			if ok {
				c.Requests = append(c.Requests, Request{Stage: stage, Method: m, URL: url, Attempt: attempt})
			}
		}
		return
	}
}

// field returns the value of the first "key=value" item.
func field(f []string, key string) string {
	for _, s := range f {
		if v, ok := strings.CutPrefix(s, key); ok {
			return v
		}
	}
	return ""
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}
