package consensus

import "fmt"

// keyJudge tells whose cluster key is wrong when a handshake with a voter
// fails for the key. One failed handshake cannot tell: each side only sees
// that the other's certificate is not derived from its own key (or that
// the other refused its own). Before, the node with the wrong key said
// that its healthy peers lacked the key. What tells is the majority: a
// node that agrees on the key with a majority of the voters (itself among
// them) holds the cluster's key, and a node that a majority disagree with
// does not. It does no I/O.
type keyJudge struct {
	voters int             // every voter, this one included
	agrees map[string]bool // voter → whether its last handshake agreed on the key
}

type keyVerdict int

const (
	keyUndecided keyVerdict = iota // no majority either way yet
	keyTheirs                      // the peer's key is wrong
	keyOurs                        // our key is wrong
)

func (v keyVerdict) String() string {
	return [...]string{"undecided", "theirs", "ours"}[v]
}

func newKeyJudge(voters int) *keyJudge {
	return &keyJudge{voters: voters, agrees: map[string]bool{}}
}

// agreed records a handshake with peer that proved the same key.
func (k *keyJudge) agreed(peer string) { k.agrees[peer] = true }

// differs records a handshake with peer that failed for the key, and
// judges whose key is wrong.
func (k *keyJudge) differs(peer string) keyVerdict {
	k.agrees[peer] = false
	with, against := 1, 0 // this voter agrees with itself
	for _, ok := range k.agrees {
		if ok {
			with++
		} else {
			against++
		}
	}
	majority := k.voters/2 + 1
	switch {
	case with >= majority:
		return keyTheirs
	case against >= majority:
		return keyOurs
	}
	return keyUndecided
}

// keyMismatch is what this voter logs about a handshake with peer (at
// addr) that failed for the key: refused says the peer refused our
// certificate, otherwise we refused the peer's.
func keyMismatch(v keyVerdict, peer, addr string, refused bool) string {
	switch {
	case v == keyTheirs && refused:
		return fmt.Sprintf("node %s (%s) refused our certificate, which a majority of the voters accept: a wrong key on that node?", peer, addr)
	case v == keyTheirs:
		return fmt.Sprintf("node %s (%s) presents a certificate not derived from our cluster key: a wrong key on that node?", peer, addr)
	case v == keyOurs && refused:
		return fmt.Sprintf("our key does not match the cluster's (peer %s refused our TLS handshake, as a majority of the voters do): check key_file on this node", peer)
	case v == keyOurs:
		return fmt.Sprintf("our key does not match the cluster's (peer %s presents a certificate not derived from it, as a majority of the voters do): check key_file on this node", peer)
	}
	return fmt.Sprintf("node %s (%s) and this node hold different cluster keys; which one is wrong shows once a majority of the voters answered", peer, addr)
}
