package slab

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// SegLayout names the segment store's item and segment layout. A warm
// restart maps pages another process wrote, and reads them only if that
// process wrote the same layout: change it with any change to segitems.go's
// header or to a segment's own header.
const SegLayout = "seg-2: 25-byte header, read counter in atime's top bits, u24 value length, flags if set, 8-byte segment header"

// SegState is what a SegAllocator knows that its pages do not hold: its
// segments' bookkeeping, its open segments and spare pages. With the
// pages themselves it is the whole allocator, so that a process can
// write it at a graceful stop and the next one resume from it (Restore).
type SegState struct {
	Segments []SegRecord `json:"segments"`
	// Open is each expiry class's open segment (an index in Segments),
	// or -1.
	Open  [numTTL]int32 `json:"open"`
	Spare []int32       `json:"spare,omitempty"`
	Seq   uint64        `json:"seq"`
}

// SegRecord is one segment's bookkeeping; its live bytes and items are
// recounted from its items on restore.
type SegRecord struct {
	Page    int32  `json:"page"`
	Used    int32  `json:"used"`
	MaxExp  uint32 `json:"max_exp"`
	Created uint32 `json:"created"`
	Seq     uint64 `json:"seq"`
	TTL     int8   `json:"ttl"`
	Main    bool   `json:"main,omitempty"`
}

// State returns the allocator's bookkeeping, for a later Restore.
func (a *SegAllocator) State() SegState {
	st := SegState{Open: a.open, Seq: a.seq, Spare: append([]int32(nil), a.spare...)}
	st.Segments = make([]SegRecord, len(a.segs))
	for i, s := range a.segs {
		st.Segments[i] = SegRecord{Page: s.page, Used: s.used, MaxExp: s.maxExp, Created: s.created, Seq: s.seq, TTL: s.ttl, Main: s.main}
	}
	return st
}

// Detach forgets every segment and spare page without giving any back
// or touching them: the pages and st (State, taken before) now describe
// the items, for the next process. The allocator is then empty.
func (a *SegAllocator) Detach() {
	a.segs, a.spare, a.mainSegs = a.segs[:0], a.spare[:0], 0
	for i := range a.open {
		a.open[i] = -1
	}
	for i := range a.cls {
		a.cls[i].items, a.cls[i].bytes = 0, 0
	}
}

// ErrBadState is returned by CheckState for a state or pages that do not
// describe a consistent allocator.
var ErrBadState = errors.New("slab: saved segments are inconsistent")

// CheckState checks that st and the pages it names, in items' memory of
// pages of pageSize bytes, describe a consistent allocator: pages in
// range and not in used (which it marks), each segment's page headed by
// its number, its items laid end to end within what it used, with keys
// no longer than maxKey and values no longer than a page. It returns the
// number of linked items. Nothing is changed but used.
func CheckState(items SegItems, pageSize int, st *SegState, used []bool, maxKey int) (int, error) {
	claim := func(p int32) error {
		if p < 0 || int(p) >= len(used) || used[p] {
			return fmt.Errorf("%w: page %d out of range or taken twice", ErrBadState, p)
		}
		used[p] = true
		return nil
	}
	for _, p := range st.Spare {
		if err := claim(p); err != nil {
			return 0, err
		}
	}
	for _, o := range st.Open {
		if o < -1 || int(o) >= len(st.Segments) {
			return 0, fmt.Errorf("%w: open segment %d of %d", ErrBadState, o, len(st.Segments))
		}
	}
	linked := 0
	align := items.Align() - 1
	for i, s := range st.Segments {
		if err := claim(s.Page); err != nil {
			return 0, err
		}
		if s.TTL < 0 || s.TTL >= numTTL || s.Used < segHeaderSize || int(s.Used) > pageSize {
			return 0, fmt.Errorf("%w: segment %d: class %d, %d bytes used", ErrBadState, i, s.TTL, s.Used)
		}
		base := int(s.Page) * pageSize
		if n := binary.LittleEndian.Uint32(items.mem[base:]); n != uint32(i) {
			return 0, fmt.Errorf("%w: segment %d: its page says %d", ErrBadState, i, n)
		}
		for off := segHeaderSize; off < int(s.Used); {
			off = (off + align) &^ align
			hl := segBaseHeader
			if off+hl <= int(s.Used) && items.mem[base+off+segOffIFlags]&segLongValue != 0 {
				hl++
			}
			if off+hl > int(s.Used) {
				return 0, fmt.Errorf("%w: segment %d: an item header at %d crosses its end", ErrBadState, i, off)
			}
			h := items.HandleAt(base + off)
			nkey := int(items.mem[base+off+segOffNKey])
			hdr, nbytes := items.header(h)
			size := hdr + nkey + nbytes
			if nkey == 0 || nkey > maxKey || off+size > int(s.Used) {
				return 0, fmt.Errorf("%w: segment %d: item at %d (key %d bytes, value %d) out of bounds", ErrBadState, i, off, nkey, nbytes)
			}
			if items.IFlags(h)&ItemLinked != 0 {
				linked++
			}
			off += size
		}
	}
	return linked, nil
}

// Restore makes the allocator, which must be new, the one st describes
// (checked with CheckState): it takes st's segments and spare pages, and
// calls link for every item linked when st was taken, with the item's
// linked bit cleared, in segment order. link must link it back (the
// engine's index; Link), which recounts it.
func (a *SegAllocator) Restore(st *SegState, link func(h Handle)) {
	a.seq = st.Seq
	a.open = st.Open
	a.spare = append(a.spare[:0], st.Spare...)
	a.segs, a.mainSegs = a.segs[:0], 0
	for _, r := range st.Segments {
		a.segs = append(a.segs, segment{page: r.Page, used: r.Used, maxExp: r.MaxExp, created: r.Created, seq: r.Seq, ttl: r.TTL, main: r.Main})
		if r.Main {
			a.mainSegs++
		}
	}
	for i := range a.segs {
		a.walk(i, func(h Handle, size int) {
			p := &a.Items.mem[a.Items.Offset(h)+segOffIFlags]
			if *p&ItemLinked == 0 {
				return
			}
			*p &^= ItemLinked
			link(h)
		})
	}
}
