package vlab

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// StartFlint runs `flint serve` in the namespace and waits until /healthz
// answers (at most 15 s).
func (n *Network) StartFlint(flintBin, configPath, dataDir, logPath string, detached bool) (*Proc, error) {
	cmd := n.Command(flintBin, "serve", "--config", configPath, "--data", dataDir, "--log-format", "text", "--log-level", "debug")
	p, err := Start("flint", cmd, logPath, detached)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if p.Exited() {
			return p, fmt.Errorf("flint exited during start-up (%s): see %s", p.State(), logPath)
		}
		if _, err := n.Get("/healthz"); err == nil {
			return p, nil
		} else if time.Now().After(deadline) {
			_ = p.Stop(5 * time.Second)
			return p, fmt.Errorf("flint not healthy after 15 s: %v (log: %s)", err, logPath)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Get fetches path from flint's HTTP server inside the namespace (the host
// cannot reach the lab network) and fails on any status but 200.
func (n *Network) Get(path string) ([]byte, error) {
	out, err := n.Output(10*time.Second, "curl", "-sS", "--fail-with-body", "-m", "5", FlintURL+path)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %v %s", path, err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// GetJSON fetches path and decodes its JSON body into v.
func (n *Network) GetJSON(path string, v any) error {
	b, err := n.Get(path)
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
}

// Machines returns flint's machine records.
func (n *Network) Machines() ([]Machine, error) {
	var ms []Machine
	return ms, n.GetJSON("/api/v1/machines", &ms)
}

// Leases returns flint's leases.
func (n *Network) Leases() ([]Lease, error) {
	var ls []Lease
	return ls, n.GetJSON("/api/v1/leases", &ls)
}

// Events returns the boot timeline of one machine, oldest first.
func (n *Network) Events(mac string) ([]Event, error) {
	var ev []Event
	return ev, n.GetJSON("/api/v1/machines/"+strings.ReplaceAll(mac, ":", "-")+"/events", &ev)
}

// FlintMachinesCmd is the command that shows the lab's machines as flint sees
// them (flint machines asks the running server, reachable only in the namespace).
func (n *Network) FlintMachinesCmd(flintBin, dataDir string) *exec.Cmd {
	return n.Command(flintBin, "machines", "--data", dataDir)
}
