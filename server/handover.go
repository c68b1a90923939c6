package server

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/memhive/memhive/codec"
	"github.com/memhive/memhive/tenancy"
)

// HandOverResult counts what a handover did.
type HandOverResult struct {
	Sent    int // items sent to their new owners
	Stored  int // stored by the new owner
	Present int // the new owner already held the key (a newer write reached it first)
	Failed  int // refused, or never answered
}

// handOverDial bounds connecting to a new owner.
const handOverDial = 2 * time.Second

// HandOver sends every item this node holds whose owner under after is
// another node to that owner, as a binary ADDQ in a peer frame on one
// connection per owner, and waits for every answer or ctx's end. It is
// the graceful stop's last step but one: the node has left the member
// list (so the others already route its keys to their new owners, and
// after is that list), and its listeners still serve, forwarding every
// key. ADD rather than SET: a newer write may have reached the new owner
// through forwarding while the items were on their way, and must win.
// Items the new owner stores are counted in the cache's
// handed_over_items.
func (s *Server) HandOver(ctx context.Context, after *tenancy.Owners) (HandOverResult, error) {
	var res HandOverResult
	links := map[string]*handOverLink{}
	var errs []error
	defer func() {
		for _, l := range links {
			if l.nc != nil {
				l.nc.Close()
			}
		}
	}()
	var req, frame []byte
	for h := range tenancy.HandOver(after, s.tenants.Caches()) {
		if ctx.Err() != nil {
			break
		}
		l := links[h.Owner.Addr]
		if l == nil {
			var err error
			if l, err = s.dialHandOver(ctx, h.Owner.Addr); err != nil {
				errs = append(errs, fmt.Errorf("handing over to %s (%s): %w", h.Owner.Name, h.Owner.Addr, err))
				l = &handOverLink{dead: true}
			}
			links[h.Owner.Addr] = l
		}
		if l.dead {
			res.Failed++
			continue
		}
		tn := s.tenants.Cache(h.Cache)
		if tn == nil {
			continue
		}
		var live bool
		req, live = tenancy.AppendHandoff(req[:0], &h.Item, tn.Engine().Clock().Unix(), true, 0)
		if !live {
			continue
		}
		frame = codec.AppendPeerRequest(frame[:0], l.seq, h.Cache, codec.PeerBinary, req)
		l.expect(tn)
		if _, err := l.w.Write(frame); err != nil {
			errs = append(errs, fmt.Errorf("handing over to %s: %w", h.Owner.Addr, err))
			l.dead = true
		}
		res.Sent++
	}
	for addr, l := range links {
		if l.nc == nil {
			continue
		}
		if err := l.w.Flush(); err != nil && !l.dead {
			errs = append(errs, fmt.Errorf("handing over to %s: %w", addr, err))
		}
		// Every frame is out: the reader ends at the last answer, or now
		// if it has already had it (it cannot tell the last one alone).
		l.mu.Lock()
		l.sentAll = true
		all := l.answered == len(l.waiting)
		l.mu.Unlock()
		if all || l.dead {
			l.nc.Close()
		}
	}
	for _, l := range links {
		if l.done == nil {
			continue
		}
		select {
		case <-l.done:
		case <-ctx.Done():
			l.nc.Close()
			<-l.done
		}
		l.mu.Lock()
		res.Stored += l.stored
		res.Present += l.present
		res.Failed += l.failed + len(l.waiting) - l.answered
		l.mu.Unlock()
	}
	if ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	return res, errors.Join(errs...)
}

// handOverLink is one connection to a new owner during a handover.
type handOverLink struct {
	nc   net.Conn
	w    *bufio.Writer
	seq  uint32
	dead bool
	done chan struct{} // closed when the reader has every answer, or the connection ends

	mu       sync.Mutex
	waiting  []*tenancy.Cache // the cache of each frame sent, in order
	sentAll  bool
	answered int
	stored   int
	present  int
	failed   int
}

// dialHandOver opens a peer connection to a new owner and starts reading
// its answers.
func (s *Server) dialHandOver(ctx context.Context, addr string) (*handOverLink, error) {
	d := net.Dialer{Timeout: handOverDial}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	l := &handOverLink{nc: nc, w: bufio.NewWriterSize(nc, 256<<10), done: make(chan struct{})}
	if _, err := l.w.Write(codec.AppendPeerHello(nil, s.secret())); err != nil {
		nc.Close()
		return nil, err
	}
	go l.read()
	return l, nil
}

// expect records that the next frame is for cache tn.
func (l *handOverLink) expect(tn *tenancy.Cache) {
	l.mu.Lock()
	l.waiting = append(l.waiting, tn)
	l.mu.Unlock()
	l.seq++
}

// read counts the answers: an empty one is an ADDQ stored; a binary
// reply with status "key exists" is a key the new owner already held;
// any other is a failure. It ends when the connection closes (the
// sender closes it once every answer is in, or when it gives up).
func (l *handOverLink) read() {
	defer close(l.done)
	r := bufio.NewReaderSize(l.nc, 64<<10)
	hdr := make([]byte, codec.PeerReplyHeaderLen)
	var body []byte
	for {
		if _, err := io.ReadFull(r, hdr); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint32(hdr[4:8]))
		if n > 1<<20+1024 {
			return
		}
		if cap(body) < n {
			body = make([]byte, n)
		}
		body = body[:n]
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		l.mu.Lock()
		tn := l.waiting[l.answered]
		l.answered++
		switch {
		case n == 0:
			l.stored++
			tn.Conns.AddHandedOver(1)
		case n >= 24 && binary.BigEndian.Uint16(body[6:8]) == 0x0002:
			l.present++
		default:
			l.failed++
		}
		all := l.answered == len(l.waiting)
		l.mu.Unlock()
		if all && l.finished() {
			return
		}
	}
}

// finished reports whether every frame has been sent; set by the sender
// once it has flushed (see HandOver).
func (l *handOverLink) finished() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sentAll
}
