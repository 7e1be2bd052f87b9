package consensus

import "tandem/internal/peerid"

// identities are the TLS identities of the raft transport (package
// peerid): each voter presents a certificate for a key derived from the
// cluster key and its own name, and a connection is accepted only when
// the key is the one derived for the voter it claims to be — the dialler
// checks the voter whose address it dialled, the listener the name the
// dialler's hello claims. So a connection redirected to another voter,
// reflected back to its own sender, or opened under another voter's name
// is refused.
type identities = peerid.Set

// voterDomain names the raft transport's keys; it must never change, or
// upgraded voters no longer recognise the others.
const voterDomain = "tandem/consensus-tls/v2 voter"

var errIdentity = peerid.ErrIdentity

func newIdentities(clusterKey []byte, self string, voters []string) (*identities, error) {
	return peerid.New(clusterKey, voterDomain, self, voters)
}
