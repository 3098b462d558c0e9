package dhcp

import (
	"errors"

	"github.com/flint-boot/flint/store"
)

// Active/active full mode: several flint instances on one etcd store all
// answer. An instance offers a pool address only once its claim in the
// store committed (store.Claims), and binds it with the ACK of the instance
// the client chose. These are the decisions about the store's answers; the
// handlers in full.go carry them out.

// maxClaimTries bounds the pool addresses one DISCOVER tries to claim.
const maxClaimTries = 8

// ClaimResult is what the store said of a claim or a bind.
type ClaimResult int

const (
	ClaimOK          ClaimResult = iota // committed
	ClaimTaken                          // another MAC holds the address (another instance offered or bound it)
	ClaimUnavailable                    // no quorum: the store could not commit
	ClaimFailed                         // any other error (e.g. a disk error of a bolt store)
)

// String is the result's label on flint_dhcp_claims_total.
func (c ClaimResult) String() string {
	switch c {
	case ClaimOK:
		return "ok"
	case ClaimTaken:
		return "taken"
	default:
		return "unavailable"
	}
}

// claimResultOf classifies the store's answer.
func claimResultOf(ok bool, err error) ClaimResult {
	switch {
	case errors.Is(err, store.ErrUnavailable):
		return ClaimUnavailable
	case err != nil:
		return ClaimFailed
	case ok:
		return ClaimOK
	}
	return ClaimTaken
}

// OfferAction is what a DISCOVER gets after a claim.
type OfferAction int

const (
	OfferIt   OfferAction = iota // offer the claimed address
	OfferNext                    // another instance has it: claim the next candidate
	OfferNone                    // no offer (no quorum, or too many taken)
)

// AfterClaim decides a DISCOVER after the claim of its tries-th candidate
// (1 for the first). A new address never goes out without a committed
// claim.
func AfterClaim(res ClaimResult, tries int) OfferAction {
	switch {
	case res == ClaimOK:
		return OfferIt
	case res == ClaimTaken && tries < maxClaimTries:
		return OfferNext
	}
	return OfferNone
}

// AckAction is what a REQUEST gets after the store was asked to bind.
type AckAction int

const (
	AckIt        AckAction = iota // the lease is durable: ACK
	AckFromCache                  // no quorum, but the address is already the client's: ACK from memory
	AckNak                        // another MAC holds the address: NAK
	AckNone                       // not durable: no answer, the client retries
)

// AfterBind decides a REQUEST after BindLease. renewal says the instance
// already had an unexpired lease of this address bound to this client: a
// renewal is answered from memory when etcd has no quorum (a NAK would take
// a working address away from a running machine), anything else only once
// the store committed it.
func AfterBind(res ClaimResult, renewal bool) AckAction {
	switch res {
	case ClaimOK:
		return AckIt
	case ClaimTaken:
		return AckNak
	case ClaimUnavailable:
		if renewal {
			return AckFromCache
		}
	}
	return AckNone
}
