package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// A minimal lock-step TFTP read client (RFC 1350 + blksize/tsize options),
// bound to the simulated NUC's own address, as the firmware's is. It first
// does what EDK2's PXE driver does: a size probe (RRQ with tsize=0, read the
// OACK, abort with ERROR 8), then the real read.

const (
	opRRQ   = 1
	opDATA  = 3
	opACK   = 4
	opERROR = 5
	opOACK  = 6
)

type tftpOpts struct {
	blksize int
	timeout time.Duration
	retries int // retransmissions of one packet before the transfer fails
	probe   bool
}

// tftpGet reads file from server:69 from local (port chosen by the kernel)
// and returns the number of file bytes received.
func tftpGet(local netip.Addr, server netip.Addr, file string, o tftpOpts, st *phaseStat) (int64, error) {
	if o.probe {
		if _, err := tftpRead(local, server, file, o, st, true); err != nil {
			return 0, fmt.Errorf("size probe: %w", err)
		}
	}
	return tftpRead(local, server, file, o, st, false)
}

func rrq(file string, blksize int) []byte {
	b := []byte{0, opRRQ}
	for _, s := range []string{file, "octet", "blksize", strconv.Itoa(blksize), "tsize", "0"} {
		b = append(append(b, s...), 0)
	}
	return b
}

func tftpRead(local, server netip.Addr, file string, o tftpOpts, st *phaseStat, probe bool) (int64, error) {
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetReadBuffer(256 << 10)

	dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(server, 69))
	last := rrq(file, o.blksize)
	var peer *net.UDPAddr // the server's transfer port (TID), from its first answer
	blksize := 512
	expect := uint16(1)
	var got int64
	tries := 0
	buf := make([]byte, 65536)
	send := func() error {
		to := dst
		if peer != nil {
			to = peer
		}
		_, err := conn.WriteToUDP(last, to)
		return err
	}
	if err := send(); err != nil {
		return 0, err
	}
	for {
		_ = conn.SetReadDeadline(time.Now().Add(o.timeout))
		n, from, err := conn.ReadFromUDP(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				tries++
				if tries > o.retries {
					return got, fmt.Errorf("timeout after %d bytes (block %d)", got, expect)
				}
				st.retries.Add(1)
				if err := send(); err != nil {
					return got, err
				}
				continue
			}
			return got, err
		}
		if n < 4 {
			continue
		}
		if peer == nil {
			peer = from
		} else if from.Port != peer.Port || !from.IP.Equal(peer.IP) {
			continue // another TID: RFC 1350 says answer with an error; ignoring is enough here
		}
		pkt := buf[:n]
		switch binary.BigEndian.Uint16(pkt) {
		case opERROR:
			msg, _, _ := bytes.Cut(pkt[4:], []byte{0})
			return got, fmt.Errorf("TFTP error %d: %s", binary.BigEndian.Uint16(pkt[2:]), msg)
		case opOACK:
			if expect != 1 || got != 0 {
				continue // a duplicate OACK after our ACK 0
			}
			opts := bytes.Split(bytes.TrimRight(pkt[2:], "\x00"), []byte{0})
			for i := 0; i+1 < len(opts); i += 2 {
				if string(bytes.ToLower(opts[i])) == "blksize" {
					if v, err := strconv.Atoi(string(opts[i+1])); err == nil && v >= 8 && v <= o.blksize {
						blksize = v
					}
				}
			}
			if probe {
				// EDK2: it has the size; "option negotiation" ends the transfer.
				_, _ = conn.WriteToUDP(append([]byte{0, opERROR, 0, 8}, "size probe\x00"...), peer)
				return 0, nil
			}
			last = []byte{0, opACK, 0, 0}
			tries = 0
			if err := send(); err != nil {
				return got, err
			}
		case opDATA:
			if probe {
				return 0, errors.New("server ignored the options (DATA instead of OACK)")
			}
			blk := binary.BigEndian.Uint16(pkt[2:])
			switch blk {
			case expect:
				data := len(pkt) - 4
				got += int64(data)
				last = []byte{0, opACK, byte(blk >> 8), byte(blk)}
				tries = 0
				if err := send(); err != nil {
					return got, err
				}
				if data < blksize {
					return got, nil
				}
				expect++
			case expect - 1:
				// our ACK was lost or late: the server sent the block again
				if err := send(); err != nil {
					return got, err
				}
			}
		}
	}
}
