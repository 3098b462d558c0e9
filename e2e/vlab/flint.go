package vlab

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// StartFlint runs `flint serve` in the namespace and waits until /healthz
// answers on all three of its listeners: plain HTTP and HTTPS (checked
// against flint's CA) in the namespace, and the admin socket (at most 15 s).
func (n *Network) StartFlint(flintBin, configPath, dataDir, logPath string, detached bool) (*Proc, error) {
	cmd := n.Command(flintBin, "serve", "--config", configPath, "--data", dataDir, "--log-format", "text", "--log-level", "debug")
	p, err := Start("flint", cmd, logPath, detached)
	if err != nil {
		return nil, err
	}
	admin := AdminOf(dataDir)
	healthy := func() error {
		if _, err := n.Get("/healthz"); err != nil {
			return err
		}
		if _, err := n.Output(10*time.Second, "curl", "-sS", "--fail-with-body", "-m", "5", "--cacert", CACert(dataDir), FlintHTTPSURL+"/healthz"); err != nil {
			return err
		}
		_, err := admin.Get("/healthz")
		return err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if p.Exited() {
			return p, fmt.Errorf("flint exited during start-up (%s): see %s", p.State(), logPath)
		}
		if err := healthy(); err == nil {
			return p, nil
		} else if time.Now().After(deadline) {
			_ = p.Stop(5 * time.Second)
			return p, fmt.Errorf("flint not healthy after 15 s: %v (log: %s)", err, logPath)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// CACert is flint's CA certificate in its data directory: what its HTTPS
// certificate is checked against, and what a node's config lays down as
// /etc/flint/ca.crt.
func CACert(dataDir string) string { return filepath.Join(dataDir, "pki", "ca.crt") }

// Get fetches path from flint's plain HTTP server inside the namespace (the
// host cannot reach the lab network) and fails on any status but 200.
func (n *Network) Get(path string) ([]byte, error) {
	out, err := n.Output(10*time.Second, "curl", "-sS", "--fail-with-body", "-m", "5", FlintURL+path)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %v %s", path, err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// Admin reads flint's admin API the way an operator on flint's host does:
// through the admin socket DATA/flint.sock (0600, no token). The admin API
// is not on plain HTTP; a Unix socket needs no network namespace.
type Admin struct {
	Socket string
}

// AdminOf is the admin API of the flint serving data directory dataDir.
func AdminOf(dataDir string) Admin { return Admin{Socket: filepath.Join(dataDir, "flint.sock")} }

// Get fetches path over the admin socket and fails on any status but 200.
func (a Admin) Get(path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "curl", "-sS", "--fail-with-body", "-m", "5", "--unix-socket", a.Socket, "http://flint"+path)
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("GET %s over %s: %v: %s %s", path, a.Socket, err, strings.TrimSpace(stderr.String()), strings.TrimSpace(stdout.String()))
	}
	return stdout.Bytes(), nil
}

// GetJSON fetches path over the admin socket and decodes its JSON body into v.
func (a Admin) GetJSON(path string, v any) error {
	b, err := a.Get(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: %v: %.300s", path, err, b)
	}
	return nil
}

// Lease is an entry of GET /api/v1/leases.
type Lease struct {
	IP       string    `json:"ip"`
	MAC      string    `json:"mac"`
	State    string    `json:"state"`
	Hostname string    `json:"hostname"`
	Start    time.Time `json:"start"`
	Expires  time.Time `json:"expires"`
}

// Event is an entry of a machine's boot timeline, GET /api/v1/machines/MAC/events.
type Event struct {
	At     time.Time `json:"at"`
	MAC    string    `json:"mac"`
	Event  string    `json:"event"`
	IP     string    `json:"ip"`
	Detail string    `json:"detail"`
}

// Machine is an entry of GET /api/v1/machines: what flint saw of one MAC.
type Machine struct {
	MAC       string `json:"mac"`
	Arch      string `json:"arch"`       // from DHCP option 93, e.g. "BIOS", "x86-64 UEFI"
	UserClass string `json:"user_class"` // "iPXE" once iPXE asked
	IP        string `json:"ip"`
	Known     bool   `json:"known"`
	Hostname  string `json:"hostname"`
	LastEvent string `json:"last_event"`
	State     string `json:"state"` // lifecycle: ready, installing, installed, ...
	// StateChanged is when State last changed.
	StateChanged time.Time `json:"state_changed"`
}

// Machines returns flint's machine records.
func (a Admin) Machines() ([]Machine, error) {
	var ms []Machine
	return ms, a.GetJSON("/api/v1/machines", &ms)
}

// Leases returns flint's leases.
func (a Admin) Leases() ([]Lease, error) {
	var ls []Lease
	return ls, a.GetJSON("/api/v1/leases", &ls)
}

// Events returns the boot timeline of one machine, oldest first.
func (a Admin) Events(mac string) ([]Event, error) {
	var ev []Event
	return ev, a.GetJSON("/api/v1/machines/"+strings.ReplaceAll(mac, ":", "-")+"/events", &ev)
}

// FlintMachinesCmd is the command that shows the lab's machines as flint sees
// them: flint machines asks the running server through its admin socket.
func FlintMachinesCmd(flintBin, dataDir string) *exec.Cmd {
	return exec.Command(flintBin, "machines", "--data", dataDir)
}
