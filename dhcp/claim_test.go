package dhcp

import (
	"errors"
	"fmt"
	"testing"

	"github.com/flint-boot/flint/store"
)

func TestClaimResultOf(t *testing.T) {
	cases := []struct {
		ok   bool
		err  error
		want ClaimResult
	}{
		{true, nil, ClaimOK},
		{false, nil, ClaimTaken},
		{false, fmt.Errorf("%w: context deadline exceeded", store.ErrUnavailable), ClaimUnavailable},
		{false, errors.New("disk full"), ClaimFailed},
	}
	for _, c := range cases {
		if got := claimResultOf(c.ok, c.err); got != c.want {
			t.Errorf("claimResultOf(%v, %v) = %v, want %v", c.ok, c.err, got, c.want)
		}
	}
}

func TestAfterClaim(t *testing.T) {
	cases := []struct {
		name  string
		res   ClaimResult
		tries int
		want  OfferAction
	}{
		{"claimed: offer", ClaimOK, 1, OfferIt},
		{"claimed on the last try: offer", ClaimOK, maxClaimTries, OfferIt},
		{"taken: next candidate", ClaimTaken, 1, OfferNext},
		{"taken, tries left: next", ClaimTaken, maxClaimTries - 1, OfferNext},
		{"taken on the last try: no offer", ClaimTaken, maxClaimTries, OfferNone},
		{"no quorum: no offer", ClaimUnavailable, 1, OfferNone},
		{"store error: no offer", ClaimFailed, 1, OfferNone},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := AfterClaim(c.res, c.tries); got != c.want {
				t.Errorf("AfterClaim(%v, %d) = %v, want %v", c.res, c.tries, got, c.want)
			}
		})
	}
}

func TestAfterBind(t *testing.T) {
	cases := []struct {
		name    string
		res     ClaimResult
		renewal bool
		want    AckAction
	}{
		{"bound: ack", ClaimOK, false, AckIt},
		{"renewal bound: ack", ClaimOK, true, AckIt},
		{"another MAC holds it: nak", ClaimTaken, false, AckNak},
		{"another MAC holds a renewed address: nak", ClaimTaken, true, AckNak},
		{"no quorum, renewal: ack from memory", ClaimUnavailable, true, AckFromCache},
		{"no quorum, new address: no answer", ClaimUnavailable, false, AckNone},
		{"store error, renewal: no answer (as with bolt before)", ClaimFailed, true, AckNone},
		{"store error: no answer", ClaimFailed, false, AckNone},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := AfterBind(c.res, c.renewal); got != c.want {
				t.Errorf("AfterBind(%v, %v) = %v, want %v", c.res, c.renewal, got, c.want)
			}
		})
	}
}
