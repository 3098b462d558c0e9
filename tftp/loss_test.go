package tftp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// edk2Client downloads a file the way EDK2's Mtftp4 (OVMF's PXE) does:
// blksize and tsize asked, every block ACKed in order, and a block that is
// not the next one answered with an ACK of the last block it has (so a
// duplicate gets the highest ACK, not its own). drop says which ACKs of
// in-order blocks are lost on the way (each at most once).
type edk2Client struct {
	conn    net.PacketConn
	server  net.Addr
	blksize int
	timeout time.Duration // before the client sends its last ACK again
	tries   int           // of that, before giving up
}

func (c *edk2Client) fetch(name string, drop map[uint16]bool) ([]byte, error) {
	rrq := fmt.Appendf([]byte{0, 1}, "%s\x00octet\x00blksize\x00%d\x00tsize\x000\x00", name, c.blksize)
	if _, err := c.conn.WriteTo(rrq, c.server); err != nil {
		return nil, err
	}
	var peer net.Addr
	var got bytes.Buffer
	last := uint16(0)
	ack := func(n uint16) {
		if drop[n] {
			delete(drop, n)
			return
		}
		c.conn.WriteTo([]byte{0, 4, byte(n >> 8), byte(n)}, peer)
	}
	buf := make([]byte, 65536)
	silent := 0
	for {
		c.conn.SetReadDeadline(time.Now().Add(c.timeout))
		n, from, err := c.conn.ReadFrom(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && peer != nil && silent < c.tries {
			silent++
			ack(last)
			continue
		}
		if err != nil {
			return got.Bytes(), fmt.Errorf("after block %d: %w", last, err)
		}
		silent = 0
		peer = from
		switch op := binary.BigEndian.Uint16(buf); op {
		case 6: // OACK
			ack(0)
		case 3: // DATA
			block := binary.BigEndian.Uint16(buf[2:])
			if block != last+1 {
				ack(last) // Mtftp4RrqHandleData: not the expected block
				continue
			}
			got.Write(buf[4:n])
			last = block
			ack(block)
			if n-4 < c.blksize {
				return got.Bytes(), nil
			}
		case 5:
			return got.Bytes(), fmt.Errorf("ERROR %d: %s", binary.BigEndian.Uint16(buf[2:]), bytes.TrimRight(buf[4:n], "\x00"))
		default:
			return got.Bytes(), fmt.Errorf("opcode %d", op)
		}
	}
}

// TestLostACKCostsOneTimeout: on a real network a client's ACK is now and
// then lost. The server must then send that block again after its timeout
// and go on, not give up the transfer, also with a client that answers a
// repeated block with its highest ACK (EDK2). A server that sends ahead of
// the ACKs (pin/tftp's SetAnticipate) and waits for every ACK in turn
// fails this: the ACK it waits for never comes again (bench/README.md).
func TestLostACKCostsOneTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	f := startWith(t, "127.0.0.1", Options{}, nil, func(s *Server) { s.timeout = timeout })
	want := randomBytes(t, 1468*20+100)
	writeFile(t, filepath.Join(f.root, "ipxe.efi"), want)
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	server, _ := net.ResolveUDPAddr("udp", f.addr)
	c := &edk2Client{conn: conn, server: server, blksize: 1468, timeout: 4 * timeout, tries: 5}

	start := time.Now()
	got, err := c.fetch("ipxe.efi", map[uint16]bool{3: true, 10: true, 11: true})
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("fetch with three ACKs lost: %v, %d bytes; want all %d", err, len(got), len(want))
	}
	// Each lost ACK costs one server timeout: the block is sent again and
	// the client's ACK of it goes through.
	if d := time.Since(start); d > 3*timeout+c.timeout {
		t.Errorf("fetch took %v, want about 3 server timeouts (%v each)", d, timeout)
	}
	if tr := f.lastTransfer(t); tr.err != nil || tr.bytes != int64(len(want)) {
		t.Errorf("OnTransfer %+v, want a whole transfer", tr)
	}
}

// TestWindowsizeAskedFallsBack: EDK2 and atftp may ask for RFC 7440
// windowsize. pin/tftp v3.2.0 does not implement it, so the OACK must leave
// it out (RFC 2347: the client then uses one block per ACK) and the
// transfer still arrive whole.
func TestWindowsizeAskedFallsBack(t *testing.T) {
	f := start(t)
	want := randomBytes(t, 1468*30+1)
	writeFile(t, filepath.Join(f.root, "ipxe.efi"), want)
	got, out := atftpFetch(t, f, "ipxe.efi", "--option", "windowsize 4", "--trace")
	if !bytes.Equal(got, want) {
		t.Fatalf("atftp asking windowsize 4 got %d bytes, want %d:\n%s", len(got), len(want), out)
	}
	var oack string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "OACK") {
			oack = line
			break
		}
	}
	if !strings.Contains(oack, "blksize: 1468") || strings.Contains(oack, "windowsize") {
		t.Errorf("OACK %q: want blksize 1468 and no windowsize\n%s", oack, out)
	}
}
