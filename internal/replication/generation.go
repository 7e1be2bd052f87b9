package replication

// The generation transitions. Each returns the new identifiers; the
// caller persists them (and the disk state) before it writes data under
// them. fresh is a new random identifier (never 0 or JustCreated).

// NewCurrent starts a generation the peer does not have: on promotion while
// the peer is not connected and UpToDate, and when a primary loses its peer
// (in sync mode once the fencer has outdated the peer). The old Current
// becomes the Bitmap id: the dirty bitmap records what changes from here.
// A replica that already has a Bitmap id keeps its ids: its bitmap already
// records every change since the peer last had its data.
func (g GenIDs) NewCurrent(fresh GenID) GenIDs {
	if g.Current == JustCreated || g.Current == 0 {
		g.Current = fresh // nothing to diff against: the peer takes a full sync
		return g
	}
	if g.Bitmap != 0 {
		return g
	}
	g.Bitmap, g.Current = g.Current, fresh
	return g
}

// StartSyncSource marks the start of a resync from this replica to a peer
// whose Current is peerCurrent. The target takes the returned Bitmap id as
// its Current (its data belongs to no generation until the resync ends), so
// an interrupted resync is found again at the next connect
// (self-bitmap-is-peer-current). If the peer already is at this side's
// Bitmap id (a bitmap resync, or one interrupted before) that id serves;
// otherwise fresh does, and an older Bitmap id moves to History. Reusing
// it keeps repeated interruptions from pushing the target's generation out
// of the two-deep History (which would make the replicas unrelated).
func (g GenIDs) StartSyncSource(fresh, peerCurrent GenID) GenIDs {
	if g.Bitmap != 0 && g.Bitmap == peerCurrent {
		return g
	}
	if g.Bitmap != 0 {
		g = g.pushHistory(g.Bitmap)
	}
	g.Bitmap = fresh
	return g
}

// StartSyncTarget is the target's side of StartSyncSource: syncID is the
// source's new Bitmap id. A consistent target's previous Current moves to
// History: the source records the sync id only after the target did, so
// if they part in between, the source finds the target through it. An
// Inconsistent target's Current is a sync id of an earlier attempt,
// perhaps never recorded by the source: it is dropped, not kept (but
// JustCreated is: it marks the target of an initial sync).
func (g GenIDs) StartSyncTarget(syncID GenID, wasConsistent bool) GenIDs {
	if (wasConsistent || g.Current == JustCreated) && g.Current != syncID && g.Current != 0 {
		g = g.pushHistory(g.Current)
	}
	g.Current, g.Bitmap = syncID, 0
	return g
}

// FinishSyncSource is what both sides hold once a resync is done: the
// source's generation, its Bitmap id moved to History. The source records
// it first, then the target (still Inconsistent at the sync id in
// between: the next connect finds resync-end-on-self-only). So while a
// replica's Bitmap id is set, its peer never holds its Current, which is
// what lets NewCurrent keep the ids then.
func (g GenIDs) FinishSyncSource() GenIDs {
	if g.Bitmap != 0 {
		g = g.pushHistory(g.Bitmap)
	}
	g.Bitmap = 0
	return g
}

func (g GenIDs) pushHistory(id GenID) GenIDs {
	g.History[1], g.History[0] = g.History[0], id
	return g
}
