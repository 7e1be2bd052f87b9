package replication

// Fenced reports whether a frame of kind k is refused when its epoch is
// older than the newest the receiver has seen (S2). The link applies the
// same rule before a frame reaches the machine (replication/link:
// Config.Fenced = link.MessageFenced).
func (k FrameKind) Fenced() bool { return k.fenced() }
