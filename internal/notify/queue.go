package notify

// queue is a bounded FIFO of messages that drops its oldest to make room:
// a target that is down long loses the oldest events, never blocks the
// one who queues, and catches up with the newest when it is back.
type queue struct {
	items []Message
	head  int // index of the oldest
	n     int
}

func newQueue(size int) *queue { return &queue{items: make([]Message, max(size, 1))} }

func (q *queue) size() int { return len(q.items) }
func (q *queue) len() int  { return q.n }

// push appends m, dropping the oldest when full; it reports a drop.
func (q *queue) push(m Message) (dropped bool) {
	if q.n == len(q.items) {
		q.items[q.head] = Message{}
		q.head = (q.head + 1) % len(q.items)
		q.n--
		dropped = true
	}
	q.items[(q.head+q.n)%len(q.items)] = m
	q.n++
	return dropped
}

// pop removes and returns the oldest.
func (q *queue) pop() (Message, bool) {
	if q.n == 0 {
		return Message{}, false
	}
	m := q.items[q.head]
	q.items[q.head] = Message{}
	q.head = (q.head + 1) % len(q.items)
	q.n--
	return m, true
}
